//! API keys: `sk_` followed by 64 hex digits (256 random bits). Only their SHA-256 is ever
//! stored; a key that high in entropy needs no slow KDF, and hashing stays cheap on every request.
//!
//! A key has a [`Scope`], a name, may be restricted to one organization and may expire. What is
//! shown of a key after its creation is its [`ApiKeySecret::prefix`]: enough to tell keys apart
//! in a list, far too little to guess the rest.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::Timestamp;
use crate::problem::FieldProblem;

/// Longest key name, in characters: a label for people, not a document.
pub const KEY_NAME_MAX: usize = 100;

/// Characters of a key's text shown in lists: `sk_` and 8 hex digits (32 of its 256 bits).
const PREFIX_LEN: usize = 11;

/// A key's name, trimmed: 1 to [`KEY_NAME_MAX`] characters, no control characters.
///
/// # Errors
///
/// The problem, naming the field `name`.
pub fn parse_key_name(text: &str) -> Result<String, FieldProblem> {
    let name = text.trim();
    let problem = |code, message: &str| FieldProblem {
        code,
        field: "name".into(),
        message: message.into(),
    };
    if name.is_empty() {
        return Err(problem("required", "name must not be empty"));
    }
    if name.chars().count() > KEY_NAME_MAX {
        return Err(problem(
            "too_long",
            &format!("name must be at most {KEY_NAME_MAX} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(problem(
            "invalid_value",
            "name must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Whether a key that expires at `expires_at` is still valid at `now` (valid until the instant
/// itself, refused from it on).
pub fn key_is_live(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_none_or(|expires_at| now < expires_at)
}

/// What a key may do. `Admin` may do everything; `Read` reads; `Ingest` only writes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Ingest,
    Read,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Whether a key of this scope may do what `needed` guards.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }
}

/// A key in clear text. It exists only between generation (or arrival in a request) and
/// hashing; `Debug` and `Display` never show it.
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// A new key from 32 bytes of entropy the caller read from the OS.
    pub fn from_entropy(entropy: [u8; 32]) -> Self {
        let mut text = String::with_capacity(67);
        text.push_str("sk_");
        for byte in entropy {
            text.push_str(&format!("{byte:02x}"));
        }
        ApiKeySecret(text)
    }

    /// Wraps a key presented by a client or the operator.
    pub fn new(text: impl Into<String>) -> Self {
        ApiKeySecret(text.into())
    }

    /// The clear text, for printing once to the operator who asked for the key.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first characters of the key (`sk_1a2b3c4d`): stored in clear and shown in lists so
    /// that an operator can tell which key is which.
    pub fn prefix(&self) -> String {
        self.0.chars().take(PREFIX_LEN).collect()
    }

    /// The SHA-256 of the key's text: what is stored and looked up.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_allows_everything_and_others_only_themselves() {
        assert!(Scope::Admin.allows(Scope::Ingest) && Scope::Admin.allows(Scope::Read));
        assert!(Scope::Read.allows(Scope::Read) && !Scope::Read.allows(Scope::Ingest));
        assert!(Scope::Ingest.allows(Scope::Ingest) && !Scope::Ingest.allows(Scope::Admin));
    }

    #[test]
    fn keys_are_prefixed_hashed_and_redacted() {
        let key = ApiKeySecret::from_entropy([7; 32]);
        assert!(key.expose().starts_with("sk_") && key.expose().len() == 67);
        assert_eq!(key.hash(), ApiKeySecret::new(key.expose()).hash());
        assert!(!format!("{key:?}").contains("0707"));
        assert_eq!(key.prefix(), "sk_07070707");
    }

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(parse_key_name("  deploy bot ").as_deref(), Ok("deploy bot"));
        assert_eq!(parse_key_name(" ").map_err(|p| p.code), Err("required"));
        let long = "x".repeat(KEY_NAME_MAX + 1);
        assert_eq!(parse_key_name(&long).map_err(|p| p.code), Err("too_long"));
        assert_eq!(
            parse_key_name("a\u{7}b").map_err(|p| p.code),
            Err("invalid_value")
        );
    }

    #[test]
    fn a_key_expires_at_its_instant() {
        let at = Timestamp::from_unix_millis(1_000);
        assert!(key_is_live(None, at));
        assert!(key_is_live(Some(at), Timestamp::from_unix_millis(999)));
        assert!(!key_is_live(Some(at), at));
    }
}
