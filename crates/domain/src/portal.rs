//! The Admin Portal's intents: what a portal link opens. WorkOS's `generate_link` knows more
//! intents (`sso`, `dsync`, …); Trailmark serves the two that concern audit logs.

/// What a portal session may see and do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortalIntent {
    /// Browse, filter and export the organization's events.
    AuditLogs,
    /// Manage the organization's log streams.
    LogStreams,
}

impl PortalIntent {
    /// The intents Trailmark serves, as the wire names them (for error messages).
    pub const SERVED: &'static str = "audit_logs, log_streams";

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "audit_logs" => Some(PortalIntent::AuditLogs),
            "log_streams" => Some(PortalIntent::LogStreams),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PortalIntent::AuditLogs => "audit_logs",
            PortalIntent::LogStreams => "log_streams",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip_and_others_are_refused() {
        for intent in [PortalIntent::AuditLogs, PortalIntent::LogStreams] {
            assert_eq!(PortalIntent::parse(intent.as_str()), Some(intent));
        }
        assert_eq!(PortalIntent::parse("sso"), None);
        assert_eq!(PortalIntent::parse("AUDIT_LOGS"), None);
    }
}
