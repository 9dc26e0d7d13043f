//! [`Incidents`] on SQLite. One writer thread: a read, the rule and the write in one closure
//! see no one in between.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use trailmark_domain::Timestamp;

use super::SqliteStore;
use crate::incident::{INCIDENT_COLUMNS, IncidentColumns};
use crate::{IncidentRecord, Incidents, Notice, StoreError, StreamFault, StreamState, rules};

#[async_trait]
impl Incidents for SqliteStore {
    async fn stream_faults(&self) -> Result<Vec<StreamFault>, StoreError> {
        self.db
            .read(|c| {
                let mut statement = c.prepare_cached(
                    "SELECT id, organization_id, state, last_error, failing_since FROM streams
                     WHERE enabled AND failing_since IS NOT NULL ORDER BY id",
                )?;
                let rows = statement.query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, i64>(4)?,
                    ))
                })?;
                let mut faults = Vec::new();
                for row in rows {
                    let (stream_id, organization_id, state, last_error, since) = row?;
                    faults.push(StreamFault {
                        state: StreamState::parse(&state).ok_or_else(|| {
                            StoreError::Corrupt(format!("stream {stream_id}: state '{state}'"))
                        })?,
                        organization_id: (!organization_id.is_empty()).then_some(organization_id),
                        stream_id,
                        last_error,
                        failing_since: Timestamp::from_unix_millis(since),
                    });
                }
                Ok(faults)
            })
            .await
    }

    async fn open_incident(&self, incident: IncidentRecord) -> Result<bool, StoreError> {
        self.db
            .write(move |c| {
                let inserted = c.execute(
                    &format!(
                        "INSERT INTO incidents ({INCIDENT_COLUMNS}, notices_done)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
                         ON CONFLICT (kind, subject_id, since) DO NOTHING"
                    ),
                    params![
                        incident.id,
                        incident.kind.as_str(),
                        incident.subject_id,
                        incident.organization_id,
                        incident.state,
                        incident.last_error,
                        incident.since.unix_millis(),
                        incident.opened_at.unix_millis(),
                        incident.resolved_at.map(Timestamp::unix_millis),
                        incident.resolution,
                        incident.opened_notified_at.map(Timestamp::unix_millis),
                        incident.resolved_notified_at.map(Timestamp::unix_millis),
                        incident.attempts,
                        incident.next_attempt_at.unix_millis(),
                        incident.last_delivery_error,
                        incident.lease_holder,
                        incident.lease_until.map(Timestamp::unix_millis),
                        rules::pending_notice(&incident).is_none(),
                    ],
                )?;
                Ok(inserted == 1)
            })
            .await
    }

    async fn resolve_incident(
        &self,
        id: &str,
        resolution: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, resolution) = (id.to_owned(), resolution.to_owned());
        self.db
            .write(move |c| {
                let Some(incident) = incident(c, &id)? else {
                    return Ok(false);
                };
                let Some(resolved) = rules::incident_resolved(&incident, &resolution, now) else {
                    return Ok(false);
                };
                store(c, &resolved)?;
                Ok(true)
            })
            .await
    }

    async fn open_incidents(&self) -> Result<Vec<IncidentRecord>, StoreError> {
        self.db
            .read(|c| {
                select(
                    c,
                    "WHERE resolved_at IS NULL ORDER BY opened_at, id",
                    params![],
                )
            })
            .await
    }

    async fn recent_incidents(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |c| {
                select(
                    c,
                    "ORDER BY opened_at DESC, id DESC LIMIT ?1",
                    params![limit],
                )
            })
            .await
    }

    async fn claim_notice(
        &self,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<(IncidentRecord, Notice)>, StoreError> {
        let holder = holder.to_owned();
        self.db
            .write(move |c| {
                let owing = select(
                    c,
                    "WHERE NOT notices_done ORDER BY opened_at, id",
                    params![],
                )?;
                let Some((incident, notice)) = owing.iter().find_map(|incident| {
                    rules::claimable_notice(incident, &holder, now).map(|n| (incident, n))
                }) else {
                    return Ok(None);
                };
                let claimed = rules::incident_claimed(incident, &holder, until);
                store(c, &claimed)?;
                Ok(Some((claimed, notice)))
            })
            .await
    }

    async fn finish_notice(
        &self,
        id: &str,
        notice: Notice,
        holder: &str,
        outcome: Result<(), String>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.db
            .write(move |c| {
                let Some(incident) = incident(c, &id)? else {
                    return Ok(false);
                };
                if incident.lease_holder.as_deref() != Some(holder.as_str())
                    || rules::pending_notice(&incident) != Some(notice)
                {
                    return Ok(false);
                }
                store(
                    c,
                    &rules::incident_after_notice(&incident, notice, outcome, now),
                )?;
                Ok(true)
            })
            .await
    }

    async fn purge_incidents(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.db
            .write(move |c| {
                Ok(c.execute(
                    "DELETE FROM incidents WHERE notices_done AND resolved_at < ?1",
                    [before.unix_millis()],
                )? as u64)
            })
            .await
    }
}

fn incident(c: &Connection, id: &str) -> Result<Option<IncidentRecord>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"
    ))?
    .query_row([id], columns)
    .optional()?
    .map(IncidentColumns::decode)
    .transpose()
}

fn select(
    c: &Connection,
    rest: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<IncidentRecord>, StoreError> {
    c.prepare_cached(&format!("SELECT {INCIDENT_COLUMNS} FROM incidents {rest}"))?
        .query_map(params, columns)?
        .map(|row| row?.decode())
        .collect()
}

fn columns(row: &Row<'_>) -> rusqlite::Result<IncidentColumns> {
    Ok(IncidentColumns {
        id: row.get(0)?,
        kind: row.get(1)?,
        subject_id: row.get(2)?,
        organization_id: row.get(3)?,
        state: row.get(4)?,
        last_error: row.get(5)?,
        since: row.get(6)?,
        opened_at: row.get(7)?,
        resolved_at: row.get(8)?,
        resolution: row.get(9)?,
        opened_notified_at: row.get(10)?,
        resolved_notified_at: row.get(11)?,
        attempts: row.get(12)?,
        next_attempt_at: row.get(13)?,
        last_delivery_error: row.get(14)?,
        lease_holder: row.get(15)?,
        lease_until: row.get(16)?,
    })
}

/// Writes what a rule changed in a stored incident.
fn store(c: &Connection, incident: &IncidentRecord) -> Result<(), StoreError> {
    c.execute(
        "UPDATE incidents SET resolved_at = ?2, resolution = ?3, opened_notified_at = ?4,
            resolved_notified_at = ?5, attempts = ?6, next_attempt_at = ?7, last_delivery_error = ?8,
            lease_holder = ?9, lease_until = ?10, notices_done = ?11
         WHERE id = ?1",
        params![
            incident.id,
            incident.resolved_at.map(Timestamp::unix_millis),
            incident.resolution,
            incident.opened_notified_at.map(Timestamp::unix_millis),
            incident.resolved_notified_at.map(Timestamp::unix_millis),
            incident.attempts,
            incident.next_attempt_at.unix_millis(),
            incident.last_delivery_error,
            incident.lease_holder,
            incident.lease_until.map(Timestamp::unix_millis),
            rules::pending_notice(incident).is_none(),
        ],
    )?;
    Ok(())
}
