//! The scale-out store: PostgreSQL, shared by any number of `trailmark serve` instances.
//!
//! Every instance keeps the same promises as the embedded store (see the crate docs), now
//! across processes:
//! - **Sequencing** goes through a row lock on the organization's `log_heads` row, taken in
//!   organization-id order, so two instances never assign the same sequence or compute the same
//!   Merkle node twice, and never deadlock on each other.
//! - **Group commit.** Appends from one instance go through its [`appender`], whose committers
//!   commit whatever is waiting in one transaction with bulk inserts, so one WAL flush covers
//!   many requests.
//! - **Failing fast.** A connection is waited for at most [`POOL_WAIT`]; a database that is gone
//!   or restarting surfaces as [`StoreError::Unavailable`] (the HTTP edge answers 503, which
//!   clients retry), never as a hang or a wrong answer. Connections broken by a restart are
//!   dropped by the pool and replaced on the next request.
//! - **TLS as libpq does it.** The URL's `sslmode` and `sslrootcert` keep libpq's meanings
//!   ([`settings`] reads them, [`tls`] checks certificates accordingly); a URL or certificate
//!   that cannot work stops [`PostgresStore::connect`] with a message naming the cause.

mod appender;
mod cluster;
mod incidents;
mod operators;
mod search;
mod search_blocks;
mod settings;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde_json::json;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;
use trailmark_domain::organization::Organization;
use trailmark_domain::portal::PortalIntent;
use trailmark_domain::schema::ActionSchema;
use trailmark_ledger::LedgerError;
use trailmark_ledger::tree::{
    MemoryNodes, NodeReader, consistency_proof, inclusion_proof, tree_hash,
};

use crate::codec::filter_to_json;
use crate::model::{
    ActionSummary, ApiKeyRecord, AppendOutcome, AppendRequest, ExportRecord, ExportState,
    LegalHold, OrganizationFilter, Page, PageRequest, PendingEvent, RawEvent, Receipt, Revocation,
    Rewrite, SearchPage, SearchRequest, StoredCheckpoint, StoredEvent, StreamRecord, StreamState,
};
use crate::portal::{NewPortalSession, PortalLink, PortalRedemption, PortalSession};
use crate::rows::{
    EventColumns, ExportColumns, OrganizationColumns, StreamColumns, domains_json, hash,
};
use crate::rules;
use crate::window::Window;
use crate::{
    ApiKeys, EventLog, ExportStore, Hash, Health, LedgerStore, Organizations, PortalStore,
    Retention, Schemas, StoreError, StreamStore,
};
use appender::Appender;
use cluster::Cluster;
pub use cluster::ClusterConfig;
use settings::ConnectionSettings;
pub use settings::SettingsError;
use tls::RustlsConnector;

/// Migrations in order; the `trailmark_migrations` table records which have been applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_portal.sql"),
    include_str!("migrations/0003_actor_time_index.sql"),
    include_str!("migrations/0004_idempotency_receipts.sql"),
    include_str!("migrations/0005_portal_success_url.sql"),
    include_str!("migrations/0006_api_key_lifecycle.sql"),
    include_str!("migrations/0007_operators.sql"),
    include_str!("migrations/0008_stream_cursors.sql"),
    include_str!("migrations/0009_incidents.sql"),
    include_str!("migrations/0010_text_blocks.sql"),
    include_str!("migrations/0011_search_blocks.sql"),
    include_str!("migrations/0012_events_from_body.sql"),
    include_str!("migrations/0013_heads_with_organizations.sql"),
    include_str!("migrations/0014_cluster.sql"),
    include_str!("migrations/0015_no_cluster_secret.sql"),
];
/// How long a request waits for a pooled connection (or to open one) before it is answered
/// with `Unavailable`.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// Connections per instance for reads and background jobs (the appender has its own).
const POOL_SIZE: usize = 16;

