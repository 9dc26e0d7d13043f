//! The embedded store: SQLite in WAL mode, one file, durable on every acknowledged commit.
//! See [`worker`] for how writes are grouped into commits.

mod incidents;
mod operators;
mod worker;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;
use trailmark_domain::organization::Organization;
use trailmark_domain::portal::PortalIntent;
use trailmark_domain::schema::ActionSchema;

use crate::codec::filter_to_json;
use crate::log::{Access, Change, LogEngine};
use crate::model::{
    ActionSummary, ApiKeyRecord, AppendOutcome, AppendRequest, ExportRecord, ExportState,
    LegalHold, OrganizationFilter, Page, PageRequest, PendingEvent, RawEvent, Receipt, Revocation,
    Rewrite, SearchPage, SearchRequest, StoredCheckpoint, StoredEvent, StreamRecord, StreamState,
};
use crate::portal::{NewPortalSession, PortalLink, PortalRedemption, PortalSession};
use crate::rows::{ExportColumns, OrganizationColumns, StreamColumns, domains_json};
use crate::rules;
use crate::window::Window;
use crate::{
    ApiKeys, EventLog, ExportStore, Hash, Health, LedgerStore, Organizations, PortalStore,
    Retention, Schemas, StoreError, StreamStore,
};
pub(crate) use worker::Database;

/// Migrations in order; `PRAGMA user_version` records how many have been applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_live_search_indexes.sql"),
    include_str!("migrations/0003_export_runners.sql"),
    include_str!("migrations/0004_portal.sql"),
    include_str!("migrations/0005_actor_time_index.sql"),
    include_str!("migrations/0006_idempotency_receipts.sql"),
    include_str!("migrations/0007_event_log.sql"),
    include_str!("migrations/0008_portal_success_url.sql"),
    include_str!("migrations/0009_erasures.sql"),
    include_str!("migrations/0010_api_key_lifecycle.sql"),
    include_str!("migrations/0011_operators.sql"),
    include_str!("migrations/0012_stream_cursors.sql"),
    include_str!("migrations/0013_incidents.sql"),
];

/// The SQLite implementation of [`Store`]. Clones share one writer thread and reader pool.
#[derive(Clone)]
pub struct SqliteStore {
    /// Organizations, keys, schemas, streams, exports, checkpoints, legal holds, portal
    /// sessions, and the log's derived index.
    db: Database,
    /// The events themselves.
    log: LogEngine,
}

impl SqliteStore {
    /// Opens or creates the database file at `path` and its log beside it (`<name>.log/`),
    /// brings the schema up to date, and moves events an earlier version kept in the database
    /// into the log.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] if the directory cannot be created, [`StoreError::Database`] if the
    /// file is not a usable SQLite database or a migration fails, [`StoreError::Corrupt`] if it
    /// was created by a newer Trailmark or its log is damaged.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_observed(path, Arc::new(crate::observe::Unobserved))
    }

    /// [`SqliteStore::open`], reporting group commits of events, reader waits and the reader
    /// pool's use to `observer`.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub fn open_observed(
        path: &Path,
        observer: Arc<dyn crate::StoreObserver>,
    ) -> Result<Self, StoreError> {
        let db = Database::open(path, migrate, observer)?;
        let log = LogEngine::open(path, db.clone(), Access::Write)?;
        Ok(SqliteStore { db, log })
    }

    /// Opens the database and its log beside a server that may be running on them
    /// (`trailmark verify`, `export`, `keys`): the tables are read and written as usual, the log
    /// is read as it was at this moment, and nothing is appended to it. Organizations are not
    /// deleted through such a store (it refuses): the running server's log writer keeps the
    /// organizations it found live and forgets one only when its own store deletes it.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub fn open_beside(path: &Path) -> Result<Self, StoreError> {
        let db = Database::open(path, migrate, Arc::new(crate::observe::Unobserved))?;
        let log = LogEngine::open(path, db.clone(), Access::Read)?;
        Ok(SqliteStore { db, log })
    }

    /// Writes every event still held in memory into the index's blocks, and the lookups into
    /// runs, so that the database alone answers for them. Nothing depends on it for
    /// correctness (a start reads them back from the log); it makes the next start quick.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.log.flush().await
    }

    /// Writes what memory holds ([`SqliteStore::flush`]), then closes the store and waits until
    /// its log is released, so another process (or another store in this one) can open it.
    /// Other clones of this store must be dropped first.
    ///
    /// # Errors
    ///
    /// The flush's errors; the store is closed anyway.
    pub async fn close(self) -> Result<(), StoreError> {
        let flushed = self.log.flush().await;
        let SqliteStore { db, log } = self;
        drop(db);
        log.close().await;
        flushed
    }
}

/// The SQL functions this module's queries use, registered on the writer's and the readers'
/// connections: `trailmark_lower(text)` lower-cases as Rust does, as search text is, where
/// SQLite's own `lower()` folds ASCII letters only ("Ärzte" stayed "Ärzte").
pub(crate) fn register_functions(connection: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    connection.create_scalar_function(
        "trailmark_lower",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |context| Ok(context.get::<String>(0)?.to_lowercase()),
    )
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {applied}, newer than this Trailmark ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", index as i64 + 1)?;
        transaction.commit()?;
    }
    Ok(())
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        if self.log.is_failed() {
            return Err(StoreError::Unavailable(
                "the log could not be written and refuses appends until a restart".into(),
            ));
        }
        self.db
            .read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}

