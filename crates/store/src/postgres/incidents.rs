//! [`Incidents`] on PostgreSQL. A change reads the incident's row `FOR UPDATE`, applies the rule
//! and writes it back in one transaction, so racing instances take turns; the notifier's
//! look-up skips rows another instance has locked.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use trailmark_domain::Timestamp;

use super::PostgresStore;
use crate::incident::{INCIDENT_COLUMNS, IncidentColumns};
use crate::{IncidentRecord, Incidents, Notice, StoreError, StreamFault, StreamState, rules};

#[async_trait]
impl Incidents for PostgresStore {
    async fn stream_faults(&self) -> Result<Vec<StreamFault>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, organization_id, state, last_error, failing_since FROM streams
                 WHERE enabled AND failing_since IS NOT NULL ORDER BY id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let stream_id: String = row.try_get(0)?;
                let organization_id: String = row.try_get(1)?;
                let state: String = row.try_get(2)?;
                Ok(StreamFault {
                    state: StreamState::parse(&state).ok_or_else(|| {
                        StoreError::Corrupt(format!("stream {stream_id}: state '{state}'"))
                    })?,
                    organization_id: (!organization_id.is_empty()).then_some(organization_id),
                    last_error: row.try_get(3)?,
                    failing_since: Timestamp::from_unix_millis(row.try_get(4)?),
                    stream_id,
                })
            })
            .collect()
    }

    async fn open_incident(&self, incident: IncidentRecord) -> Result<bool, StoreError> {
        // The unique (kind, subject_id, since) decides between racing instances.
        let inserted = self
            .client()
            .await?
            .execute(
                &format!(
                    "INSERT INTO incidents ({INCIDENT_COLUMNS}, notices_done)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
                     ON CONFLICT (kind, subject_id, since) DO NOTHING"
                ),
                &[
                    &incident.id,
                    &incident.kind.as_str(),
                    &incident.subject_id,
                    &incident.organization_id,
                    &incident.state,
                    &incident.last_error,
                    &incident.since.unix_millis(),
                    &incident.opened_at.unix_millis(),
                    &incident.resolved_at.map(Timestamp::unix_millis),
                    &incident.resolution,
                    &incident.opened_notified_at.map(Timestamp::unix_millis),
                    &incident.resolved_notified_at.map(Timestamp::unix_millis),
                    &i32::try_from(incident.attempts).unwrap_or(i32::MAX),
                    &incident.next_attempt_at.unix_millis(),
                    &incident.last_delivery_error,
                    &incident.lease_holder,
                    &incident.lease_until.map(Timestamp::unix_millis),
                    &rules::pending_notice(&incident).is_none(),
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn resolve_incident(
        &self,
        id: &str,
        resolution: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let Some(incident) = select(&transaction, "WHERE id = $1 FOR UPDATE", &[&id])
            .await?
            .pop()
        else {
            return Ok(false);
        };
        let Some(resolved) = rules::incident_resolved(&incident, resolution, now) else {
            return Ok(false);
        };
        store(&transaction, &resolved).await?;
        transaction.commit().await?;
        Ok(true)
    }

    async fn open_incidents(&self) -> Result<Vec<IncidentRecord>, StoreError> {
        let client = self.client().await?;
        select(
            &client,
            "WHERE resolved_at IS NULL ORDER BY opened_at, id",
            &[],
        )
        .await
    }

    async fn recent_incidents(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        select(
            &client,
            "ORDER BY opened_at DESC, id DESC LIMIT $1",
            &[&limit],
        )
        .await
    }

    async fn claim_notice(
        &self,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<(IncidentRecord, Notice)>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Rows another instance is claiming are skipped rather than waited for: it takes them.
        let owing = select(
            &transaction,
            "WHERE NOT notices_done ORDER BY opened_at, id FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await?;
        let Some((incident, notice)) = owing.iter().find_map(|incident| {
            rules::claimable_notice(incident, holder, now).map(|n| (incident, n))
        }) else {
            // The rows are released now, not when a dropped transaction's ROLLBACK reaches the
            // server: a claim right after, on another connection, would skip them as locked.
            transaction.rollback().await?;
            return Ok(None);
        };
        let claimed = rules::incident_claimed(incident, holder, until);
        store(&transaction, &claimed).await?;
        transaction.commit().await?;
        Ok(Some((claimed, notice)))
    }

    async fn finish_notice(
        &self,
        id: &str,
        notice: Notice,
        holder: &str,
        outcome: Result<(), String>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let Some(incident) = select(&transaction, "WHERE id = $1 FOR UPDATE", &[&id])
            .await?
            .pop()
        else {
            return Ok(false);
        };
        if incident.lease_holder.as_deref() != Some(holder)
            || rules::pending_notice(&incident) != Some(notice)
        {
            return Ok(false);
        }
        store(
            &transaction,
            &rules::incident_after_notice(&incident, notice, outcome, now),
        )
        .await?;
        transaction.commit().await?;
        Ok(true)
    }

    async fn purge_incidents(&self, before: Timestamp) -> Result<u64, StoreError> {
        Ok(self
            .client()
            .await?
            .execute(
                "DELETE FROM incidents WHERE notices_done AND resolved_at < $1",
                &[&before.unix_millis()],
            )
            .await?)
    }
}

async fn select(
    client: &impl GenericClient,
    rest: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<IncidentRecord>, StoreError> {
    client
        .query(
            &format!("SELECT {INCIDENT_COLUMNS} FROM incidents {rest}"),
            params,
        )
        .await?
        .iter()
        .map(|row| columns(row)?.decode())
        .collect()
}

fn columns(row: &Row) -> Result<IncidentColumns, StoreError> {
    Ok(IncidentColumns {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        subject_id: row.try_get(2)?,
        organization_id: row.try_get(3)?,
        state: row.try_get(4)?,
        last_error: row.try_get(5)?,
        since: row.try_get(6)?,
        opened_at: row.try_get(7)?,
        resolved_at: row.try_get(8)?,
        resolution: row.try_get(9)?,
        opened_notified_at: row.try_get(10)?,
        resolved_notified_at: row.try_get(11)?,
        attempts: i64::from(row.try_get::<_, i32>(12)?),
        next_attempt_at: row.try_get(13)?,
        last_delivery_error: row.try_get(14)?,
        lease_holder: row.try_get(15)?,
        lease_until: row.try_get(16)?,
    })
}

/// Writes what a rule changed in a stored incident.
async fn store(client: &impl GenericClient, incident: &IncidentRecord) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE incidents SET resolved_at = $2, resolution = $3, opened_notified_at = $4,
                resolved_notified_at = $5, attempts = $6, next_attempt_at = $7, last_delivery_error = $8,
                lease_holder = $9, lease_until = $10, notices_done = $11
             WHERE id = $1",
            &[
                &incident.id,
                &incident.resolved_at.map(Timestamp::unix_millis),
                &incident.resolution,
                &incident.opened_notified_at.map(Timestamp::unix_millis),
                &incident.resolved_notified_at.map(Timestamp::unix_millis),
                &i32::try_from(incident.attempts).unwrap_or(i32::MAX),
                &incident.next_attempt_at.unix_millis(),
                &incident.last_delivery_error,
                &incident.lease_holder,
                &incident.lease_until.map(Timestamp::unix_millis),
                &rules::pending_notice(incident).is_none(),
            ],
        )
        .await?;
    Ok(())
}