/// The PostgreSQL implementation of [`Store`]. Clones share one pool and one appender (which has
/// a pool of its own).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    appender: Appender,
    /// With `--cluster-listen`: hands appends to the instance that sequences their organization.
    cluster: Option<Arc<Cluster>>,
    observer: Arc<dyn crate::StoreObserver>,
    search_cache: Arc<search_blocks::BlockCache>,
    /// Builds the search blocks behind the appends while any clone lives.
    _block_builder: Arc<search_blocks::Builder>,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`, with libpq's
    /// `sslmode` and `sslrootcert` parameters), applies the migrations it has not seen yet, and
    /// starts the appender.
    ///
    /// # Errors
    ///
    /// [`StoreError::Settings`] if the URL has an unknown parameter or a bad value,
    /// [`StoreError::Unavailable`] if the database cannot be reached (naming the hosts, the
    /// `sslmode` and, for TLS, what the handshake rejected), [`StoreError::Database`] if a
    /// migration fails, [`StoreError::Corrupt`] if a newer Trailmark migrated it.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_observed(url, Arc::new(crate::observe::Unobserved)).await
    }

    /// [`PostgresStore::connect`], reporting commits, connection waits and the pool's use to
    /// `observer`.
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`].
    pub async fn connect_observed(
        url: &str,
        observer: Arc<dyn crate::StoreObserver>,
    ) -> Result<Self, StoreError> {
        Self::connect_in_cluster(url, observer, None).await
    }

    /// [`PostgresStore::connect_observed`]; with `cluster`, the instance also joins the others
    /// that hand each other their appends (`cluster`'s module says how).
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`], and [`StoreError::Unavailable`] if `cluster.listen` cannot
    /// be listened on.
    pub async fn connect_in_cluster(
        url: &str,
        observer: Arc<dyn crate::StoreObserver>,
        cluster: Option<ClusterConfig>,
    ) -> Result<Self, StoreError> {
        let settings = ConnectionSettings::parse(url).map_err(StoreError::Settings)?;
        let tls = RustlsConnector::new(settings.ssl_mode, &settings.root_certs)
            .map_err(StoreError::Settings)?;
        let target = settings.describe();
        let mut config = settings.config;
        config.connect_timeout(POOL_WAIT);
        config.keepalives_idle(Duration::from_secs(30));
        config.application_name("trailmark");
        // The appender's committers have connections of their own, made on their thread, named
        // apart in `pg_stat_activity`.
        let mut appender_config = config.clone();
        appender_config.application_name("trailmark-appender");
        let appender_pool = pool_of(appender_config, tls.clone(), appender::COMMITTERS)?;
        let pool = pool_of(config, tls, POOL_SIZE)?;
        // The first connection says whether the URL works at all; its failure (refused, wrong
        // password, a certificate the mode rejects) is reported with where and how it was tried.
        let first = pool.get().await.map_err(|error| {
            StoreError::Unavailable(format!("cannot connect to {target}: {}", why(error)))
        })?;
        let probe = pool.clone();
        observer.pool(Arc::new(move || {
            let status = probe.status();
            crate::PoolUse {
                max: status.max_size,
                in_use: status.size.saturating_sub(status.available),
                idle: status.available,
                waiting: status.waiting,
            }
        }));
        let mut store = PostgresStore {
            appender: Appender::start(appender_pool, Arc::clone(&observer)).await?,
            cluster: None,
            search_cache: Arc::default(),
            _block_builder: Arc::new(search_blocks::Builder::start(pool.clone())),
            pool,
            observer,
        };
        store.migrate(first).await?;
        if let Some(config) = cluster {
            let joined = Cluster::join(
                &config,
                &store.pool,
                store.appender.clone(),
                Arc::clone(&store.observer),
            )
            .await?;
            store.cluster = Some(Arc::new(joined));
        }
        Ok(store)
    }

    /// The number of migrations this database has had applied.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the database cannot be reached.
    pub async fn schema_version(&self) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM trailmark_migrations",
                &[],
            )
            .await?;
        Ok(row.get::<_, i32>(0) as usize)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        let asked = std::time::Instant::now();
        let client = self.pool.get().await.map_err(pool_error)?;
        self.observer.connection_wait(asked.elapsed());
        Ok(client)
    }

    /// Applies each migration in its own transaction, which first claims the migration's
    /// version: an instance starting beside another waits on that row, then finds the version
    /// taken and moves on, so each migration runs exactly once.
    async fn migrate(&self, mut client: Object) -> Result<(), StoreError> {
        let create = "CREATE TABLE IF NOT EXISTS trailmark_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)";
        // Two instances creating the table at the same moment: one of them gets a unique
        // violation from the catalog (IF NOT EXISTS does not cover that race); by the time it
        // retries, the table exists.
        if let Err(error) = client.batch_execute(create).await {
            if error.code() != Some(&SqlState::UNIQUE_VIOLATION) {
                return Err(error.into());
            }
            client.batch_execute(create).await?;
        }
        let applied: i32 = client
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM trailmark_migrations",
                &[],
            )
            .await?
            .get(0);
        if applied as usize > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "the database has schema version {applied}, newer than this Trailmark ({})",
                MIGRATIONS.len()
            )));
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            let version = index as i32 + 1;
            let transaction = client.transaction().await?;
            let claimed = transaction
                .execute(
                    "INSERT INTO trailmark_migrations (version, applied_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&version, &Timestamp::now().unix_millis()],
                )
                .await?;
            if claimed == 0 {
                continue;
            }
            // Some rewrite a large table: say what runs, from the migration's own first line.
            let about = migration.lines().next().unwrap_or_default();
            tracing::info!(
                version,
                "applying schema migration: {}",
                about.trim_start_matches("-- ")
            );
            transaction.batch_execute(migration).await?;
            transaction.commit().await?;
        }
        Ok(())
    }

    async fn organization_where(
        &self,
        condition: &str,
        id: &str,
    ) -> Result<Option<Organization>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE {condition}"),
                &[&id],
            )
            .await?;
        row.map(|row| organization_from_row(&row)).transpose()
    }
}

/// A pool of up to `size` connections made with `config` and `tls`.
fn pool_of(
    config: tokio_postgres::Config,
    tls: RustlsConnector,
    size: usize,
) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            // A connection broken by a database restart reports itself closed; the pool then
            // drops it instead of handing it out.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .recycle_timeout(Some(POOL_WAIT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// What a pool failure means to a caller: the database is not there right now.
fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {}", why(error)))
}

/// Why the pool has no connection: the database's own error when opening one failed.
fn why(error: deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(error) => with_causes(&error),
        other => other.to_string(),
    }
}

/// `error: cause: cause…`. tokio-postgres keeps the substance in the causes: its own message is
/// only "error performing TLS handshake" or "invalid connection string".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        message.push_str(": ");
        message.push_str(&next.to_string());
        cause = next.source();
    }
    message
}

impl From<tokio_postgres::Error> for StoreError {
    /// A lost connection, a server shutting down or starting, and a transaction the server chose
    /// to abort (serialization failure, deadlock) are transient: the request may be retried.
    fn from(error: tokio_postgres::Error) -> Self {
        // No SQLSTATE means the server never answered: the connection is closed or failed.
        let transient = error.code().is_none_or(|code| {
            matches!(&code.code()[..2], "08" | "53" | "57")
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
        });
        if transient {
            StoreError::Unavailable(with_causes(&error))
        } else {
            StoreError::Database(Box::new(error))
        }
    }
}

#[async_trait]
impl Health for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.query_one("SELECT 1", &[]).await?;
        Ok(())
    }
}

/// The columns [`api_key_from_row`] reads, in its order.
const API_KEY_COLUMNS: &str =
    "id, hash, name, prefix, scope, organization_id, created_at, expires_at, last_used_at";

fn api_key_from_row(row: &Row) -> Result<ApiKeyRecord, StoreError> {
    let id: String = row.get(0);
    let scope: String = row.get(4);
    let scope = Scope::parse(&scope)
        .ok_or_else(|| StoreError::Corrupt(format!("key {id} has scope '{scope}'")))?;
    let millis = |at: Option<i64>| at.map(Timestamp::from_unix_millis);
    Ok(ApiKeyRecord {
        hash: hash(row.get(1), || format!("the hash of key {id}"))?,
        name: row.get(2),
        prefix: row.get(3),
        scope,
        organization_id: row.get(5),
        created_at: Timestamp::from_unix_millis(row.get(6)),
        expires_at: millis(row.get(7)),
        last_used_at: millis(row.get(8)),
        id,
    })
}

#[async_trait]
impl ApiKeys for PostgresStore {
    async fn insert_api_key(&self, key: ApiKeyRecord) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO api_keys (id, hash, name, prefix, scope, organization_id, created_at, expires_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &key.id,
                    &key.hash.as_slice(),
                    &key.name,
                    &key.prefix,
                    &key.scope.as_str(),
                    &key.organization_id,
                    &key.created_at.unix_millis(),
                    &key.expires_at.map(Timestamp::unix_millis),
                    &key.last_used_at.map(Timestamp::unix_millis),
                ],
            )
            .await?;
        Ok(())
    }

    async fn find_api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.client()
            .await?
            .query_opt(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE hash = $1"),
                &[&hash.as_slice()],
            )
            .await?
            .map(|row| api_key_from_row(&row))
            .transpose()
    }

    async fn has_api_keys(&self) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_one("SELECT EXISTS (SELECT 1 FROM api_keys)", &[])
            .await?;
        Ok(row.get(0))
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.client()
            .await?
            .query(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"),
                &[],
            )
            .await?
            .iter()
            .map(api_key_from_row)
            .collect()
    }

    async fn revoke_api_key(
        &self,
        id: &str,
        keep_an_admin: bool,
        now: Timestamp,
    ) -> Result<Revocation, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Every unrestricted admin key is locked first, in one order, so two revocations racing
        // for the last two admin keys run one after the other and the second sees the first's.
        let admins = transaction
            .query(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE scope = 'admin' AND organization_id IS NULL ORDER BY id FOR UPDATE"),
                &[],
            )
            .await?
            .iter()
            .map(api_key_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let Some(target) = transaction
            .query_opt(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await?
            .map(|row| api_key_from_row(&row))
            .transpose()?
        else {
            return Ok(Revocation::NotFound);
        };
        if keep_an_admin && !rules::revocation_keeps_an_admin(&target, &admins, now) {
            return Ok(Revocation::LastAdminKey);
        }
        transaction
            .execute("DELETE FROM api_keys WHERE id = $1", &[&id])
            .await?;
        transaction.commit().await?;
        Ok(Revocation::Revoked(target))
    }

    async fn touch_api_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "WITH touched AS (UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2) RETURNING 1) SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = $1)",
                &[&id, &at.unix_millis()],
            )
            .await?;
        Ok(row.get(0))
    }
}

#[async_trait]
impl Organizations for PostgresStore {
    async fn insert_organization(
        &self,
        organization: Organization,
    ) -> Result<Organization, StoreError> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                // With its log head, so that no append has to create one (`appender::lock_heads`).
                "WITH organization AS (
                    INSERT INTO organizations (id, name, external_id, domains, metadata, allow_profiles_outside_organization,
                        retention_period_in_days, created_at, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id)
                 INSERT INTO log_heads (organization_id, size, frontier)
                 SELECT id, 0, ''::BYTEA FROM organization",
                &[
                    &organization.id,
                    &organization.name,
                    &organization.external_id,
                    &domains_json(&organization.domains),
                    &json!(organization.metadata).to_string(),
                    &organization.allow_profiles_outside_organization,
                    &organization.retention_period_in_days.map(|d| d as i32),
                    &organization.created_at.unix_millis(),
                    &organization.updated_at.unix_millis(),
                ],
            )
            .await;
        external_id_conflict(inserted)?;
        Ok(organization)
    }

    async fn get_organization(&self, id: &str) -> Result<Option<Organization>, StoreError> {
        self.organization_where("id = $1 AND deleted_at IS NULL", id)
            .await
    }

    async fn list_organizations(
        &self,
        filter: OrganizationFilter,
        page: PageRequest,
    ) -> Result<Page<Organization>, StoreError> {
        let mut conditions = vec!["deleted_at IS NULL".to_owned()];
        let mut values: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = Vec::new();
        if let Some(only) = filter.only {
            values.push(Box::new(only));
            conditions.push(format!("id = ${}", values.len()));
        }
        if let Some(external_id) = filter.external_id {
            values.push(Box::new(external_id));
            conditions.push(format!("external_id = ${}", values.len()));
        }
        if let Some(search) = filter.search {
            values.push(Box::new(format!(
                "%{}%",
                search
                    .to_lowercase()
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )));
            conditions.push(format!("lower(name) LIKE ${}", values.len()));
        }
        if !filter.domains.is_empty() {
            let domains: Vec<String> = filter
                .domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect();
            values.push(Box::new(domains));
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM json_array_elements(organizations.domains::json) d WHERE d->>'domain' = ANY(${}))",
                values.len()
            ));
        }
        let window = Window::new(&page);
        if let Some(cursor) = &window.cursor {
            values.push(Box::new(cursor.clone()));
            conditions.push(format!("id {} ${}", window.comparison, values.len()));
        }
        let sql = format!(
            "SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE {} ORDER BY id {} LIMIT {}",
            conditions.join(" AND "),
            window.direction,
            page.limit + 1
        );
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let rows = self.client().await?.query(&sql, &params).await?;
        let organizations = rows
            .iter()
            .map(organization_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(window.page(organizations, page.limit))
    }

    async fn update_organization(&self, organization: Organization) -> Result<bool, StoreError> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE organizations SET name = $2, external_id = $3, domains = $4, metadata = $5,
                    allow_profiles_outside_organization = $6, updated_at = $7
                 WHERE id = $1 AND deleted_at IS NULL",
                &[
                    &organization.id,
                    &organization.name,
                    &organization.external_id,
                    &domains_json(&organization.domains),
                    &json!(organization.metadata).to_string(),
                    &organization.allow_profiles_outside_organization,
                    &organization.updated_at.unix_millis(),
                ],
            )
            .await;
        Ok(external_id_conflict(changed)? == 1)
    }

    async fn delete_organization(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        // The external id is freed so a new organization can take it.
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE organizations SET deleted_at = $2, external_id = NULL WHERE id = $1 AND deleted_at IS NULL",
                &[&id, &now.unix_millis()],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn set_retention(
        &self,
        id: &str,
        days: u32,
        now: Timestamp,
    ) -> Result<Option<Organization>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "UPDATE organizations SET retention_period_in_days = $2, updated_at = $3
                     WHERE id = $1 AND deleted_at IS NULL RETURNING {ORGANIZATION_COLUMNS}"
                ),
                &[&id, &(days as i32), &now.unix_millis()],
            )
            .await?;
        row.map(|row| organization_from_row(&row)).transpose()
    }
}

#[async_trait]
impl Schemas for PostgresStore {
    async fn latest_schema(&self, action: &str) -> Result<Option<ActionSchema>, StoreError> {
        self.client()
            .await?
            .query_opt(
                "SELECT action, version, definition, created_at FROM action_schemas WHERE action = $1
                 ORDER BY version DESC LIMIT 1",
                &[&action],
            )
            .await?
            .map(|row| schema_from_row(&row))
            .transpose()
    }

    async fn get_schema(
        &self,
        action: &str,
        version: u32,
    ) -> Result<Option<ActionSchema>, StoreError> {
        let Ok(version) = i32::try_from(version) else {
            return Ok(None);
        };
        self.client()
            .await?
            .query_opt(
                "SELECT action, version, definition, created_at FROM action_schemas WHERE action = $1 AND version = $2",
                &[&action, &version],
            )
            .await?
            .map(|row| schema_from_row(&row))
            .transpose()
    }

    async fn insert_schema(&self, schema: ActionSchema) -> Result<(), StoreError> {
        let version = i32::try_from(schema.version).map_err(|_| {
            StoreError::Corrupt(format!("schema version {} is too large", schema.version))
        })?;
        let inserted = self
            .client()
            .await?
            .execute(
                "INSERT INTO action_schemas (action, version, definition, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[
                    &schema.action.as_str(),
                    &version,
                    &schema.definition.to_json().to_string(),
                    &schema.created_at.unix_millis(),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict("version"));
        }
        Ok(())
    }

    async fn list_schemas(
        &self,
        action: &str,
        page: PageRequest,
    ) -> Result<Page<ActionSchema>, StoreError> {
        let window = Window::new(&page);
        let cursor = window
            .cursor
            .as_ref()
            .map(|cursor| {
                cursor.parse::<i32>().map_err(|_| {
                    StoreError::InvalidCursor(if page.before.is_some() {
                        "before"
                    } else {
                        "after"
                    })
                })
            })
            .transpose()?;
        let condition = if cursor.is_some() {
            format!("AND version {} $2", window.comparison)
        } else {
            "AND $2::INTEGER IS NULL".to_owned()
        };
        let sql = format!(
            "SELECT action, version, definition, created_at FROM action_schemas WHERE action = $1 {condition}
             ORDER BY version {} LIMIT {}",
            window.direction,
            page.limit + 1
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&action, &cursor])
            .await?;
        let schemas = rows
            .iter()
            .map(schema_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(window.page(schemas, page.limit))
    }

    async fn list_actions(&self, page: PageRequest) -> Result<Page<ActionSummary>, StoreError> {
        let window = Window::new(&page);
        let condition = if window.cursor.is_some() {
            format!("WHERE s.action {} $1", window.comparison)
        } else {
            "WHERE $1::TEXT IS NULL".to_owned()
        };
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
        let rows = self.client().await?.query(&sql, &[&window.cursor]).await?;
        let summaries = rows
            .iter()
            .map(|row| {
                let latest = schema_from_row(row)?;
                Ok(ActionSummary {
                    created_at: Timestamp::from_unix_millis(row.get(4)),
                    updated_at: latest.created_at,
                    latest,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(window.page(summaries, page.limit))
    }
}

#[async_trait]
impl EventLog for PostgresStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        match &self.cluster {
            Some(cluster) => cluster.append(&self.appender, request).await,
            None => self.appender.append(request).await,
        }
    }

    async fn search_events(
        &self,
        organization_id: &str,
        request: SearchRequest,
    ) -> Result<SearchPage, StoreError> {
        let client = self.client().await?;
        search::search(
            &client,
            &self.search_cache,
            organization_id,
            &request,
            EventColumns::decode,
        )
        .await
    }

    async fn search_raw_events(
        &self,
        organization_id: &str,
        request: SearchRequest,
    ) -> Result<SearchPage<RawEvent>, StoreError> {
        let client = self.client().await?;
        search::search(
            &client,
            &self.search_cache,
            organization_id,
            &request,
            EventColumns::raw,
        )
        .await
    }

    async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.id = $1"),
                &[&id],
            )
            .await?;
        row.map(|row| event_from_row(&row)).transpose()
    }

    async fn log_size(&self, organization_id: &str) -> Result<u64, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT size FROM log_heads WHERE organization_id = $1",
                &[&organization_id],
            )
            .await?;
        Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
    }

    async fn log_sizes(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT organization_id, size FROM log_heads WHERE size > 0 ORDER BY organization_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), row.get::<_, i64>(1) as u64))
            .collect())
    }

    async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(self
            .client()
            .await?
            .execute(
                "DELETE FROM idempotency WHERE expires_at <= $1",
                &[&now.unix_millis()],
            )
            .await?)
    }
}

#[async_trait]
impl LedgerStore for PostgresStore {
    async fn tree_root(&self, organization_id: &str, size: u64) -> Result<Hash, StoreError> {
        let client = self.client().await?;
        with_nodes(&client, organization_id, |nodes| tree_hash(size, nodes)).await
    }

    async fn inclusion_proofs(
        &self,
        organization_id: &str,
        indexes: Vec<u64>,
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, StoreError> {
        let client = self.client().await?;
        with_nodes(&client, organization_id, |nodes| {
            indexes
                .iter()
                .map(|&index| inclusion_proof(index, size, nodes))
                .collect()
        })
        .await
    }

    async fn consistency_proof(
        &self,
        organization_id: &str,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let client = self.client().await?;
        with_nodes(&client, organization_id, |nodes| {
            consistency_proof(first, second, nodes)
        })
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
        let client = self.client().await?;
        let log_size = self.log_size(organization_id).await?;
        if size > log_size {
            return Err(StoreError::Ledger(LedgerError::OutOfRange(format!(
                "the log has only {log_size} leaves, not {size}"
            ))));
        }
        with_nodes(&client, organization_id, |nodes| {
            crate::rules::subtree_hashes(nodes, size, level, start, count)
        })
        .await
    }

    async fn add_cosignatures(
        &self,
        organization_id: &str,
        tree_size: u64,
        note: String,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE checkpoints SET note = $1 WHERE organization_id = $2 AND tree_size = $3",
                &[&note, &organization_id, &(tree_size as i64)],
            )
            .await?;
        Ok(())
    }

    async fn insert_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<(), StoreError> {
        // Every instance signs; a second signature of the same size (identical: Ed25519 is
        // deterministic) is ignored.
        self.client()
            .await?
            .execute(
                "INSERT INTO checkpoints (organization_id, tree_size, root, note, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
                &[
                    &checkpoint.organization_id,
                    &(checkpoint.tree_size as i64),
                    &checkpoint.root.as_slice(),
                    &checkpoint.note,
                    &checkpoint.created_at.unix_millis(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn latest_checkpoint(
        &self,
        organization_id: &str,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT organization_id, tree_size, root, note, created_at FROM checkpoints
                 WHERE organization_id = $1 ORDER BY tree_size DESC LIMIT 1",
                &[&organization_id],
            )
            .await?;
        row.map(|row| {
            let organization_id: String = row.get(0);
            let tree_size: i64 = row.get(1);
            Ok(StoredCheckpoint {
                root: hash(row.get(2), || {
                    format!("checkpoint {organization_id}@{tree_size}: root")
                })?,
                note: row.get(3),
                created_at: Timestamp::from_unix_millis(row.get(4)),
                tree_size: tree_size as u64,
                organization_id,
            })
        })
        .transpose()
    }

    async fn logs_needing_checkpoint(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT h.organization_id, h.size FROM log_heads h
                 WHERE h.size > COALESCE((SELECT MAX(tree_size) FROM checkpoints k WHERE k.organization_id = h.organization_id), 0)",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), row.get::<_, i64>(1) as u64))
            .collect())
    }
}

#[async_trait]
impl Retention for PostgresStore {
    async fn purgeable_organizations(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT o.id, o.retention_period_in_days FROM organizations o
                 WHERE o.retention_period_in_days IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.organization_id = o.id)",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), row.get::<_, i32>(1) as u32))
            .collect())
    }

    async fn purge_events(
        &self,
        organization_id: &str,
        received_before: Timestamp,
        limit: usize,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        if held_locked(&transaction, organization_id).await? {
            return Ok(0);
        }
        let expired: Vec<i64> = transaction
            .query(
                "SELECT sequence FROM events
                 WHERE organization_id = $1 AND received_at < $2 AND purged_at IS NULL
                 ORDER BY sequence LIMIT $3",
                &[
                    &organization_id,
                    &received_before.unix_millis(),
                    &(limit as i64),
                ],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        // Before the events change: no block is being built from them meanwhile.
        search_blocks::lock(&transaction, organization_id).await?;
        transaction
            .execute(
                "UPDATE events SET body = '{}', purged_at = $3
                 WHERE organization_id = $1 AND sequence = ANY($2)",
                &[&organization_id, &expired, &now.unix_millis()],
            )
            .await?;
        search_blocks::rebuild_blocks(&transaction, organization_id, &expired).await?;
        transaction.commit().await?;
        Ok(expired.len() as u64)
    }

    async fn erase_events(
        &self,
        organization_id: &str,
        rewrites: Vec<Rewrite>,
        force: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut purged = Vec::new();
        let (mut sequences, mut bodies) = (Vec::new(), Vec::new());
        for rewrite in &rewrites {
            match &rewrite.body {
                None => purged.push(rewrite.sequence as i64),
                Some(body) => {
                    sequences.push(rewrite.sequence as i64);
                    bodies.push(body.to_string());
                }
            }
        }
        let all: Vec<i64> = rewrites.iter().map(|r| r.sequence as i64).collect();
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        if held_locked(&transaction, organization_id).await? && !force {
            return Ok(false);
        }
        // Before the events change: no block is being built from them meanwhile.
        search_blocks::lock(&transaction, organization_id).await?;
        // `(purged_at + 0) IS NULL`, not `purged_at IS NULL`, in both updates: the latter is the
        // retention index's predicate, and before the table has statistics the planner reads
        // the organization's every row through that partial index rather than the few the
        // primary key finds (EXPLAIN ANALYZE on 300,000 unanalyzed rows: 191 ms against 0.3).
        transaction
            .execute(
                "UPDATE events SET body = '{}', purged_at = $3
                 WHERE organization_id = $1 AND sequence = ANY($2) AND (purged_at + 0) IS NULL",
                &[&organization_id, &purged, &now.unix_millis()],
            )
            .await?;
        transaction
            .execute(
                "UPDATE events e SET body = u.body
                 FROM UNNEST($2::BIGINT[], $3::TEXT[]) AS u(sequence, body)
                 WHERE e.organization_id = $1 AND e.sequence = u.sequence
                   AND (e.purged_at + 0) IS NULL",
                &[&organization_id, &sequences, &bodies],
            )
            .await?;
        // The erased values' terms and trigrams leave the blocks with them.
        search_blocks::rebuild_blocks(&transaction, organization_id, &all).await?;
        transaction.commit().await?;
        Ok(true)
    }

    async fn legal_hold(&self, organization_id: &str) -> Result<Option<LegalHold>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT reason, set_at FROM legal_holds WHERE organization_id = $1",
                &[&organization_id],
            )
            .await?;
        Ok(row.map(|row| LegalHold {
            organization_id: organization_id.to_owned(),
            reason: row.get(0),
            set_at: Timestamp::from_unix_millis(row.get(1)),
        }))
    }

    async fn set_legal_hold(
        &self,
        organization_id: &str,
        reason: Option<String>,
        record: PendingEvent,
        now: Timestamp,
    ) -> Result<Receipt, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let heads = appender::lock_heads(&transaction, &[organization_id.to_owned()]).await?;
        match &reason {
            Some(reason) => {
                transaction
                    .execute(
                        "INSERT INTO legal_holds (organization_id, reason, set_at) VALUES ($1, $2, $3)
                         ON CONFLICT (organization_id) DO UPDATE SET reason = excluded.reason, set_at = excluded.set_at",
                        &[&organization_id, reason, &now.unix_millis()],
                    )
                    .await?
            }
            None => {
                transaction
                    .execute(
                        "DELETE FROM legal_holds WHERE organization_id = $1",
                        &[&organization_id],
                    )
                    .await?
            }
        };
        let request = AppendRequest {
            organization_id: organization_id.to_owned(),
            events: vec![record],
            idempotency: None,
        };
        let (mut outcomes, writes) = appender::append_locked(
            &*transaction,
            heads,
            vec![rules::PreparedAppend::new(request)?],
        )
        .await?;
        let receipt = match outcomes.pop() {
            Some(Ok(AppendOutcome::Appended { mut receipts, .. })) if receipts.len() == 1 => {
                receipts.remove(0)
            }
            Some(Err(error)) => return Err(error),
            _ => {
                return Err(StoreError::Corrupt(
                    "recording the legal hold appended no event".into(),
                ));
            }
        };
        let statements = appender::WriteStatements::prepare(&transaction).await?;
        writes.write(&transaction, &statements).await?;
        transaction.commit().await?;
        Ok(receipt)
    }
}

#[async_trait]
impl StreamStore for PostgresStore {
    async fn insert_stream(&self, stream: StreamRecord) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO streams (id, organization_id, type, name, config, secrets, enabled, state, cursor,
                    last_synced_at, last_error, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &[
                    &stream.id,
                    &crate::rows::stream_organization(stream.organization_id.as_deref()),
                    &stream.kind,
                    &stream.name,
                    &stream.config.to_string(),
                    &stream.secrets,
                    &stream.enabled,
                    &stream.state.as_str(),
                    &stream.cursor.map(|c| c as i64),
                    &stream.last_synced_at.map(Timestamp::unix_millis),
                    &stream.last_error,
                    &stream.created_at.unix_millis(),
                    &stream.updated_at.unix_millis(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn get_stream(&self, id: &str) -> Result<Option<StreamRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {STREAM_COLUMNS} FROM streams WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.map(|row| stream_from_row(&row)).transpose()
    }

    async fn list_streams(
        &self,
        organization_id: Option<&str>,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        self.client()
            .await?
            .query(
                &format!(
                    "SELECT {STREAM_COLUMNS} FROM streams WHERE $1::TEXT IS NULL OR organization_id = $1 ORDER BY id"
                ),
                &[&organization_id],
            )
            .await?
            .iter()
            .map(stream_from_row)
            .collect()
    }

    async fn update_stream(&self, stream: StreamRecord) -> Result<bool, StoreError> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE streams SET name = $2, config = $3, secrets = $4, enabled = $5, state = $6, last_error = $7,
                    updated_at = $8, failing_since = CASE WHEN $5 THEN failing_since END WHERE id = $1",
                &[
                    &stream.id,
                    &stream.name,
                    &stream.config.to_string(),
                    &stream.secrets,
                    &stream.enabled,
                    &stream.state.as_str(),
                    &stream.last_error,
                    &stream.updated_at.unix_millis(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn delete_stream(&self, id: &str) -> Result<bool, StoreError> {
        let changed = self
            .client()
            .await?
            .query_one(
                "WITH cursors AS (DELETE FROM stream_cursors WHERE stream_id = $1),
                      gone AS (DELETE FROM streams WHERE id = $1 RETURNING 1)
                 SELECT count(*) FROM gone",
                &[&id],
            )
            .await?
            .get::<_, i64>(0);
        Ok(changed == 1)
    }

    async fn lease_stream(
        &self,
        id: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // One statement checks and takes the lease: under READ COMMITTED, a concurrent taker
        // waits on the row and re-evaluates the condition against the winner's lease.
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE streams SET lease_holder = $2, lease_until = $3
                 WHERE id = $1 AND (lease_holder IS NULL OR lease_holder = $2 OR lease_until < $4)",
                &[&id, &holder, &until.unix_millis(), &now.unix_millis()],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn record_delivery(
        &self,
        id: &str,
        holder: &str,
        from: Option<u64>,
        to: u64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE streams SET cursor = $4, state = CASE WHEN enabled THEN $6 ELSE $7 END,
                    last_synced_at = $5, last_error = NULL, failing_since = NULL
                 WHERE id = $1 AND lease_holder = $2 AND cursor IS NOT DISTINCT FROM $3",
                &[
                    &id,
                    &holder,
                    &from.map(|c| c as i64),
                    &(to as i64),
                    &now.unix_millis(),
                    &rules::stream_state_after_delivery(true).as_str(),
                    &rules::stream_state_after_delivery(false).as_str(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn record_stream_failure(
        &self,
        id: &str,
        state: StreamState,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE streams SET state = $2, last_error = $3, updated_at = $4,
                    failing_since = COALESCE(failing_since, $4) WHERE id = $1 AND enabled",
                &[&id, &state.as_str(), &error, &now.unix_millis()],
            )
            .await?;
        Ok(())
    }

    async fn set_stream_cursor(
        &self,
        id: &str,
        cursor: Option<u64>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE streams SET cursor = $2, updated_at = $3 WHERE id = $1",
                &[&id, &cursor.map(|c| c as i64), &now.unix_millis()],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn organization_cursors(&self, id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT organization_id, cursor FROM stream_cursors WHERE stream_id = $1
                 ORDER BY organization_id",
                &[&id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64))
            .collect())
    }

    async fn set_organization_cursor(
        &self,
        id: &str,
        organization_id: &str,
        cursor: Option<u64>,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        match cursor {
            Some(cursor) => {
                client
                    .execute(
                        "INSERT INTO stream_cursors (stream_id, organization_id, cursor)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (stream_id, organization_id) DO UPDATE SET cursor = EXCLUDED.cursor",
                        &[&id, &organization_id, &(cursor as i64)],
                    )
                    .await?
            }
            None => {
                client
                    .execute(
                        "DELETE FROM stream_cursors WHERE stream_id = $1 AND organization_id = $2",
                        &[&id, &organization_id],
                    )
                    .await?
            }
        };
        Ok(())
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
        // One statement: the stream's row is updated only while `holder` leases it and the
        // log's cursor is still `from`, and the cursor moves only if the row was.
        let changed = self
            .client()
            .await?
            .execute(
                "WITH held AS (
                    UPDATE streams SET state = CASE WHEN enabled THEN $6 ELSE $7 END,
                        last_synced_at = $5, last_error = NULL, failing_since = NULL
                    WHERE id = $1 AND lease_holder = $2
                      AND (SELECT cursor FROM stream_cursors
                           WHERE stream_id = $1 AND organization_id = $3) IS NOT DISTINCT FROM $4
                    RETURNING id
                 )
                 INSERT INTO stream_cursors (stream_id, organization_id, cursor)
                 SELECT id, $3, $8 FROM held
                 ON CONFLICT (stream_id, organization_id) DO UPDATE SET cursor = EXCLUDED.cursor",
                &[
                    &id,
                    &holder,
                    &organization_id,
                    &from.map(|c| c as i64),
                    &now.unix_millis(),
                    &rules::stream_state_after_delivery(true).as_str(),
                    &rules::stream_state_after_delivery(false).as_str(),
                    &(to as i64),
                ],
            )
            .await?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl ExportStore for PostgresStore {
    async fn insert_export(&self, export: ExportRecord) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO exports (id, organization_id, state, format, filter, row_count, error, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &export.id,
                    &export.organization_id,
                    &export.state.as_str(),
                    &export.format.as_str(),
                    &filter_to_json(&export.filter),
                    &export.row_count.map(|n| n as i64),
                    &export.error,
                    &export.created_at.unix_millis(),
                    &export.updated_at.unix_millis(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn get_export(&self, id: &str) -> Result<Option<ExportRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {EXPORT_COLUMNS} FROM exports WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.map(|row| export_from_row(&row)).transpose()
    }

    async fn exports_in_state(&self, state: ExportState) -> Result<Vec<ExportRecord>, StoreError> {
        self.client()
            .await?
            .query(
                &format!("SELECT {EXPORT_COLUMNS} FROM exports WHERE state = $1 ORDER BY id"),
                &[&state.as_str()],
            )
            .await?
            .iter()
            .map(export_from_row)
            .collect()
    }

    async fn finish_export(
        &self,
        id: &str,
        outcome: Result<u64, String>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (state, rows, error) = match outcome {
            Ok(rows) => (ExportState::Ready, Some(rows as i64), None),
            Err(reason) => (ExportState::Error, None, Some(reason)),
        };
        self.client()
            .await?
            .execute(
                "UPDATE exports SET state = $2, row_count = $3, error = $4, updated_at = $5 WHERE id = $1 AND state = 'pending'",
                &[&id, &state.as_str(), &rows, &error, &now.unix_millis()],
            )
            .await?;
        Ok(())
    }

    async fn revise_export(
        &self,
        id: &str,
        outcome: Result<u64, String>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (state, rows, error) = match outcome {
            Ok(rows) => (ExportState::Ready, Some(rows as i64), None),
            Err(reason) => (ExportState::Error, None, Some(reason)),
        };
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE exports SET state = $2, row_count = $3, error = $4, updated_at = $5 WHERE id = $1 AND state = 'ready'",
                &[&id, &state.as_str(), &rows, &error, &now.unix_millis()],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn claim_export(
        &self,
        id: &str,
        runner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE exports SET runner = $2, run_until = $3
                 WHERE id = $1 AND state = 'pending' AND (runner IS NULL OR runner = $2 OR run_until < $4)",
                &[&id, &runner, &until.unix_millis(), &now.unix_millis()],
            )
            .await?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl PortalStore for PostgresStore {
    async fn insert_portal_link(&self, link: PortalLink) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO portal_links (token_hash, organization_id, intent, email, return_url, created_at, expires_at, success_url)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &link.token_hash.as_slice(),
                    &link.organization_id,
                    &link.intent.as_str(),
                    &link.email,
                    &link.return_url,
                    &link.created_at.unix_millis(),
                    &link.expires_at.unix_millis(),
                    &link.success_url,
                ],
            )
            .await?;
        Ok(())
    }

    async fn redeem_portal_link(
        &self,
        token_hash: [u8; 32],
        now: Timestamp,
        session: NewPortalSession,
    ) -> Result<PortalRedemption, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // One statement marks the link used only if it is unused and current: of two racing
        // requests (on any instances), one gets the row.
        let opened = transaction
            .query_opt(
                "UPDATE portal_links SET used_at = $2
                 WHERE token_hash = $1 AND used_at IS NULL AND expires_at >= $2
                 RETURNING organization_id, intent, email, return_url, success_url",
                &[&token_hash.as_slice(), &now.unix_millis()],
            )
            .await?;
        let Some(link) = opened else {
            let found = transaction
                .query_opt(
                    "SELECT used_at FROM portal_links WHERE token_hash = $1",
                    &[&token_hash.as_slice()],
                )
                .await?;
            return Ok(match found {
                None => PortalRedemption::Unknown,
                Some(row) if row.try_get::<_, Option<i64>>(0)?.is_some() => {
                    PortalRedemption::AlreadyUsed
                }
                Some(_) => PortalRedemption::Expired,
            });
        };
        let organization_id: String = link.try_get(0)?;
        let intent: String = link.try_get(1)?;
        let email: Option<String> = link.try_get(2)?;
        let return_url: Option<String> = link.try_get(3)?;
        let success_url: Option<String> = link.try_get(4)?;
        let intent = portal_intent(&intent)?;
        transaction
            .execute(
                "INSERT INTO portal_sessions (secret_hash, id, organization_id, intent, email, return_url, csrf_token, created_at, expires_at, success_url)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &session.secret_hash.as_slice(),
                    &session.id,
                    &organization_id,
                    &intent.as_str(),
                    &email,
                    &return_url,
                    &session.csrf_token,
                    &now.unix_millis(),
                    &session.expires_at.unix_millis(),
                    &success_url,
                ],
            )
            .await?;
        transaction.commit().await?;
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
    }

    async fn touch_portal_session(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
        renew_until: Timestamp,
    ) -> Result<Option<PortalSession>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "UPDATE portal_sessions SET expires_at = $3 WHERE secret_hash = $1 AND expires_at > $2
                 RETURNING id, organization_id, intent, email, return_url, csrf_token, success_url",
                &[&secret_hash.as_slice(), &now.unix_millis(), &renew_until.unix_millis()],
            )
            .await?;
        row.map(|row| {
            let intent: String = row.try_get(2)?;
            Ok(PortalSession {
                id: row.try_get(0)?,
                organization_id: row.try_get(1)?,
                intent: portal_intent(&intent)?,
                email: row.try_get(3)?,
                return_url: row.try_get(4)?,
                csrf_token: row.try_get(5)?,
                success_url: row.try_get(6)?,
                expires_at: renew_until,
            })
        })
        .transpose()
    }

    async fn portal_session_open(
        &self,
        secret_hash: [u8; 32],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM portal_sessions WHERE secret_hash = $1 AND expires_at > $2)",
                &[&secret_hash.as_slice(), &now.unix_millis()],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn purge_portal(&self, before: Timestamp) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let links = client
            .execute(
                "DELETE FROM portal_links WHERE expires_at < $1",
                &[&before.unix_millis()],
            )
            .await?;
        let sessions = client
            .execute(
                "DELETE FROM portal_sessions WHERE expires_at < $1",
                &[&before.unix_millis()],
            )
            .await?;
        Ok(links + sessions)
    }
}

fn portal_intent(text: &str) -> Result<PortalIntent, StoreError> {
    PortalIntent::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("a portal link has the intent '{text}'")))
}

/// Runs a Merkle computation over an organization's stored nodes with one query. The nodes an
/// RFC 6962 computation reads depend only on the leaf indexes and tree sizes, never on the
/// hashes, so a first pass over a reader that records requests (and answers with zeros) names
/// them all; they are fetched at once, and the second pass runs on them.
///
/// Only some levels are stored ([`stored_level`]): the leaves are the events' `leaf_hash`es,
/// and `merkle_nodes` holds every [`NODE_LEVEL_STEP`]-th level above them (databases written by
/// earlier versions of Trailmark hold every level, of which these are read). A node between is
/// hashed from the stored nodes below it, at most 2^(step-1) of them.
async fn with_nodes<T>(
    client: &tokio_postgres::Client,
    organization_id: &str,
    compute: impl Fn(&Pass<'_>) -> Result<T, LedgerError>,
) -> Result<T, StoreError> {
    let requests = std::cell::RefCell::default();
    compute(&Pass::Recording(&requests))?;
    let requested: Vec<(u32, u64)> = requests.into_inner();
    let wanted: std::collections::BTreeSet<(u32, u64)> = requested
        .iter()
        .flat_map(|&(level, index)| {
            let base = stored_level(level);
            let width = 1u64 << (level - base);
            (index * width..(index + 1) * width).map(move |below| (base, below))
        })
        .collect();
    let (leaves, above): (Vec<_>, Vec<_>) = wanted.iter().partition(|(level, _)| *level == 0);
    let leaves: Vec<i64> = leaves.iter().map(|(_, index)| *index as i64).collect();
    let levels: Vec<i32> = above.iter().map(|(level, _)| *level as i32).collect();
    let indexes: Vec<i64> = above.iter().map(|(_, index)| *index as i64).collect();
    let rows = client
        .query(
            "SELECT n.level, n.idx, n.hash FROM merkle_nodes n
             JOIN UNNEST($2::INTEGER[], $3::BIGINT[]) AS w(level, idx) ON n.level = w.level AND n.idx = w.idx
             WHERE n.organization_id = $1
             UNION ALL
             SELECT 0, e.sequence, e.leaf_hash FROM events e
             WHERE e.organization_id = $1 AND e.sequence = ANY($4)",
            &[&organization_id, &levels, &indexes, &leaves],
        )
        .await?;
    let mut nodes = MemoryNodes::default();
    for row in rows {
        let (level, index): (i32, i64) = (row.get(0), row.get(1));
        nodes.extend([trailmark_ledger::tree::Node {
            level: level as u32,
            index: index as u64,
            hash: hash(row.get(2), || format!("merkle node {level}/{index}"))?,
        }]);
    }
    let between: Vec<trailmark_ledger::tree::Node> = requested
        .iter()
        .filter(|(level, _)| stored_level(*level) != *level)
        .map(|&(level, index)| {
            Ok(trailmark_ledger::tree::Node {
                level,
                index,
                hash: hash_from_below(&nodes, stored_level(level), level, index)?,
            })
        })
        .collect::<Result<_, LedgerError>>()?;
    nodes.extend(between);
    Ok(compute(&Pass::Fetched(nodes))?)
}

/// PostgreSQL stores the Merkle nodes of every this-many-th level (and the leaves, as events):
/// about one node for every 16 events instead of one an event.
const NODE_LEVEL_STEP: u32 = 4;

/// The stored level a node of `level` is hashed from.
fn stored_level(level: u32) -> u32 {
    level - level % NODE_LEVEL_STEP
}

/// The node (`level`, `index`), hashed from the nodes of the stored level `base` below it.
fn hash_from_below(
    nodes: &MemoryNodes,
    base: u32,
    level: u32,
    index: u64,
) -> Result<Hash, LedgerError> {
    if level == base {
        return nodes.node(base, index);
    }
    Ok(trailmark_ledger::tree::node_hash(
        &hash_from_below(nodes, base, level - 1, 2 * index)?,
        &hash_from_below(nodes, base, level - 1, 2 * index + 1)?,
    ))
}

/// The two passes of [`with_nodes`]: recording the nodes asked for (answering zeros), then
/// answering from the fetched nodes.
enum Pass<'a> {
    Recording(&'a std::cell::RefCell<Vec<(u32, u64)>>),
    Fetched(MemoryNodes),
}

impl NodeReader for Pass<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, LedgerError> {
        match self {
            Pass::Recording(requests) => {
                requests.borrow_mut().push((level, index));
                Ok([0; 32])
            }
            Pass::Fetched(nodes) => nodes.node(level, index),
        }
    }
}

fn external_id_conflict(result: Result<u64, tokio_postgres::Error>) -> Result<u64, StoreError> {
    match result {
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            Err(StoreError::Conflict("external_id"))
        }
        other => Ok(other?),
    }
}

const ORGANIZATION_COLUMNS: &str = "id, name, external_id, domains, metadata, allow_profiles_outside_organization, \
     retention_period_in_days, created_at, updated_at";

fn organization_from_row(row: &Row) -> Result<Organization, StoreError> {
    OrganizationColumns {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        external_id: row.try_get(2)?,
        domains: row.try_get(3)?,
        metadata: row.try_get(4)?,
        allow_profiles_outside_organization: row.try_get(5)?,
        retention_period_in_days: row.try_get::<_, Option<i32>>(6)?.map(|d| d as u32),
        created_at: row.try_get(7)?,
        updated_at: row.try_get(8)?,
    }
    .decode()
}

/// Maps `action, version, definition, created_at`.
fn schema_from_row(row: &Row) -> Result<ActionSchema, StoreError> {
    crate::rows::schema(
        row.try_get(0)?,
        row.try_get::<_, i32>(1)? as u32,
        row.try_get(2)?,
        row.try_get(3)?,
    )
}

pub(crate) const EVENT_COLUMNS: &str =
    "e.id, e.organization_id, e.sequence, e.received_at, e.leaf_hash, e.body, e.purged_at";

pub(crate) fn event_from_row(row: &Row) -> Result<StoredEvent, StoreError> {
    event_columns(row)?.decode()
}

pub(crate) fn event_columns(row: &Row) -> Result<EventColumns, StoreError> {
    Ok(EventColumns {
        id: row.try_get(0)?,
        organization_id: row.try_get(1)?,
        sequence: row.try_get(2)?,
        received_at: row.try_get(3)?,
        leaf_hash: row.try_get(4)?,
        body: row.try_get(5)?,
        purged_at: row.try_get(6)?,
    })
}

const EXPORT_COLUMNS: &str =
    "id, organization_id, state, format, filter, row_count, error, created_at, updated_at";

fn export_from_row(row: &Row) -> Result<ExportRecord, StoreError> {
    ExportColumns {
        id: row.try_get(0)?,
        organization_id: row.try_get(1)?,
        state: row.try_get(2)?,
        format: row.try_get(3)?,
        filter: row.try_get(4)?,
        row_count: row.try_get(5)?,
        error: row.try_get(6)?,
        created_at: row.try_get(7)?,
        updated_at: row.try_get(8)?,
    }
    .decode()
}

const STREAM_COLUMNS: &str = "id, organization_id, type, name, config, secrets, enabled, state, cursor, \
     last_synced_at, last_error, created_at, updated_at";

fn stream_from_row(row: &Row) -> Result<StreamRecord, StoreError> {
    StreamColumns {
        id: row.try_get(0)?,
        organization_id: row.try_get(1)?,
        kind: row.try_get(2)?,
        name: row.try_get(3)?,
        config: row.try_get(4)?,
        secrets: row.try_get(5)?,
        enabled: row.try_get(6)?,
        state: row.try_get(7)?,
        cursor: row.try_get(8)?,
        last_synced_at: row.try_get(9)?,
        last_error: row.try_get(10)?,
        created_at: row.try_get(11)?,
        updated_at: row.try_get(12)?,
    }
    .decode()
}

/// Whether an organization is under a legal hold, having locked its log head: the lock orders
/// a purge or an erasure with legal-hold changes, which append to the log (and so take the same
/// lock), so a hold set meanwhile is seen, or waits for the change.
async fn held_locked(
    transaction: &tokio_postgres::Transaction<'_>,
    organization_id: &str,
) -> Result<bool, StoreError> {
    transaction
        .query(
            "SELECT size FROM log_heads WHERE organization_id = $1 FOR UPDATE",
            &[&organization_id],
        )
        .await?;
    Ok(transaction
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM legal_holds WHERE organization_id = $1)",
            &[&organization_id],
        )
        .await?
        .get(0))
}