/// The columns [`api_key_from_row`] reads, in its order.
const API_KEY_COLUMNS: &str =
    "id, hash, name, prefix, scope, organization_id, created_at, expires_at, last_used_at";

fn api_key_from_row(row: &Row<'_>) -> rusqlite::Result<Result<ApiKeyRecord, StoreError>> {
    let id: String = row.get(0)?;
    let hash: Vec<u8> = row.get(1)?;
    let scope: String = row.get(4)?;
    let millis = |at: Option<i64>| at.map(Timestamp::from_unix_millis);
    let (created_at, expires_at, last_used_at): (i64, Option<i64>, Option<i64>) =
        (row.get(6)?, row.get(7)?, row.get(8)?);
    let (name, prefix, organization_id) = (row.get(2)?, row.get(3)?, row.get(5)?);
    Ok((|| {
        let scope = Scope::parse(&scope)
            .ok_or_else(|| StoreError::Corrupt(format!("key {id} has scope '{scope}'")))?;
        let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
            StoreError::Corrupt(format!("key {id} has a hash of {} bytes", hash.len()))
        })?;
        Ok(ApiKeyRecord {
            id,
            hash,
            name,
            prefix,
            scope,
            organization_id,
            created_at: Timestamp::from_unix_millis(created_at),
            expires_at: millis(expires_at),
            last_used_at: millis(last_used_at),
        })
    })())
}

fn api_keys_where(
    c: &Connection,
    condition: &str,
    parameters: impl rusqlite::Params,
) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let mut statement = c.prepare_cached(&format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE {condition} ORDER BY created_at, id"
    ))?;
    let rows = statement.query_map(parameters, api_key_from_row)?;
    let mut keys = Vec::new();
    for row in rows {
        keys.push(row??);
    }
    Ok(keys)
}

#[async_trait]
impl ApiKeys for SqliteStore {
    async fn insert_api_key(&self, key: ApiKeyRecord) -> Result<(), StoreError> {
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT INTO api_keys (id, hash, name, prefix, scope, organization_id, created_at, expires_at, last_used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        key.id,
                        key.hash.as_slice(),
                        key.name,
                        key.prefix,
                        key.scope.as_str(),
                        key.organization_id,
                        key.created_at.unix_millis(),
                        key.expires_at.map(Timestamp::unix_millis),
                        key.last_used_at.map(Timestamp::unix_millis),
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn find_api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.db
            .read(move |c| Ok(api_keys_where(c, "hash = ?1", [hash.as_slice()])?.pop()))
            .await
    }

    async fn has_api_keys(&self) -> Result<bool, StoreError> {
        self.db
            .read(|c| {
                Ok(
                    c.query_row("SELECT EXISTS (SELECT 1 FROM api_keys)", [], |row| {
                        row.get(0)
                    })?,
                )
            })
            .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.db.read(|c| api_keys_where(c, "1 = 1", [])).await
    }

    async fn revoke_api_key(
        &self,
        id: &str,
        keep_an_admin: bool,
        now: Timestamp,
    ) -> Result<Revocation, StoreError> {
        let id = id.to_owned();
        // One writer: the check and the deletion cannot interleave with another revocation.
        self.db
            .write(move |c| {
                let Some(target) = api_keys_where(c, "id = ?1", [&id])?.pop() else {
                    return Ok(Revocation::NotFound);
                };
                if keep_an_admin {
                    let admins =
                        api_keys_where(c, "scope = 'admin' AND organization_id IS NULL", [])?;
                    if !rules::revocation_keeps_an_admin(&target, &admins, now) {
                        return Ok(Revocation::LastAdminKey);
                    }
                }
                c.execute("DELETE FROM api_keys WHERE id = ?1", [&id])?;
                Ok(Revocation::Revoked(target))
            })
            .await
    }

    async fn touch_api_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.db
            .write(move |c| {
                let found = c.query_row(
                    "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = ?1)",
                    [&id],
                    |row| row.get(0),
                )?;
                c.execute(
                    "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                    params![id, at.unix_millis()],
                )?;
                Ok(found)
            })
            .await
    }
}

