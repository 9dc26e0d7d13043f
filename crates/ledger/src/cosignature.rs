//! C2SP tlog-cosignature v1 (Ed25519): a witness's statement that, as of a time, the checkpoint
//! is the largest consistent one it has seen of that log.
//!
//! A cosignature is one more signature line on the checkpoint's signed note,
//! `— <witness name> base64(key ID ‖ timestamp ‖ signature)`, where the key ID is
//! `SHA-256(<name> ‖ "\n" ‖ 0x04 ‖ public key)[:4]`, the timestamp is 8 big-endian bytes of POSIX
//! seconds, and the Ed25519 signature covers `cosignature/v1\ntime <timestamp>\n` followed by
//! the checkpoint's note body. The witness's verifier key is
//! `<name>+<hex key ID>+base64(0x04 ‖ public key)`. A reader holding witnesses' keys counts the
//! valid cosignatures on a checkpoint and trusts it only with enough of them, so an operator
//! would have to fool that many independent witnesses to show two histories.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::LedgerError;

/// The signature type byte of cosignature/v1 keys.
const COSIGNATURE_V1: u8 = 0x04;

/// The message a cosignature signs.
fn message(body: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{body}")
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([COSIGNATURE_V1]);
    hasher.update(public);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn hex8(id: &[u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_name(name: &str) -> Result<(), LedgerError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(LedgerError::Malformed(format!(
            "'{name}' is not a key name: it must be non-empty, without spaces or '+'"
        )));
    }
    Ok(())
}

/// The note body (up to and including the blank line's first newline) and its signature lines.
fn split_note(note: &str) -> Result<(&str, &str), LedgerError> {
    let split = note.rfind("\n\n").ok_or_else(|| {
        LedgerError::Malformed("signed note: no blank line before the signatures".into())
    })?;
    Ok((&note[..=split], &note[split + 2..]))
}

/// A witness's cosigning key.
pub struct Cosigner {
    name: String,
    key: SigningKey,
    key_id: [u8; 4],
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Cosigner {
    /// # Errors
    ///
    /// [`LedgerError::Malformed`] if `name` is empty or contains whitespace or `+`.
    pub fn new(name: &str, seed: [u8; 32]) -> Result<Self, LedgerError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(Cosigner {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cosignature line (without its newline) of the note whose body is `body`, made at
    /// `timestamp` (POSIX seconds).
    pub fn cosign(&self, body: &str, timestamp: u64) -> String {
        let signature = self
            .key
            .sign(message(body, timestamp).as_bytes())
            .to_bytes();
        let mut blob = Vec::with_capacity(76);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(&signature);
        format!("\u{2014} {} {}", self.name, STANDARD.encode(blob))
    }

    /// The verifier key text that checks this witness's cosignatures.
    pub fn verifier_key(&self) -> String {
        let mut public = vec![COSIGNATURE_V1];
        public.extend_from_slice(self.key.verifying_key().as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex8(&self.key_id),
            STANDARD.encode(public)
        )
    }
}

/// Checks one witness's cosignatures.
#[derive(Debug, Clone)]
pub struct CosignatureVerifier {
    name: String,
    key: VerifyingKey,
    key_id: [u8; 4],
}

impl CosignatureVerifier {
    /// Parses a witness verifier key `<name>+<hex key id>+<base64(0x04 ‖ public key)>`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Malformed`] if the text is not such a key or its id does not match.
    pub fn parse(text: &str) -> Result<Self, LedgerError> {
        let malformed = |what: &str| LedgerError::Malformed(format!("witness key: {what}"));
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed("expected <name>+<key id>+<key>"));
        };
        check_name(name)?;
        let key = STANDARD
            .decode(key)
            .map_err(|_| malformed("the key is not base64"))?;
        let (kind, public) = key.split_first().ok_or_else(|| malformed("empty key"))?;
        if *kind != COSIGNATURE_V1 {
            return Err(malformed(
                "only cosignature/v1 Ed25519 keys (signature type 4) are supported",
            ));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| malformed("an Ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| malformed("not a valid Ed25519 public key"))?;
        let key_id = key_id(name, &public);
        if hex8(&key_id) != id {
            return Err(malformed("the key id does not match the name and key"));
        }
        Ok(CosignatureVerifier {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The timestamp of this witness's valid cosignature on `note`, if it carries one.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Malformed`] if the note has no signature block, or a line with this
    /// witness's name and key ID whose signature does not verify.
    pub fn cosigned_at(&self, note: &str) -> Result<Option<u64>, LedgerError> {
        let (body, signatures) = split_note(note)?;
        let bad =
            |what: &str| LedgerError::Malformed(format!("cosignature by {}: {what}", self.name));
        for line in signatures.lines() {
            let Some((name, blob)) = line
                .strip_prefix("\u{2014} ")
                .and_then(|rest| rest.split_once(' '))
            else {
                continue;
            };
            let Ok(blob) = STANDARD.decode(blob) else {
                continue;
            };
            if name != self.name || blob.len() != 76 || blob[..4] != self.key_id {
                continue;
            }
            let timestamp = u64::from_be_bytes(blob[4..12].try_into().map_err(|_| bad("short"))?);
            let signature =
                Signature::from_slice(&blob[12..]).map_err(|_| bad("malformed signature"))?;
            self.key
                .verify(message(body, timestamp).as_bytes(), &signature)
                .map_err(|_| bad("the signature does not verify"))?;
            return Ok(Some(timestamp));
        }
        Ok(None)
    }
}

/// `note` with `cosignatures` (lines from [`Cosigner::cosign`]) added after its signatures.
pub fn with_cosignatures<'a>(
    note: &str,
    cosignatures: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut cosigned = note.trim_end_matches('\n').to_owned();
    cosigned.push('\n');
    for line in cosignatures {
        cosigned.push_str(line);
        cosigned.push('\n');
    }
    cosigned
}

/// The note body of a signed note: what cosignatures sign.
///
/// # Errors
///
/// [`LedgerError::Malformed`] if the note has no signature block.
pub fn note_body(note: &str) -> Result<&str, LedgerError> {
    split_note(note).map(|(body, _)| body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, NoteSigner, NoteVerifier};

    fn note() -> String {
        NoteSigner::new("trailmark.test", [7; 32])
            .expect("signer")
            .sign(&Checkpoint {
                origin: "trailmark.test/org_1".into(),
                size: 42,
                root: [9; 32],
            })
    }

    #[test]
    fn a_cosigned_note_verifies_for_its_witness_and_still_for_its_log() {
        let witness = Cosigner::new("witness.test/w1", [3; 32]).expect("cosigner");
        let note = note();
        let line = witness.cosign(note_body(&note).expect("body"), 1_700_000_000);
        let cosigned = with_cosignatures(&note, [line.as_str()]);
        let verifier = CosignatureVerifier::parse(&witness.verifier_key()).expect("key");
        assert_eq!(verifier.cosigned_at(&cosigned), Ok(Some(1_700_000_000)));
        assert_eq!(verifier.cosigned_at(&note), Ok(None));
        let log = NoteVerifier::parse(
            &NoteSigner::new("trailmark.test", [7; 32])
                .expect("signer")
                .verifier_key(),
        )
        .expect("key");
        assert_eq!(log.verify(&cosigned).expect("verifies").size, 42);
        // Another witness's key does not count it; an altered body fails it.
        let other = Cosigner::new("witness.test/w1", [4; 32]).expect("cosigner");
        let other = CosignatureVerifier::parse(&other.verifier_key()).expect("key");
        assert_eq!(other.cosigned_at(&cosigned), Ok(None));
        assert!(
            verifier
                .cosigned_at(&cosigned.replace("\n42\n", "\n43\n"))
                .is_err()
        );
        assert!(CosignatureVerifier::parse(&log_key_text()).is_err());
    }

    fn log_key_text() -> String {
        NoteSigner::new("trailmark.test", [7; 32])
            .expect("signer")
            .verifier_key()
    }
}
