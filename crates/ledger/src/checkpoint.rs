//! Signed checkpoints: the size and root of an organization's log, in the C2SP
//! `tlog-checkpoint` format, signed as a C2SP `signed-note` with Ed25519.
//!
//! A checkpoint body is three lines, each ending in `\n`:
//!
//! ```text
//! trailmark.example.com/org_01JD8X…     ← origin: the instance's key name, '/', the organization
//! 1024                                  ← tree size, decimal
//! 8hJt3w0rDl8cB0WmGJ8Y5XhYwYF4rZyqZ4mQxJ9m3xI=   ← root hash, standard base64
//! ```
//!
//! The signed note is the body, an empty line, and one signature line per signer:
//! `— <key name> <base64(key id ‖ signature)>\n` (an em dash, U+2014), where the key id is the
//! first 4 bytes of `SHA-256(key name ‖ "\n" ‖ 0x01 ‖ public key)` and the signature is Ed25519
//! over the body's bytes. The verifier key is written `<key name>+<key id as 8 hex>+<base64(0x01 ‖
//! public key)>`, the Go `sumdb/note` format. Lines added after the root are extensions and
//! ignored by this parser, as C2SP prescribes; an incompatible change needs a new origin.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::LedgerError;
use crate::tree::Hash;

/// Ed25519's algorithm byte in C2SP signed-note keys.
const ED25519: u8 = 0x01;

/// What a checkpoint commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint's body text.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a checkpoint body (extension lines after the root are ignored).
    ///
    /// # Errors
    ///
    /// [`LedgerError::Malformed`] naming the line that is wrong.
    pub fn parse(body: &str) -> Result<Self, LedgerError> {
        let malformed = |what: &str| LedgerError::Malformed(format!("checkpoint: {what}"));
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| malformed("missing origin line"))?;
        let size = lines
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| malformed("the second line is not a tree size"))?;
        let root = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| Hash::try_from(r).ok())
            .ok_or_else(|| malformed("the third line is not a base64 SHA-256 root hash"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// Signs checkpoints with one Ed25519 key under one key name.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    key_id: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl NoteSigner {
    /// # Errors
    ///
    /// [`LedgerError::Malformed`] if `name` is empty or contains whitespace or `+`.
    pub fn new(name: &str, seed: [u8; 32]) -> Result<Self, LedgerError> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(NoteSigner {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed note of `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let signature = self.key.sign(body.as_bytes()).to_bytes();
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&signature);
        format!("{body}\n\u{2014} {} {}\n", self.name, STANDARD.encode(blob))
    }

    /// The verifier key text that checks this signer's notes.
    pub fn verifier_key(&self) -> String {
        let mut public = vec![ED25519];
        public.extend_from_slice(self.key.verifying_key().as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex8(&self.key_id),
            STANDARD.encode(public)
        )
    }
}

/// Checks notes signed by one key.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    key_id: [u8; 4],
}

impl NoteVerifier {
    /// Parses a verifier key `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Malformed`] if the text is not such a key or its id does not match.
    pub fn parse(text: &str) -> Result<Self, LedgerError> {
        let malformed = |what: &str| LedgerError::Malformed(format!("verifier key: {what}"));
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed("expected <name>+<key id>+<key>"));
        };
        check_key_name(name)?;
        let key = STANDARD
            .decode(key)
            .map_err(|_| malformed("the key is not base64"))?;
        let (algorithm, public) = key.split_first().ok_or_else(|| malformed("empty key"))?;
        if *algorithm != ED25519 {
            return Err(malformed("only Ed25519 keys (algorithm 1) are supported"));
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
        Ok(NoteVerifier {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies a signed note and returns the checkpoint it signs.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Malformed`] if the note is malformed, carries no signature by this key,
    /// or the signature does not verify.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, LedgerError> {
        let bad = |what: &str| LedgerError::Malformed(format!("signed note: {what}"));
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let body = &note[..=split];
        let mut found = false;
        for line in note[split + 2..].lines().filter(|l| !l.is_empty()) {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| bad("a signature line must start with '— '"))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| bad("a signature line needs a name and a signature"))?;
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| bad("a signature is not base64"))?;
            if name != self.name || blob.len() != 68 || blob[..4] != self.key_id {
                continue;
            }
            let signature =
                Signature::from_slice(&blob[4..]).map_err(|_| bad("malformed signature"))?;
            self.key
                .verify(body.as_bytes(), &signature)
                .map_err(|_| bad("the signature does not verify"))?;
            found = true;
        }
        if !found {
            return Err(bad(&format!("no signature by the key '{}'", self.name)));
        }
        Checkpoint::parse(body)
    }
}

fn check_key_name(name: &str) -> Result<(), LedgerError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(LedgerError::Malformed(format!(
            "'{name}' is not a key name: it must be non-empty, without spaces or '+'"
        )));
    }
    Ok(())
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ED25519]);
    hasher.update(public);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn hex8(id: &[u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_round_trips_and_tampering_fails() {
        let signer = NoteSigner::new("trailmark.test", [7; 32]).expect("valid name");
        let checkpoint = Checkpoint {
            origin: "trailmark.test/org_1".into(),
            size: 42,
            root: [9; 32],
        };
        let note = signer.sign(&checkpoint);
        assert!(note.starts_with("trailmark.test/org_1\n42\nCQkJ"));
        assert!(note.contains("\n\n\u{2014} trailmark.test "));
        let verifier = NoteVerifier::parse(&signer.verifier_key()).expect("verifier key");
        assert_eq!(verifier.verify(&note).expect("verifies"), checkpoint);
        assert!(verifier.verify(&note.replace("\n42\n", "\n43\n")).is_err());
        let other = NoteSigner::new("trailmark.test", [8; 32]).expect("valid");
        assert!(
            NoteVerifier::parse(&other.verifier_key())
                .expect("key")
                .verify(&note)
                .is_err()
        );
        assert!(NoteVerifier::parse("bad key").is_err());
        assert!(NoteSigner::new("has space", [1; 32]).is_err());
    }
}