#[async_trait]
impl Organizations for SqliteStore {
    async fn insert_organization(
        &self,
        organization: Organization,
    ) -> Result<Organization, StoreError> {
        self.db
            .write(move |c| {
                ensure_external_id_free(c, &organization)?;
                c.execute(
                    "INSERT INTO organizations (id, name, external_id, domains, metadata, allow_profiles_outside_organization,
                        retention_period_in_days, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        organization.id,
                        organization.name,
                        organization.external_id,
                        domains_json(&organization.domains),
                        json!(organization.metadata).to_string(),
                        organization.allow_profiles_outside_organization,
                        organization.retention_period_in_days,
                        organization.created_at.unix_millis(),
                        organization.updated_at.unix_millis(),
                    ],
                )?;
                // Its number in the log's derived tables, from now on.
                c.execute(
                    "INSERT INTO log_organizations (id) VALUES (?1)",
                    [&organization.id],
                )?;
                Ok(organization)
            })
            .await
    }

    async fn get_organization(&self, id: &str) -> Result<Option<Organization>, StoreError> {
        let id = id.to_owned();
        self.db
            .read(move |c| {
                c.prepare_cached(&format!("SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = ?1 AND deleted_at IS NULL"))?
                    .query_row([id], organization_from_row)
                    .optional()?
                    .transpose()
            })
            .await
    }

    async fn list_organizations(
        &self,
        filter: OrganizationFilter,
        page: PageRequest,
    ) -> Result<Page<Organization>, StoreError> {
        self.db
            .read(move |c| {
                let mut conditions = vec!["deleted_at IS NULL".to_owned()];
                let mut values: Vec<rusqlite::types::Value> = Vec::new();
                if let Some(only) = filter.only {
                    values.push(only.into());
                    conditions.push(format!("id = ?{}", values.len()));
                }
                if let Some(external_id) = filter.external_id {
                    values.push(external_id.into());
                    conditions.push(format!("external_id = ?{}", values.len()));
                }
                if let Some(search) = filter.search {
                    // `\` escapes first: a backslash in the text is text too.
                    let escaped = search.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                    values.push(format!("%{escaped}%").into());
                    conditions.push(format!("trailmark_lower(name) LIKE ?{} ESCAPE '\\'", values.len()));
                }
                if !filter.domains.is_empty() {
                    let mut placeholders = Vec::new();
                    for domain in filter.domains {
                        values.push(domain.to_ascii_lowercase().into());
                        placeholders.push(format!("?{}", values.len()));
                    }
                    conditions.push(format!(
                        "EXISTS (SELECT 1 FROM json_each(organizations.domains) d WHERE json_extract(d.value, '$.domain') IN ({}))",
                        placeholders.join(", ")
                    ));
                }
                let window = Window::new(&page);
                if let Some(cursor) = &window.cursor {
                    values.push(cursor.clone().into());
                    conditions.push(format!("id {} ?{}", window.comparison, values.len()));
                }
                let sql = format!(
                    "SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE {} ORDER BY id {} LIMIT {}",
                    conditions.join(" AND "),
                    window.direction,
                    page.limit + 1
                );
                let rows = c
                    .prepare(&sql)?
                    .query_map(rusqlite::params_from_iter(values), organization_from_row)?
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(window.page(rows, page.limit))
            })
            .await
    }

    async fn update_organization(&self, organization: Organization) -> Result<bool, StoreError> {
        self.db
            .write(move |c| {
                ensure_external_id_free(c, &organization)?;
                let changed = c.execute(
                    "UPDATE organizations SET name = ?2, external_id = ?3, domains = ?4, metadata = ?5,
                        allow_profiles_outside_organization = ?6, updated_at = ?7
                     WHERE id = ?1 AND deleted_at IS NULL",
                    params![
                        organization.id,
                        organization.name,
                        organization.external_id,
                        domains_json(&organization.domains),
                        json!(organization.metadata).to_string(),
                        organization.allow_profiles_outside_organization,
                        organization.updated_at.unix_millis(),
                    ],
                )?;
                Ok(changed == 1)
            })
            .await
    }

    async fn delete_organization(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        if !self.log.appends() {
            // The serving process's log writer would never hear of it (see `open_beside`).
            return Err(StoreError::Unavailable(
                "organizations are deleted through the serving process, not beside it".into(),
            ));
        }
        let id = id.to_owned();
        let db = self.db.clone();
        let log = Arc::clone(&self.log.shared);
        // A task of its own, so that the log writer forgets the organization even when the
        // caller stops waiting (a client that hangs up drops its handler's future) after the
        // deletion was queued: the write commits anyway.
        tokio::spawn(async move {
            let deleted = db
                .write({
                    let id = id.clone();
                    move |c| {
                        // The external id is freed so a new organization can take it.
                        let changed = c.execute(
                            "UPDATE organizations SET deleted_at = ?2, external_id = NULL WHERE id = ?1 AND deleted_at IS NULL",
                            params![id, now.unix_millis()],
                        )?;
                        Ok(changed == 1)
                    }
                })
                .await;
            // Only "nothing was deleted" leaves the writer's knowledge right; forgetting too
            // often costs one lookup.
            if !matches!(deleted, Ok(false)) {
                log.live.forget(&id);
            }
            deleted
        })
        .await
        .unwrap_or_else(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(StoreError::Unavailable(format!(
                "deleting the organization: {e}"
            ))),
        })
    }

    async fn set_retention(
        &self,
        id: &str,
        days: u32,
        now: Timestamp,
    ) -> Result<Option<Organization>, StoreError> {
        let id = id.to_owned();
        self.db
            .write(move |c| {
                c.execute(
                    "UPDATE organizations SET retention_period_in_days = ?2, updated_at = ?3 WHERE id = ?1 AND deleted_at IS NULL",
                    params![id, days, now.unix_millis()],
                )?;
                c.prepare_cached(&format!("SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = ?1 AND deleted_at IS NULL"))?
                    .query_row([id], organization_from_row)
                    .optional()?
                    .transpose()
            })
            .await
    }
}

#[async_trait]
impl Schemas for SqliteStore {
    async fn latest_schema(&self, action: &str) -> Result<Option<ActionSchema>, StoreError> {
        let action = action.to_owned();
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT action, version, definition, created_at FROM action_schemas WHERE action = ?1
                     ORDER BY version DESC LIMIT 1",
                )?
                .query_row([action], schema_from_row)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn get_schema(
        &self,
        action: &str,
        version: u32,
    ) -> Result<Option<ActionSchema>, StoreError> {
        let action = action.to_owned();
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT action, version, definition, created_at FROM action_schemas WHERE action = ?1 AND version = ?2",
                )?
                .query_row(params![action, version], schema_from_row)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn insert_schema(&self, schema: ActionSchema) -> Result<(), StoreError> {
        self.db
            .write(move |c| {
                let inserted = c.execute(
                    "INSERT INTO action_schemas (action, version, definition, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (action, version) DO NOTHING",
                    params![
                        schema.action.as_str(),
                        schema.version,
                        schema.definition.to_json().to_string(),
                        schema.created_at.unix_millis()
                    ],
                )?;
                if inserted == 0 {
                    return Err(StoreError::Conflict("version"));
                }
                Ok(())
            })
            .await
    }

