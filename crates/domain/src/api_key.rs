//! API keys: `sk_` followed by 64 hex digits (256 random bits). Only their SHA-256 is ever
//! stored; a key that high in entropy needs no slow KDF, and hashing stays cheap on every request.
//!
//! A key has a [`Scope`] and may be restricted to one organization.

use std::fmt;

use sha2::{Digest, Sha256};

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
    }
}
