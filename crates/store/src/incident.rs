//! Alert incidents as stored: a stream failing for longer than the operator allows, or a failed
//! export, and the notifications each owes the operator's webhook. Instances sharing a database
//! open, resolve and notify each incident once, through the unique `(kind, subject, since)` of
//! an incident and a lease on its pending notification ([`crate::Incidents`]); what is due when is
//! decided in [`crate::rules`].

use trailmark_domain::Timestamp;

use crate::StreamState;

/// What an incident is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentKind {
    /// A stream that has been `error` or `invalid` too long; it resolves when the stream
    /// delivers again (or is disabled or deleted).
    Stream,
    /// A failed export. A failed export stays failed (a new export is a new job), so the
    /// incident is closed as it opens and owes only its opening notification.
    Export,
}

impl IncidentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Stream => "stream",
            IncidentKind::Export => "export",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "stream" => Some(IncidentKind::Stream),
            "export" => Some(IncidentKind::Export),
            _ => None,
        }
    }
}

/// A stream whose deliveries are failing, and since when: the first failed attempt after its
/// last delivery (kept across failures and settings changes, cleared by a delivery or by
/// disabling the stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFault {
    pub stream_id: String,
    /// `None` for an operator-wide stream.
    pub organization_id: Option<String>,
    pub state: StreamState,
    pub last_error: Option<String>,
    pub failing_since: Timestamp,
}

/// What an incident is about when it opens ([`crate::rules::new_incident`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    /// `incident_…`.
    pub id: String,
    pub kind: IncidentKind,
    /// The stream's or the export's id.
    pub subject_id: String,
    /// `None` for an operator-wide stream.
    pub organization_id: Option<String>,
    /// The subject's state (`error` or `invalid`).
    pub state: String,
    pub last_error: Option<String>,
    /// When the failure began.
    pub since: Timestamp,
}

/// One incident and where its notifications stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRecord {
    /// `incident_…`; the webhook's `incident_id`.
    pub id: String,
    pub kind: IncidentKind,
    /// The stream's or the export's id.
    pub subject_id: String,
    /// `None` for an operator-wide stream.
    pub organization_id: Option<String>,
    /// The subject's state when the incident opened (`error` or `invalid`).
    pub state: String,
    pub last_error: Option<String>,
    /// When the failure began: with the subject, what makes an incident one incident.
    pub since: Timestamp,
    pub opened_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    /// The subject's state when the incident resolved (`active`, `inactive`, `deleted`).
    pub resolution: Option<String>,
    /// When the webhook acknowledged the opening notification.
    pub opened_notified_at: Option<Timestamp>,
    /// When the webhook acknowledged the resolution notification.
    pub resolved_notified_at: Option<Timestamp>,
    /// Failed attempts at the pending notification.
    pub attempts: u32,
    /// No attempt at the pending notification before this.
    pub next_attempt_at: Timestamp,
    /// Why the last attempt failed.
    pub last_delivery_error: Option<String>,
    /// The instance sending the pending notification, until when.
    pub lease_holder: Option<String>,
    pub lease_until: Option<Timestamp>,
}

/// A notification an incident owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notice {
    Opened,
    Resolved,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Opened => "opened",
            Notice::Resolved => "resolved",
        }
    }
}

/// The columns of an incident row, as stored (times in Unix milliseconds), in
/// [`INCIDENT_COLUMNS`]' order.
pub(crate) struct IncidentColumns {
    pub id: String,
    pub kind: String,
    pub subject_id: String,
    pub organization_id: Option<String>,
    pub state: String,
    pub last_error: Option<String>,
    pub since: i64,
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
    pub resolution: Option<String>,
    pub opened_notified_at: Option<i64>,
    pub resolved_notified_at: Option<i64>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_delivery_error: Option<String>,
    pub lease_holder: Option<String>,
    pub lease_until: Option<i64>,
}

/// The columns both backends select, in [`IncidentColumns`]' order.
pub(crate) const INCIDENT_COLUMNS: &str = "id, kind, subject_id, organization_id, state, last_error, since, \
     opened_at, resolved_at, resolution, opened_notified_at, resolved_notified_at, attempts, \
     next_attempt_at, last_delivery_error, lease_holder, lease_until";

impl IncidentColumns {
    pub(crate) fn decode(self) -> Result<IncidentRecord, crate::StoreError> {
        let time = Timestamp::from_unix_millis;
        Ok(IncidentRecord {
            kind: IncidentKind::parse(&self.kind).ok_or_else(|| {
                crate::StoreError::Corrupt(format!("incident {}: kind '{}'", self.id, self.kind))
            })?,
            id: self.id,
            subject_id: self.subject_id,
            organization_id: self.organization_id,
            state: self.state,
            last_error: self.last_error,
            since: time(self.since),
            opened_at: time(self.opened_at),
            resolved_at: self.resolved_at.map(time),
            resolution: self.resolution,
            opened_notified_at: self.opened_notified_at.map(time),
            resolved_notified_at: self.resolved_notified_at.map(time),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            next_attempt_at: time(self.next_attempt_at),
            last_delivery_error: self.last_delivery_error,
            lease_holder: self.lease_holder,
            lease_until: self.lease_until.map(time),
        })
    }
}