    async fn list_schemas(
        &self,
        action: &str,
        page: PageRequest,
    ) -> Result<Page<ActionSchema>, StoreError> {
        let action = action.to_owned();
        self.db
            .read(move |c| {
                let window = Window::new(&page);
                let mut values: Vec<rusqlite::types::Value> = vec![action.into()];
                let mut condition = String::new();
                if let Some(cursor) = &window.cursor {
                    let version: i64 = cursor
                        .parse()
                        .map_err(|_| StoreError::InvalidCursor(if page.before.is_some() { "before" } else { "after" }))?;
                    values.push(version.into());
                    condition = format!("AND version {} ?2", window.comparison);
                }
                let sql = format!(
                    "SELECT action, version, definition, created_at FROM action_schemas WHERE action = ?1 {condition}
                     ORDER BY version {} LIMIT {}",
                    window.direction,
                    page.limit + 1
                );
                let rows = c
                    .prepare(&sql)?
                    .query_map(rusqlite::params_from_iter(values), schema_from_row)?
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(window.page(rows, page.limit))
            })
            .await
    }

    async fn list_actions(&self, page: PageRequest) -> Result<Page<ActionSummary>, StoreError> {
        self.db
            .read(move |c| {
                let window = Window::new(&page);
                let mut values: Vec<rusqlite::types::Value> = Vec::new();
                let mut condition = String::new();
                if let Some(cursor) = &window.cursor {
                    values.push(cursor.clone().into());
                    condition = format!("WHERE s.action {} ?1", window.comparison);
                }
                let sql = format!(
                    "SELECT s.action, s.version, s.definition, s.created_at, f.created_at
                     FROM action_schemas s
                     JOIN (SELECT action, MAX(version) AS latest, MIN(created_at) AS created_at FROM action_schemas GROUP BY action) f
                       ON f.action = s.action AND f.latest = s.version
                     {condition}
                     ORDER BY s.action {} LIMIT {}",
                    window.direction,
                    page.limit + 1
                );
                let rows = c
                    .prepare(&sql)?
                    .query_map(rusqlite::params_from_iter(values), |row| {
                        let first_created: i64 = row.get(4)?;
                        Ok(schema_from_row(row)?.map(|latest| ActionSummary {
                            created_at: Timestamp::from_unix_millis(first_created),
                            updated_at: latest.created_at,
                            latest,
                        }))
                    })?
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(window.page(rows, page.limit))
            })
            .await
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.log.append(request).await
    }

    async fn search_events(
        &self,
        organization_id: &str,
        request: SearchRequest,
    ) -> Result<SearchPage, StoreError> {
        self.log
            .search(organization_id, request, RawEvent::decode)
            .await
    }

    async fn search_raw_events(
        &self,
        organization_id: &str,
        request: SearchRequest,
    ) -> Result<SearchPage<RawEvent>, StoreError> {
        self.log.search(organization_id, request, Ok).await
    }

    async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.log.get_event(id).await
    }

    async fn log_size(&self, organization_id: &str) -> Result<u64, StoreError> {
        self.log.log_size(organization_id)
    }

    async fn log_sizes(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.log.log_sizes()
    }

    async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError> {
        let retired = self.log.retire_claims(now)?;
        // Records from before the log existed, until the last of them expires.
        let legacy = self
            .db
            .write(move |c| {
                Ok(c.execute(
                    "DELETE FROM idempotency WHERE expires_at <= ?1",
                    [now.unix_millis()],
                )? as u64)
            })
            .await?;
        Ok(retired + legacy)
    }
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn tree_root(&self, organization_id: &str, size: u64) -> Result<Hash, StoreError> {
        self.log.tree_root(organization_id, size).await
    }

    async fn inclusion_proofs(
        &self,
        organization_id: &str,
        indexes: Vec<u64>,
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, StoreError> {
        self.log
            .inclusion_proofs(organization_id, indexes, size)
            .await
    }

    async fn consistency_proof(
        &self,
        organization_id: &str,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        self.log
            .consistency_proof(organization_id, first, second)
            .await
    }

    async fn subtree_hashes(
        &self,
        organization_id: &str,
        size: u64,
        level: u32,
        start: u64,
        count: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        self.log
            .subtree_hashes(organization_id, size, level, start, count)
            .await
    }

    async fn add_cosignatures(
        &self,
        organization_id: &str,
        tree_size: u64,
        note: String,
    ) -> Result<(), StoreError> {
        let organization_id = organization_id.to_owned();
        self.db
            .write(move |c| {
                c.execute(
                    "UPDATE checkpoints SET note = ?1 WHERE organization_id = ?2 AND tree_size = ?3",
                    params![note, organization_id, tree_size as i64],
                )?;
                Ok(())
            })
            .await
    }

    async fn insert_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<(), StoreError> {
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO checkpoints (organization_id, tree_size, root, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        checkpoint.organization_id,
                        checkpoint.tree_size as i64,
                        checkpoint.root.as_slice(),
                        checkpoint.note,
                        checkpoint.created_at.unix_millis()
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn latest_checkpoint(
        &self,
        organization_id: &str,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let organization_id = organization_id.to_owned();
        self.db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE organization_id = ?1 ORDER BY tree_size DESC LIMIT 1"
                ))?
                .query_row([organization_id], checkpoint_from_row)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn logs_needing_checkpoint(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let sizes = self.log.log_sizes()?;
        let signed: std::collections::HashMap<String, u64> = self
            .db
            .read(|c| {
                Ok(c.prepare_cached(
                    "SELECT organization_id, MAX(tree_size) FROM checkpoints GROUP BY organization_id",
                )?
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
                })?
                .collect::<Result<_, _>>()?)
            })
            .await?;
        Ok(sizes
            .into_iter()
            .filter(|(id, size)| *size > signed.get(id).copied().unwrap_or(0))
            .collect())
    }
}

