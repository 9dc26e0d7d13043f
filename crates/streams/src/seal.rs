//! Stream credentials at rest: XChaCha20-Poly1305 with a key derived from the operator's secrets
//! key (`HMAC-SHA256(secrets_key, "trailmark-stream-credentials-v1")`), a random 24-byte nonce
//! per write, and the stream id as associated data, so a sealed blob copied onto another stream
//! does not open. Layout: `nonce (24 bytes) ‖ ciphertext ‖ tag (16 bytes)`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot read random bytes for a nonce")]
    Random,
    #[error("the stream's credentials cannot be decrypted (wrong secrets key, or tampered data)")]
    Open,
}

/// Seals and opens stream credentials.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    pub fn new(secrets_key: &[u8; 32]) -> Self {
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(secrets_key)
            .expect("HMAC takes keys of any length");
        derive.update(b"trailmark-stream-credentials-v1");
        let key: [u8; 32] = derive.finalize().into_bytes().into();
        Sealer {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// # Errors
    ///
    /// [`SealError::Random`] if the OS random source fails.
    pub fn seal(&self, stream_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: stream_id.as_bytes(),
                },
            )
            .map_err(|_| SealError::Random)?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// # Errors
    ///
    /// [`SealError::Open`] if the blob was sealed with another key or for another stream, or
    /// was altered.
    pub fn open(&self, stream_id: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 24 {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: stream_id.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_credentials_open_only_for_their_stream_and_key() {
        let sealer = Sealer::new(&[1; 32]);
        let sealed = sealer.seal("log_stream_a", b"token-123").expect("seal");
        assert!(
            !sealed.windows(9).any(|w| w == b"token-123"),
            "no clear text at rest"
        );
        assert_eq!(
            sealer.open("log_stream_a", &sealed).expect("open"),
            b"token-123"
        );
        assert!(sealer.open("log_stream_b", &sealed).is_err());
        assert!(Sealer::new(&[2; 32]).open("log_stream_a", &sealed).is_err());
        let mut altered = sealed.clone();
        altered[30] ^= 1;
        assert!(sealer.open("log_stream_a", &altered).is_err());
    }
}
