//! Decoding of stored columns into domain values, shared by both backends: each backend reads
//! its rows with its own driver, then builds the same values from the same encodings here.

use serde_json::{Value, json};
use trailmark_domain::Timestamp;
use trailmark_domain::export::ExportFormat;
use trailmark_domain::organization::{Domain, DomainState, Organization};
use trailmark_domain::schema::{ActionName, ActionSchema, SchemaDefinition};

use crate::codec::filter_from_json;
use crate::{
    ExportRecord, ExportState, Hash, RawEvent, StoreError, StoredEvent, StreamRecord, StreamState,
};

/// The JSON text an organization's domains are stored as.
pub(crate) fn domains_json(domains: &[Domain]) -> String {
    Value::Array(
        domains
            .iter()
            .map(|d| json!({"id": d.id, "domain": d.domain, "state": d.state.as_str()}))
            .collect(),
    )
    .to_string()
}

/// An organization row's columns, as stored.
pub(crate) struct OrganizationColumns {
    pub id: String,
    pub name: String,
    pub external_id: Option<String>,
    pub domains: String,
    pub metadata: String,
    pub allow_profiles_outside_organization: bool,
    pub retention_period_in_days: Option<u32>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl OrganizationColumns {
    pub(crate) fn decode(self) -> Result<Organization, StoreError> {
        let id = self.id;
        let corrupt = |reason: String| StoreError::Corrupt(format!("organization {id}: {reason}"));
        let domains: Vec<Value> =
            serde_json::from_str(&self.domains).map_err(|e| corrupt(e.to_string()))?;
        let domains = domains
            .iter()
            .map(|d| {
                Some(Domain {
                    id: d.get("id")?.as_str()?.to_owned(),
                    domain: d.get("domain")?.as_str()?.to_owned(),
                    state: DomainState::parse(d.get("state")?.as_str()?)?,
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| corrupt("malformed domain".into()))?;
        let metadata = serde_json::from_str(&self.metadata).map_err(|e| corrupt(e.to_string()))?;
        Ok(Organization {
            name: self.name,
            external_id: self.external_id,
            domains,
            metadata,
            allow_profiles_outside_organization: self.allow_profiles_outside_organization,
            retention_period_in_days: self.retention_period_in_days,
            created_at: Timestamp::from_unix_millis(self.created_at),
            updated_at: Timestamp::from_unix_millis(self.updated_at),
            id,
        })
    }
}

pub(crate) fn schema(
    action: &str,
    version: u32,
    definition: &str,
    created_at: i64,
) -> Result<ActionSchema, StoreError> {
    let corrupt =
        |reason: String| StoreError::Corrupt(format!("schema {action} v{version}: {reason}"));
    let value: Value = serde_json::from_str(definition).map_err(|e| corrupt(e.to_string()))?;
    let definition =
        SchemaDefinition::parse(&value).map_err(|problems| corrupt(format!("{problems:?}")))?;
    let action = ActionName::parse(action).map_err(|problem| corrupt(problem.message))?;
    Ok(ActionSchema {
        action,
        version,
        definition,
        created_at: Timestamp::from_unix_millis(created_at),
    })
}

/// An event row's columns, as stored.
pub(crate) struct EventColumns {
    pub id: String,
    pub organization_id: String,
    pub sequence: i64,
    pub received_at: i64,
    pub leaf_hash: Vec<u8>,
    pub body: String,
    pub purged_at: Option<i64>,
}

impl EventColumns {
    pub(crate) fn decode(self) -> Result<StoredEvent, StoreError> {
        self.raw()?.decode()
    }

    pub(crate) fn raw(self) -> Result<RawEvent, StoreError> {
        let id = self.id;
        Ok(RawEvent {
            leaf_hash: hash(self.leaf_hash, || format!("event {id}: leaf hash"))?,
            organization_id: self.organization_id,
            sequence: self.sequence as u64,
            received_at: Timestamp::from_unix_millis(self.received_at),
            body: self.body,
            purged_at: self.purged_at.map(Timestamp::from_unix_millis),
            id,
        })
    }
}

/// A 32-byte hash column; `what` names it in the corruption report.
pub(crate) fn hash(bytes: Vec<u8>, what: impl FnOnce() -> String) -> Result<Hash, StoreError> {
    Hash::try_from(bytes).map_err(|_| StoreError::Corrupt(format!("{} is not 32 bytes", what())))
}

/// An export row's columns, as stored.
pub(crate) struct ExportColumns {
    pub id: String,
    pub organization_id: String,
    pub state: String,
    pub format: String,
    pub filter: String,
    pub row_count: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ExportColumns {
    pub(crate) fn decode(self) -> Result<ExportRecord, StoreError> {
        let id = self.id;
        Ok(ExportRecord {
            state: ExportState::parse(&self.state).ok_or_else(|| {
                StoreError::Corrupt(format!("export {id} state '{}'", self.state))
            })?,
            format: ExportFormat::parse(&self.format).ok_or_else(|| {
                StoreError::Corrupt(format!("export {id} format '{}'", self.format))
            })?,
            filter: filter_from_json(&self.filter)?,
            organization_id: self.organization_id,
            row_count: self.row_count.map(|n| n as u64),
            error: self.error,
            created_at: Timestamp::from_unix_millis(self.created_at),
            updated_at: Timestamp::from_unix_millis(self.updated_at),
            id,
        })
    }
}

/// A stream row's columns, as stored.
pub(crate) struct StreamColumns {
    pub id: String,
    pub organization_id: String,
    pub kind: String,
    pub name: String,
    pub config: String,
    pub secrets: Vec<u8>,
    pub enabled: bool,
    pub state: String,
    pub cursor: Option<i64>,
    pub last_synced_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl StreamColumns {
    pub(crate) fn decode(self) -> Result<StreamRecord, StoreError> {
        let id = self.id;
        Ok(StreamRecord {
            config: serde_json::from_str(&self.config)
                .map_err(|e| StoreError::Corrupt(format!("stream {id}: {e}")))?,
            state: StreamState::parse(&self.state).ok_or_else(|| {
                StoreError::Corrupt(format!("stream {id}: state '{}'", self.state))
            })?,
            cursor: self.cursor.map(|c| c as u64),
            last_synced_at: self.last_synced_at.map(Timestamp::from_unix_millis),
            created_at: Timestamp::from_unix_millis(self.created_at),
            updated_at: Timestamp::from_unix_millis(self.updated_at),
            organization_id: (!self.organization_id.is_empty()).then_some(self.organization_id),
            kind: self.kind,
            name: self.name,
            secrets: self.secrets,
            enabled: self.enabled,
            last_error: self.last_error,
            id,
        })
    }
}

/// The `organization_id` column of a stream: an operator-wide stream (no organization) is
/// stored with the empty string, which no organization id is (migration `stream_cursors`).
pub(crate) fn stream_organization(organization_id: Option<&str>) -> &str {
    organization_id.unwrap_or("")
}

/// A log head's frontier, stored as its hashes concatenated.
pub(crate) fn frontier(
    organization_id: &str,
    size: i64,
    bytes: Vec<u8>,
) -> Result<trailmark_ledger::tree::Frontier, StoreError> {
    let hashes = bytes
        .chunks(32)
        .map(|chunk| {
            Hash::try_from(chunk).map_err(|_| {
                StoreError::Corrupt(format!(
                    "log head of {organization_id}: frontier is not whole hashes"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(trailmark_ledger::tree::Frontier::from_parts(
        size as u64,
        hashes,
    )?)
}