#[async_trait]
impl Retention for SqliteStore {
    async fn purgeable_organizations(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.db
            .read(|c| {
                Ok(c.prepare_cached(
                    "SELECT o.id, o.retention_period_in_days FROM organizations o
                     WHERE o.retention_period_in_days IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.organization_id = o.id)",
                )?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn purge_events(
        &self,
        organization_id: &str,
        received_before: Timestamp,
        limit: usize,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.log
            .purge(organization_id, received_before, limit, now)
            .await
    }

    async fn erase_events(
        &self,
        organization_id: &str,
        rewrites: Vec<Rewrite>,
        force: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let changes = rewrites
            .into_iter()
            .map(|rewrite| {
                let change = match rewrite.body {
                    Some(body) => Change::Body(body.to_string()),
                    None => Change::Purge(now.unix_millis()),
                };
                (rewrite.sequence, change)
            })
            .collect();
        self.log.erase(organization_id, changes, force).await
    }

    async fn legal_hold(&self, organization_id: &str) -> Result<Option<LegalHold>, StoreError> {
        let organization_id = organization_id.to_owned();
        self.db
            .read(move |c| {
                Ok(c.prepare_cached(
                    "SELECT reason, set_at FROM legal_holds WHERE organization_id = ?1",
                )?
                .query_row([&organization_id], |row| {
                    Ok(LegalHold {
                        organization_id: organization_id.clone(),
                        reason: row.get(0)?,
                        set_at: Timestamp::from_unix_millis(row.get(1)?),
                    })
                })
                .optional()?)
            })
            .await
    }

    async fn set_legal_hold(
        &self,
        organization_id: &str,
        reason: Option<String>,
        record: PendingEvent,
        now: Timestamp,
    ) -> Result<Receipt, StoreError> {
        // The record first: a crash between the two leaves a record of a change that did not
        // happen (the caller, unanswered, retries), never a change without its record.
        let request = AppendRequest {
            organization_id: organization_id.to_owned(),
            events: vec![record],
            idempotency: None,
        };
        let receipt = match self.log.append(request).await? {
            AppendOutcome::Appended { mut receipts } if receipts.len() == 1 => receipts.remove(0),
            _ => {
                return Err(StoreError::Corrupt(
                    "recording the legal hold appended no event".into(),
                ));
            }
        };
        let organization_id = organization_id.to_owned();
        self.db
            .write(move |c| {
                match &reason {
                    Some(reason) => c.execute(
                        "INSERT INTO legal_holds (organization_id, reason, set_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (organization_id) DO UPDATE SET reason = excluded.reason, set_at = excluded.set_at",
                        params![organization_id, reason, now.unix_millis()],
                    )?,
                    None => c.execute("DELETE FROM legal_holds WHERE organization_id = ?1", [&organization_id])?,
                };
                Ok(())
            })
            .await?;
        Ok(receipt)
    }
}

#[async_trait]
impl StreamStore for SqliteStore {
    async fn insert_stream(&self, stream: StreamRecord) -> Result<(), StoreError> {
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT INTO streams (id, organization_id, type, name, config, secrets, enabled, state, cursor,
                        last_synced_at, last_error, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        stream.id,
                        crate::rows::stream_organization(stream.organization_id.as_deref()),
                        stream.kind,
                        stream.name,
                        stream.config.to_string(),
                        stream.secrets,
                        stream.enabled,
                        stream.state.as_str(),
                        stream.cursor.map(|c| c as i64),
                        stream.last_synced_at.map(Timestamp::unix_millis),
                        stream.last_error,
                        stream.created_at.unix_millis(),
                        stream.updated_at.unix_millis(),
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn get_stream(&self, id: &str) -> Result<Option<StreamRecord>, StoreError> {
        let id = id.to_owned();
        self.db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {STREAM_COLUMNS} FROM streams WHERE id = ?1"
                ))?
                .query_row([id], stream_from_row)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn list_streams(
        &self,
        organization_id: Option<&str>,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        let organization_id = organization_id.map(str::to_owned);
        self.db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {STREAM_COLUMNS} FROM streams WHERE ?1 IS NULL OR organization_id = ?1 ORDER BY id"
                ))?
                .query_map([organization_id], stream_from_row)?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .collect()
            })
            .await
    }

    async fn update_stream(&self, stream: StreamRecord) -> Result<bool, StoreError> {
        self.db
            .write(move |c| {
                let changed = c.execute(
                    "UPDATE streams SET name = ?2, config = ?3, secrets = ?4, enabled = ?5, state = ?6, last_error = ?7,
                        updated_at = ?8, failing_since = CASE WHEN ?5 THEN failing_since END WHERE id = ?1",
                    params![
                        stream.id,
                        stream.name,
                        stream.config.to_string(),
                        stream.secrets,
                        stream.enabled,
                        stream.state.as_str(),
                        stream.last_error,
                        stream.updated_at.unix_millis(),
                    ],
                )?;
                Ok(changed == 1)
            })
            .await
    }

