//! Prefixed, time-ordered identifiers, shaped like WorkOS's (`org_01EHZNVPK3SFK441A1RGBFSHRT`):
//! a resource prefix, an underscore, and a 26-character ULID. The ULID's first 48 bits are the
//! creation time in milliseconds, so ids sort by creation time; list pagination relies on that.

use std::fmt;

/// The kinds of resource that get an id, each with its WorkOS prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Organization,
    OrganizationDomain,
    Event,
    ApiKey,
    Export,
    LogStream,
    /// A server process, as the holder of stream leases.
    Worker,
    /// Request ids (`X-Request-ID`) that Trailmark makes when the client sent none.
    Request,
    /// An Admin Portal session, as the actor of the changes made through it.
    PortalSession,
    /// A console operator account, the actor of what it does.
    Operator,
    /// A console session.
    ConsoleSession,
    /// An alert incident (a stream failing too long, a failed export).
    Incident,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Organization => "org",
            IdKind::OrganizationDomain => "org_domain",
            IdKind::Event => "event",
            IdKind::ApiKey => "key",
            IdKind::Export => "audit_log_export",
            IdKind::LogStream => "log_stream",
            IdKind::Worker => "worker",
            IdKind::Request => "req",
            IdKind::PortalSession => "portal_session",
            IdKind::Operator => "operator",
            IdKind::ConsoleSession => "console_session",
            IdKind::Incident => "incident",
        }
    }

    /// A fresh id of this kind. Reads the clock and the system's random source: ids are the one
    /// place where the domain needs either, and taking them here keeps every caller consistent.
    pub fn generate(self) -> Id {
        Id(format!("{}_{}", self.prefix(), ulid::Ulid::generate()))
    }

    /// Whether `text` has this kind's prefix followed by a well-formed ULID.
    pub fn matches(self, text: &str) -> bool {
        text.strip_prefix(self.prefix())
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|ulid| ulid.len() == 26 && ulid::Ulid::from_string(ulid).is_ok())
    }
}

/// A generated identifier. Identifiers that arrive from clients stay plain strings: an unknown
/// organization id is a 404, not a parse error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_sort_by_time() {
        let first = IdKind::Event.generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = IdKind::Event.generate();
        assert!(first.as_str().starts_with("event_"));
        assert_eq!(first.as_str().len(), "event_".len() + 26);
        assert!(first < second);
        assert!(IdKind::Event.matches(first.as_str()));
        assert!(!IdKind::Organization.matches(first.as_str()));
        assert!(!IdKind::Organization.matches("org_nope"));
    }
}