    async fn delete_stream(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.db
            .write(move |c| {
                c.execute("DELETE FROM stream_cursors WHERE stream_id = ?1", [&id])?;
                Ok(c.execute("DELETE FROM streams WHERE id = ?1", [&id])? == 1)
            })
            .await
    }

    async fn lease_stream(
        &self,
        id: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.db
            .write(move |c| {
                let changed = c.execute(
                    "UPDATE streams SET lease_holder = ?2, lease_until = ?3
                     WHERE id = ?1 AND (lease_holder IS NULL OR lease_holder = ?2 OR lease_until < ?4)",
                    params![id, holder, until.unix_millis(), now.unix_millis()],
                )?;
                Ok(changed == 1)
            })
            .await
    }

    async fn record_delivery(
        &self,
        id: &str,
        holder: &str,
        from: Option<u64>,
        to: u64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.db
            .write(move |c| {
                let changed = c.execute(
                    "UPDATE streams SET cursor = ?4, state = CASE WHEN enabled THEN ?6 ELSE ?7 END,
                        last_synced_at = ?5, last_error = NULL, failing_since = NULL
                     WHERE id = ?1 AND lease_holder = ?2 AND cursor IS ?3",
                    params![
                        id,
                        holder,
                        from.map(|c| c as i64),
                        to as i64,
                        now.unix_millis(),
                        rules::stream_state_after_delivery(true).as_str(),
                        rules::stream_state_after_delivery(false).as_str()
                    ],
                )?;
                Ok(changed == 1)
            })
            .await
    }

    async fn record_stream_failure(
        &self,
        id: &str,
        state: StreamState,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (id, error) = (id.to_owned(), error.to_owned());
        self.db
            .write(move |c| {
                c.execute(
                    "UPDATE streams SET state = ?2, last_error = ?3, updated_at = ?4,
                        failing_since = COALESCE(failing_since, ?4) WHERE id = ?1 AND enabled",
                    params![id, state.as_str(), error, now.unix_millis()],
                )?;
                Ok(())
            })
            .await
    }

    async fn set_stream_cursor(
        &self,
        id: &str,
        cursor: Option<u64>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.db
            .write(move |c| {
                let changed = c.execute(
                    "UPDATE streams SET cursor = ?2, updated_at = ?3 WHERE id = ?1",
                    params![id, cursor.map(|c| c as i64), now.unix_millis()],
                )?;
                Ok(changed == 1)
            })
            .await
    }

    async fn organization_cursors(&self, id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let id = id.to_owned();
        self.db
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT organization_id, cursor FROM stream_cursors WHERE stream_id = ?1
                     ORDER BY organization_id",
                )?;
                let cursors = statement
                    .query_map([id], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(cursors)
            })
            .await
    }

    async fn set_organization_cursor(
        &self,
        id: &str,
        organization_id: &str,
        cursor: Option<u64>,
    ) -> Result<(), StoreError> {
        let (id, organization_id) = (id.to_owned(), organization_id.to_owned());
        self.db
            .write(move |c| {
                match cursor {
                    Some(cursor) => c.execute(
                        "INSERT INTO stream_cursors (stream_id, organization_id, cursor)
                         VALUES (?1, ?2, ?3)
                         ON CONFLICT (stream_id, organization_id) DO UPDATE SET cursor = excluded.cursor",
                        params![id, organization_id, cursor as i64],
                    )?,
                    None => c.execute(
                        "DELETE FROM stream_cursors WHERE stream_id = ?1 AND organization_id = ?2",
                        params![id, organization_id],
                    )?,
                };
                Ok(())
            })
            .await
    }

    async fn record_organization_delivery(
        &self,
        id: &str,
        holder: &str,
        organization_id: &str,
        from: Option<u64>,
        to: u64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, holder, organization_id) =
            (id.to_owned(), holder.to_owned(), organization_id.to_owned());
        self.db
            .write(move |c| {
                // One writer: the checks and the writes below see no one in between.
                let held = c
                    .query_row(
                        "SELECT enabled FROM streams WHERE id = ?1 AND lease_holder = ?2",
                        params![id, holder],
                        |row| row.get::<_, bool>(0),
                    )
                    .optional()?;
                let Some(enabled) = held else {
                    return Ok(false);
                };
                let current = c
                    .query_row(
                        "SELECT cursor FROM stream_cursors WHERE stream_id = ?1 AND organization_id = ?2",
                        params![id, organization_id],
                        |row| row.get::<_, i64>(0),
                    )
                    .optional()?
                    .map(|c| c as u64);
                if current != from {
                    return Ok(false);
                }
                c.execute(
                    "INSERT INTO stream_cursors (stream_id, organization_id, cursor) VALUES (?1, ?2, ?3)
                     ON CONFLICT (stream_id, organization_id) DO UPDATE SET cursor = excluded.cursor",
                    params![id, organization_id, to as i64],
                )?;
                c.execute(
                    "UPDATE streams SET state = ?2, last_synced_at = ?3, last_error = NULL, failing_since = NULL
                     WHERE id = ?1",
                    params![
                        id,
                        rules::stream_state_after_delivery(enabled).as_str(),
                        now.unix_millis()
                    ],
                )?;
                Ok(true)
            })
            .await
    }
}

#[async_trait]
impl ExportStore for SqliteStore {
    async fn insert_export(&self, export: ExportRecord) -> Result<(), StoreError> {
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT INTO exports (id, organization_id, state, format, filter, row_count, error, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        export.id,
                        export.organization_id,
                        export.state.as_str(),
                        export.format.as_str(),
                        filter_to_json(&export.filter),
                        export.row_count.map(|n| n as i64),
                        export.error,
                        export.created_at.unix_millis(),
                        export.updated_at.unix_millis(),
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn get_export(&self, id: &str) -> Result<Option<ExportRecord>, StoreError> {
        let id = id.to_owned();
        self.db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {EXPORT_COLUMNS} FROM exports WHERE id = ?1"
                ))?
                .query_row([id], export_from_row)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn exports_in_state(&self, state: ExportState) -> Result<Vec<ExportRecord>, StoreError> {
        self.db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {EXPORT_COLUMNS} FROM exports WHERE state = ?1 ORDER BY id"
                ))?
                .query_map([state.as_str()], export_from_row)?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .collect()
            })
            .await
    }

    async fn finish_export(
        &self,
        id: &str,
        outcome: Result<u64, String>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.db
            .write(move |c| {
                let (state, rows, error) = match outcome {
                    Ok(rows) => (ExportState::Ready, Some(rows as i64), None),
                    Err(reason) => (ExportState::Error, None, Some(reason)),
                };
                c.execute(
                    "UPDATE exports SET state = ?2, row_count = ?3, error = ?4, updated_at = ?5 WHERE id = ?1 AND state = 'pending'",
                    params![id, state.as_str(), rows, error, now.unix_millis()],
                )?;
                Ok(())
            })
            .await
    }

    async fn revise_export(
        &self,
        id: &str,
        outcome: Result<u64, String>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.db
            .write(move |c| {
                let (state, rows, error) = match outcome {
                    Ok(rows) => (ExportState::Ready, Some(rows as i64), None),
                    Err(reason) => (ExportState::Error, None, Some(reason)),
                };
                let changed = c.execute(
                    "UPDATE exports SET state = ?2, row_count = ?3, error = ?4, updated_at = ?5 WHERE id = ?1 AND state = 'ready'",
                    params![id, state.as_str(), rows, error, now.unix_millis()],
                )?;
                Ok(changed == 1)
            })
            .await
    }

    async fn claim_export(
        &self,
        id: &str,
        runner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, runner) = (id.to_owned(), runner.to_owned());
        self.db
            .write(move |c| {
                let changed = c.execute(
                    "UPDATE exports SET runner = ?2, run_until = ?3
                     WHERE id = ?1 AND state = 'pending' AND (runner IS NULL OR runner = ?2 OR run_until < ?4)",
                    params![id, runner, until.unix_millis(), now.unix_millis()],
                )?;
                Ok(changed == 1)
            })
            .await
    }
}

#[async_trait]
impl PortalStore for SqliteStore {
    async fn insert_portal_link(&self, link: PortalLink) -> Result<(), StoreError> {
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT INTO portal_links (token_hash, organization_id, intent, email, return_url, created_at, expires_at, success_url)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        link.token_hash.as_slice(),
                        link.organization_id,
                        link.intent.as_str(),
                        link.email,
                        link.return_url,
                        link.created_at.unix_millis(),
                        link.expires_at.unix_millis(),
                        link.success_url,
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn redeem_portal_link(
        &self,
        token_hash: [u8; 32],
        now: Timestamp,
        session: NewPortalSession,
    ) -> Result<PortalRedemption, StoreError> {
        self.db
            .write(move |c| {
                let link = c
                    .query_row(
                        "SELECT organization_id, intent, email, return_url, expires_at, used_at, success_url
                         FROM portal_links WHERE token_hash = ?1",
                        [token_hash.as_slice()],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, Option<String>>(2)?,
                                row.get::<_, Option<String>>(3)?,
                                row.get::<_, i64>(4)?,
                                row.get::<_, Option<i64>>(5)?,
                                row.get::<_, Option<String>>(6)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((organization_id, intent, email, return_url, expires_at, used_at, success_url)) =
                    link
                else {
                    return Ok(PortalRedemption::Unknown);
                };
                if used_at.is_some() {
                    return Ok(PortalRedemption::AlreadyUsed);
                }
                if now.unix_millis() > expires_at {
                    return Ok(PortalRedemption::Expired);
                }
                let intent = portal_intent(&intent)?;
                c.execute(
                    "UPDATE portal_links SET used_at = ?2 WHERE token_hash = ?1",
                    params![token_hash.as_slice(), now.unix_millis()],
                )?;
                c.execute(
                    "INSERT INTO portal_sessions (secret_hash, id, organization_id, intent, email, return_url, csrf_token, created_at, expires_at, success_url)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        session.secret_hash.as_slice(),
                        session.id,
                        organization_id,
                        intent.as_str(),
                        email,
                        return_url,
                        session.csrf_token,
                        now.unix_millis(),
                        session.expires_at.unix_millis(),
                        success_url,
                    ],
                )?;
                Ok(PortalRedemption::Opened(PortalSession {
                    id: session.id,
                    organization_id,
                    intent,
                    email,
                    return_url,
                    success_url,
                    csrf_token: session.csrf_token,
                    expires_at: session.expires_at,
                }))
            })
            .await
    }

    async fn touch_portal_session(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
        renew_until: Timestamp,
    ) -> Result<Option<PortalSession>, StoreError> {
        self.db
            .write(move |c| {
                let row = c
                    .query_row(
                        "UPDATE portal_sessions SET expires_at = ?3 WHERE secret_hash = ?1 AND expires_at > ?2
                         RETURNING id, organization_id, intent, email, return_url, csrf_token, success_url",
                        params![secret_hash.as_slice(), now.unix_millis(), renew_until.unix_millis()],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, String>(2)?,
                                row.get::<_, Option<String>>(3)?,
                                row.get::<_, Option<String>>(4)?,
                                row.get::<_, String>(5)?,
                                row.get::<_, Option<String>>(6)?,
                            ))
                        },
                    )
                    .optional()?;
                row.map(|(id, organization_id, intent, email, return_url, csrf_token, success_url)| {
                    Ok(PortalSession {
                        id,
                        organization_id,
                        intent: portal_intent(&intent)?,
                        email,
                        return_url,
                        success_url,
                        csrf_token,
                        expires_at: renew_until,
                    })
                })
                .transpose()
            })
            .await
    }

    async fn portal_session_open(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT EXISTS (SELECT 1 FROM portal_sessions WHERE secret_hash = ?1 AND expires_at > ?2)",
                    params![secret_hash.as_slice(), now.unix_millis()],
                    |row| row.get::<_, bool>(0),
                )?)
            })
            .await
    }

    async fn purge_portal(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.db
            .write(move |c| {
                let links = c.execute(
                    "DELETE FROM portal_links WHERE expires_at < ?1",
                    [before.unix_millis()],
                )?;
                let sessions = c.execute(
                    "DELETE FROM portal_sessions WHERE expires_at < ?1",
                    [before.unix_millis()],
                )?;
                Ok((links + sessions) as u64)
            })
            .await
    }
}

fn portal_intent(text: &str) -> Result<PortalIntent, StoreError> {
    PortalIntent::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("a portal link has the intent '{text}'")))
}

const CHECKPOINT_COLUMNS: &str = "organization_id, tree_size, root, note, created_at";

fn checkpoint_from_row(row: &Row<'_>) -> rusqlite::Result<Result<StoredCheckpoint, StoreError>> {
    let organization_id: String = row.get(0)?;
    let tree_size: i64 = row.get(1)?;
    let root: Vec<u8> = row.get(2)?;
    let note: String = row.get(3)?;
    let created_at = Timestamp::from_unix_millis(row.get(4)?);
    Ok(crate::rows::hash(root, || {
        format!("checkpoint {organization_id}@{tree_size}: root")
    })
    .map(|root| StoredCheckpoint {
        organization_id,
        tree_size: tree_size as u64,
        root,
        note,
        created_at,
    }))
}

const STREAM_COLUMNS: &str = "id, organization_id, type, name, config, secrets, enabled, state, cursor, \
     last_synced_at, last_error, created_at, updated_at";

fn stream_from_row(row: &Row<'_>) -> rusqlite::Result<Result<StreamRecord, StoreError>> {
    Ok(StreamColumns {
        id: row.get(0)?,
        organization_id: row.get(1)?,
        kind: row.get(2)?,
        name: row.get(3)?,
        config: row.get(4)?,
        secrets: row.get(5)?,
        enabled: row.get(6)?,
        state: row.get(7)?,
        cursor: row.get(8)?,
        last_synced_at: row.get(9)?,
        last_error: row.get(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
    }
    .decode())
}

const EXPORT_COLUMNS: &str =
    "id, organization_id, state, format, filter, row_count, error, created_at, updated_at";

fn export_from_row(row: &Row<'_>) -> rusqlite::Result<Result<ExportRecord, StoreError>> {
    Ok(ExportColumns {
        id: row.get(0)?,
        organization_id: row.get(1)?,
        state: row.get(2)?,
        format: row.get(3)?,
        filter: row.get(4)?,
        row_count: row.get(5)?,
        error: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    }
    .decode())
}

fn ensure_external_id_free(c: &Connection, organization: &Organization) -> Result<(), StoreError> {
    let Some(external_id) = &organization.external_id else {
        return Ok(());
    };
    let taken: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM organizations WHERE external_id = ?1 AND id != ?2)",
        params![external_id, organization.id],
        |row| row.get(0),
    )?;
    if taken {
        Err(StoreError::Conflict("external_id"))
    } else {
        Ok(())
    }
}

const ORGANIZATION_COLUMNS: &str = "id, name, external_id, domains, metadata, allow_profiles_outside_organization, \
     retention_period_in_days, created_at, updated_at";

/// Maps a row of [`ORGANIZATION_COLUMNS`]; the inner `Result` reports stored JSON that no longer
/// parses, which is corruption rather than a database error.
fn organization_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Organization, StoreError>> {
    Ok(OrganizationColumns {
        id: row.get(0)?,
        name: row.get(1)?,
        external_id: row.get(2)?,
        domains: row.get(3)?,
        metadata: row.get(4)?,
        allow_profiles_outside_organization: row.get(5)?,
        retention_period_in_days: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    }
    .decode())
}

/// Maps `action, version, definition, created_at`.
fn schema_from_row(row: &Row<'_>) -> rusqlite::Result<Result<ActionSchema, StoreError>> {
    let action: String = row.get(0)?;
    let definition: String = row.get(2)?;
    Ok(crate::rows::schema(
        &action,
        row.get(1)?,
        &definition,
        row.get(3)?,
    ))
}
