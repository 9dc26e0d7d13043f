//! `TestApp`: a Trailmark server on a free loopback port over a fresh temporary data directory,
//! with one method per endpoint the tests use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{Client, Response};
use serde_json::{Value, json};
use tempfile::TempDir;
use trailmark_app::{AppConfig, Trailmark};
use trailmark_server::{AppState, ServerConfig};
use trailmark_store::{PostgresStore, SqliteStore, Store};

pub const ADMIN_KEY: &str = "sk_test_admin_0123456789abcdef";

pub struct TestApp {
    /// First, so the server is told to stop before the data directory and database go.
    server: InProcessServer,
    pub base: String,
    pub client: Client,
    /// The store the server runs on (an embedded log has one writer: tests share it).
    store: Arc<dyn Store>,
    pub data_dir: TempDir,
    pub database: TestDatabase,
    /// The clock console sessions are judged by: a test moves it to see one expire.
    pub clock: trailmark_server::Clock,
}

/// Stops the in-process server when dropped.
struct InProcessServer {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Where the PostgreSQL runs of the suite create their databases.
fn postgres_admin_url() -> String {
    std::env::var("TRAILMARK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether this run of the suite is the PostgreSQL one (`TRAILMARK_TEST_BACKEND=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("TRAILMARK_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// The database a test's servers run on: SQLite in the test's data directory, or, in the
/// PostgreSQL run, a database of its own, dropped with this value (`dropped_as`: its name; `None`
/// for a database the test does not own).
pub enum TestDatabase {
    Sqlite(PathBuf),
    Postgres {
        dropped_as: Option<String>,
        url: String,
    },
}

impl TestDatabase {
    /// A fresh database for a test whose data directory is `data_dir`.
    pub async fn create(data_dir: &Path) -> TestDatabase {
        if !on_postgres() {
            return TestDatabase::Sqlite(data_dir.join("trailmark.db"));
        }
        TestDatabase::create_postgres().await
    }

    /// A fresh PostgreSQL database, whichever backend this run tests.
    pub async fn create_postgres() -> TestDatabase {
        let admin = postgres_admin_url();
        let name = format!(
            "trailmark_test_{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (TRAILMARK_TEST_POSTGRES_URL): {e}"));
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("TRAILMARK_TEST_POSTGRES_URL needs a database name: {admin}"),
        };
        TestDatabase::Postgres {
            dropped_as: Some(name),
            url,
        }
    }

    /// The `--database` value that names it.
    pub fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite(path) => format!("sqlite://{}", path.display()),
            TestDatabase::Postgres { url, .. } => url.clone(),
        }
    }

    /// Whether events live in an embedded log (SQLite) rather than in tables (PostgreSQL).
    pub fn has_log(&self) -> bool {
        matches!(self, TestDatabase::Sqlite(_))
    }

    /// Edits the embedded log's files behind the server's back, as an attacker with access to
    /// the data directory would who also recomputes every checksum: read with a second reading
    /// of the format documented in `crates/store/src/log/format.rs`.
    pub fn tamper_log(&self, tampering: LogTampering) {
        let TestDatabase::Sqlite(path) = self else {
            panic!("only an embedded store has a log");
        };
        let dir = path.with_extension("log");
        let segment = std::fs::read_dir(&dir)
            .expect("the log directory")
            .map(|entry| entry.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .min()
            .expect("a segment");
        let bytes = std::fs::read(&segment).expect("read segment");
        let mut frames = log_format::frames(&bytes);
        match tampering {
            LogTampering::EditBody { sequence, from, to } => {
                let frame = frames
                    .iter_mut()
                    .find(|f| f.first_sequence == sequence)
                    .expect("the event's frame");
                let body = String::from_utf8(frame.events[0].body.clone()).expect("UTF-8");
                frame.events[0].body = body.replace(from, to).into_bytes();
            }
            LogTampering::Remove(sequence) => frames.retain(|f| f.first_sequence != sequence),
            LogTampering::Swap(a, b) => {
                let (i, j) = (
                    frames
                        .iter()
                        .position(|f| f.first_sequence == a)
                        .expect("a"),
                    frames
                        .iter()
                        .position(|f| f.first_sequence == b)
                        .expect("b"),
                );
                frames.swap(i, j);
                frames[i].first_sequence = a;
                frames[j].first_sequence = b;
            }
        }
        let rewritten: Vec<u8> = frames.iter().flat_map(log_format::Frame::encode).collect();
        std::fs::write(&segment, rewritten).expect("write segment");
    }

    /// Runs SQL on it behind the server's back, as an attacker with database access would.
    pub async fn tamper(&self, sql: &str) {
        match self {
            TestDatabase::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).expect("open");
                connection.execute_batch(sql).expect("tamper");
            }
            TestDatabase::Postgres { url, .. } => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                tokio::spawn(connection);
                client.batch_execute(sql).await.expect("tamper");
            }
        }
    }

    /// What an attacker reading the database would see: the SQLite file and its WAL, or every
    /// stream row's columns as PostgreSQL returns them (bytes unescaped).
    pub async fn stored_bytes(&self) -> Vec<u8> {
        match self {
            TestDatabase::Sqlite(path) => {
                let mut bytes = std::fs::read(path).unwrap_or_default();
                bytes.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
                bytes
            }
            TestDatabase::Postgres { url, .. } => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                tokio::spawn(connection);
                let rows = client
                    .query(
                        "SELECT concat_ws(' ', id, type, name, config, encode(secrets, 'escape'), last_error) FROM streams",
                        &[],
                    )
                    .await
                    .expect("read streams");
                rows.iter()
                    .flat_map(|row| row.get::<_, String>(0).into_bytes())
                    .collect()
            }
        }
    }

    /// An organization's stored events in log order, read straight from the database.
    pub async fn stored_events(&self, organization_id: &str) -> Vec<trailmark_store::StoredEvent> {
        self.reader()
            .await
            .events_after(organization_id, None, 1_000_000)
            .await
            .expect("read events")
    }

    /// Asserts that every acknowledged `(sequence, id)` is stored under that sequence and that
    /// the organization's log has no gaps; returns the log.
    pub async fn assert_log_holds(
        &self,
        organization_id: &str,
        acknowledged: &[(u64, String)],
    ) -> Vec<trailmark_store::StoredEvent> {
        let stored = self.stored_events(organization_id).await;
        let stored_ids: std::collections::HashMap<&str, u64> =
            stored.iter().map(|e| (e.id.as_str(), e.sequence)).collect();
        for (sequence, id) in acknowledged {
            assert_eq!(
                stored_ids.get(id.as_str()),
                Some(sequence),
                "acknowledged event {id} (sequence {sequence}) was lost"
            );
        }
        let sequences: Vec<u64> = stored.iter().map(|e| e.sequence).collect();
        assert_eq!(
            sequences,
            (0..stored.len() as u64).collect::<Vec<_>>(),
            "the log is gap-free"
        );
        stored
    }

    /// A store over it, as a second process would open it.
    /// A store for reading beside a server process that may be running on this database, as
    /// `trailmark verify` opens it.
    pub async fn reader(&self) -> Arc<dyn Store> {
        match self {
            TestDatabase::Sqlite(path) => {
                Arc::new(SqliteStore::open_beside(path).expect("open store"))
            }
            TestDatabase::Postgres { url, .. } => {
                Arc::new(PostgresStore::connect(url).await.expect("open store"))
            }
        }
    }

    /// The store a server opens (for an embedded log, its one writer).
    pub async fn store(&self) -> Arc<dyn Store> {
        match self {
            TestDatabase::Sqlite(path) => {
                // A server of this process over the same data directory may still be stopping
                // (a restart): its log's lock goes with it.
                for _ in 0..200 {
                    match SqliteStore::open(path) {
                        Ok(store) => return Arc::new(store),
                        Err(trailmark_store::StoreError::Locked(_)) => {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        Err(error) => panic!("open store: {error}"),
                    }
                }
                panic!("the previous server never released the log");
            }
            TestDatabase::Postgres { url, .. } => {
                Arc::new(PostgresStore::connect(url).await.expect("open store"))
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let TestDatabase::Postgres {
            dropped_as: Some(name),
            ..
        } = self
        else {
            return;
        };
        let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its own
        // runtime can.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&postgres_admin_url(), tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&statement).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {name}");
        }
    }
}

/// An edit of the embedded log's frames (see [`TestDatabase::tamper_log`]).
pub enum LogTampering {
    /// Replaces text in the body of the event at `sequence`.
    EditBody {
        sequence: u64,
        from: &'static str,
        to: &'static str,
    },
    /// Cuts the frame of the event at this sequence out of the log.
    Remove(u64),
    /// Swaps two events' frames, renumbering them so the sequences still run in order.
    Swap(u64, u64),
}

/// The log's frame format, read and written independently of the store's code (one frame per
/// single-event append).
mod log_format {
    pub struct Event {
        pub id: Vec<u8>,
        pub leaf: Vec<u8>,
        pub received_at: [u8; 8],
        pub body: Vec<u8>,
    }

    pub struct Frame {
        pub organization: Vec<u8>,
        pub first_sequence: u64,
        pub claim: Vec<u8>,
        pub events: Vec<Event>,
    }

    fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> &'a [u8] {
        let slice = &bytes[*at..*at + n];
        *at += n;
        slice
    }

    fn u32_at(bytes: &[u8], at: &mut usize) -> u32 {
        u32::from_le_bytes(take(bytes, at, 4).try_into().expect("4 bytes"))
    }

    pub fn frames(bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut at = 0;
        while at + 16 <= bytes.len() {
            assert_eq!(&bytes[at..at + 4], b"TML1", "a frame starts at {at}");
            let payload_len =
                u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("len")) as usize;
            let payload = &bytes[at + 16..at + 16 + payload_len];
            at += 16 + payload_len;
            let mut p = 0;
            let org_len =
                u16::from_le_bytes(take(payload, &mut p, 2).try_into().expect("u16")) as usize;
            let organization = take(payload, &mut p, org_len).to_vec();
            let first_sequence =
                u64::from_le_bytes(take(payload, &mut p, 8).try_into().expect("u64"));
            let count = u32_at(payload, &mut p);
            let claim_start = p;
            if take(payload, &mut p, 1)[0] == 1 {
                take(payload, &mut p, 40);
                let outcome_len = u32_at(payload, &mut p) as usize;
                take(payload, &mut p, outcome_len);
            }
            let claim = payload[claim_start..p].to_vec();
            let mut events = Vec::new();
            for _ in 0..count {
                let id_len = take(payload, &mut p, 1)[0] as usize;
                let id = take(payload, &mut p, id_len).to_vec();
                let leaf = take(payload, &mut p, 32).to_vec();
                let received_at = take(payload, &mut p, 8).try_into().expect("8 bytes");
                let body_len = u32_at(payload, &mut p) as usize;
                take(payload, &mut p, 4);
                let body = take(payload, &mut p, body_len).to_vec();
                events.push(Event {
                    id,
                    leaf,
                    received_at,
                    body,
                });
            }
            frames.push(Frame {
                organization,
                first_sequence,
                claim,
                events,
            });
        }
        frames
    }

    impl Frame {
        pub fn encode(&self) -> Vec<u8> {
            let mut payload = Vec::new();
            payload.extend_from_slice(&(self.organization.len() as u16).to_le_bytes());
            payload.extend_from_slice(&self.organization);
            payload.extend_from_slice(&self.first_sequence.to_le_bytes());
            payload.extend_from_slice(&(self.events.len() as u32).to_le_bytes());
            payload.extend_from_slice(&self.claim);
            for event in &self.events {
                payload.push(event.id.len() as u8);
                payload.extend_from_slice(&event.id);
                payload.extend_from_slice(&event.leaf);
                payload.extend_from_slice(&event.received_at);
                payload.extend_from_slice(&(event.body.len() as u32).to_le_bytes());
                payload.extend_from_slice(&crc32fast::hash(&event.body).to_le_bytes());
                payload.extend_from_slice(&event.body);
            }
            let mut frame = b"TML1".to_vec();
            frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            let header_crc = crc32fast::hash(&frame);
            frame.extend_from_slice(&header_crc.to_le_bytes());
            frame.extend_from_slice(&payload);
            frame
        }
    }
}

pub struct Options {
    pub require_schemas: bool,
    pub max_body_bytes: usize,
    pub export_max_range_days: Option<u32>,
    pub export_max_pending: u32,
    pub export_max_disk_bytes: u64,
    /// A data directory to reuse (to restart over the same data), instead of a fresh one.
    pub data_dir: Option<TempDir>,
    /// The database to reuse with it.
    pub database: Option<TestDatabase>,
    /// Let streams reach loopback receivers (the default in tests; one test turns it off).
    pub allow_private_destinations: bool,
    /// The egress proxy streams go through (`--egress-proxy`), and CA certificates they trust
    /// (`--stream-ca-file`).
    pub egress: trailmark_streams::egress::Egress,
    pub stream_trusted: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The listener's timeouts and connection cap.
    pub connections: trailmark_server::ConnectionLimits,
    /// Requests a minute per address and per key (the defaults: WorkOS's per address).
    pub rate_limits: trailmark_server::RateLimits,
    /// Witnesses asked to cosign each checkpoint.
    pub witnesses: Vec<trailmark_app::WitnessConfig>,
    /// How often streams deliver signed checkpoints: an hour unless a test watches for them, so
    /// other tests' receivers see events only.
    pub stream_checkpoint_every: std::time::Duration,
    /// How long an idle console session lasts (the server's default unless a test shortens it).
    pub console_idle_timeout: Option<std::time::Duration>,
    /// Where alerts go and after how long (none by default).
    pub alerts: trailmark_app::alerts::AlertConfig,
    /// The streams' clock (credentials' expiry, batch deadlines): the wall clock unless a test
    /// moves it.
    pub stream_clock: trailmark_streams::worker::Clock,
    /// The AWS credentials lent to `s3` streams (`--aws-default-credentials`).
    pub aws_default_chain: Option<trailmark_streams::s3::DefaultChain>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            require_schemas: false,
            max_body_bytes: 1024 * 1024,
            export_max_range_days: None,
            export_max_pending: 4,
            export_max_disk_bytes: 1 << 30,
            data_dir: None,
            database: None,
            allow_private_destinations: true,
            egress: Default::default(),
            stream_trusted: Vec::new(),
            connections: trailmark_server::ConnectionLimits::default(),
            rate_limits: trailmark_server::RateLimits::default(),
            witnesses: Vec::new(),
            stream_checkpoint_every: std::time::Duration::from_secs(3600),
            console_idle_timeout: None,
            alerts: Default::default(),
            stream_clock: Default::default(),
            aws_default_chain: None,
        }
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        let data_dir = options
            .data_dir
            .unwrap_or_else(|| tempfile::tempdir().expect("temp dir"));
        let database = match options.database {
            Some(database) => database,
            None => TestDatabase::create(data_dir.path()).await,
        };
        let store = database.store().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let app_config = AppConfig {
            data_dir: data_dir.path().to_owned(),
            secrets_key: [42; 32],
            ledger_name: "trailmark.test".into(),
            signing_key: [7; 32],
            checkpoint_interval: std::time::Duration::from_millis(100),
            retention_interval: std::time::Duration::from_millis(100),
            streams: trailmark_streams::worker::WorkerConfig {
                allow_private: options.allow_private_destinations,
                egress: options.egress,
                trusted: options.stream_trusted,
                backoff_initial: std::time::Duration::from_millis(50),
                backoff_max: std::time::Duration::from_millis(400),
                invalid_retry: std::time::Duration::from_millis(300),
                idle_poll: std::time::Duration::from_millis(50),
                lease: std::time::Duration::from_secs(5),
                checkpoint_every: options.stream_checkpoint_every,
                clock: options.stream_clock,
                aws_default_chain: options.aws_default_chain,
            },
            require_schemas: options.require_schemas,
            export_max_range_days: options.export_max_range_days,
            export_max_pending: options.export_max_pending,
            export_max_disk_bytes: options.export_max_disk_bytes,
            export_file_ttl: std::time::Duration::from_secs(24 * 3600),
            bootstrap_key_hash: Some(
                trailmark_domain::api_key::ApiKeySecret::new(ADMIN_KEY).hash(),
            ),
            witnesses: options.witnesses,
            alerts: options.alerts,
        };
        let config = ServerConfig {
            public_url: base.clone(),
            secrets_key: [42; 32],
            export_link_ttl: std::time::Duration::from_secs(600),
            max_body_bytes: options.max_body_bytes,
            connections: options.connections,
            rate_limits: options.rate_limits,
        };
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let app = Trailmark::new(Arc::clone(&store), app_config).expect("valid config");
        let clock = trailmark_server::Clock::default();
        let mut state = AppState::new(app, config).with_clock(clock.clone());
        if let Some(idle) = options.console_idle_timeout {
            state = state.with_console_idle_timeout(idle);
        }
        let served = tokio::spawn(trailmark_server::serve(listener, state, async {
            let _ = stop.await;
        }));
        TestApp {
            base,
            client: Client::new(),
            store,
            data_dir,
            database,
            clock,
            server: InProcessServer {
                shutdown: Some(shutdown),
                served: Some(served),
            },
        }
    }

    /// Tells the server to shut down (as SIGTERM does) and waits until `serve` returned.
    pub async fn shut_down(&mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.server.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.server.served.take() {
            Some(served) => served.await.expect("the server task"),
            None => Ok(()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(ADMIN_KEY)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_with_key(&self, path: &str, key: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("request")
    }

    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.client
            .put(self.url(path))
            .bearer_auth(ADMIN_KEY)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Creates an organization and returns its id.
    pub async fn create_organization(&self, name: &str) -> String {
        let response = self.post("/organizations", &json!({"name": name})).await;
        assert_eq!(response.status(), 201);
        body(response).await["id"].as_str().expect("id").to_owned()
    }

    /// Posts one event with an optional idempotency key.
    pub async fn create_event(
        &self,
        organization_id: &str,
        event: &Value,
        key: Option<&str>,
    ) -> Response {
        let mut request = self
            .client
            .post(self.url("/audit_logs/events"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"organization_id": organization_id, "event": event}));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request")
    }

    /// The store this server runs on, for reading and writing beside the API.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// The organization's stored events, read straight from the store.
    pub async fn stored_events(&self, organization_id: &str) -> Vec<trailmark_store::StoredEvent> {
        self.store
            .events_after(organization_id, None, 1_000_000)
            .await
            .expect("read events")
    }
}

impl TestApp {
    /// The server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics(&self.client, &self.base).await
    }

    /// Waits until the organization's latest signed checkpoint covers `size` events (the test
    /// servers sign every 100 ms), and returns it.
    pub async fn wait_for_checkpoint(&self, organization_id: &str, size: u64) -> Value {
        wait_for_checkpoint(&self.client, &self.base, organization_id, size).await
    }

    /// Stops this server and starts another over the same data directory.
    pub async fn restart(self) -> TestApp {
        self.restart_with(Options::default()).await
    }

    /// Stops this server and starts another over the same data directory with `options`.
    pub async fn restart_with(self, options: Options) -> TestApp {
        let TestApp {
            data_dir,
            database,
            server,
            store,
            ..
        } = self;
        drop(server);
        drop(store);
        TestApp::spawn_with(Options {
            data_dir: Some(data_dir),
            database: Some(database),
            ..options
        })
        .await
    }
}

/// A valid event in the shape the Node SDK sends.
pub fn event(action: &str) -> Value {
    json!({
        "action": action,
        "occurred_at": "2026-08-01T10:00:00.000Z",
        "actor": {"id": "user_1", "name": "Jon Smith", "type": "user"},
        "targets": [{"id": "team_1", "type": "team"}],
        "context": {"location": "192.0.2.8", "user_agent": "Firefox"},
        "metadata": {"successful": true}
    })
}

/// Asserts the response is JSON with a request id and returns its body.
pub async fn body(response: Response) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content-type was {content_type:?}"
    );
    assert!(
        response.headers().contains_key("x-request-id"),
        "no X-Request-ID"
    );
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The real `trailmark serve` binary on a free port, killed when dropped.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts the binary over `data_dir` and `database` with the test key, extra environment
    /// and streams allowed to reach loopback receivers; returns once it listens.
    pub fn start(data_dir: &Path, database: &TestDatabase, env: &[(&str, &str)]) -> ServerProcess {
        Self::start_from(
            std::process::Command::new(env!("CARGO_BIN_EXE_trailmark")),
            data_dir,
            database,
            env,
        )
    }

    /// As [`ServerProcess::start`], after a shell runs `setup` (`ulimit -n 256`, `umask 000`).
    pub fn start_after(
        setup: &str,
        data_dir: &Path,
        database: &TestDatabase,
        env: &[(&str, &str)],
    ) -> ServerProcess {
        Self::start_from(shell_then_trailmark(setup), data_dir, database, env)
    }

    fn start_from(
        mut command: std::process::Command,
        data_dir: &Path,
        database: &TestDatabase,
        env: &[(&str, &str)],
    ) -> ServerProcess {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--allow-private-destinations",
                "--data-dir",
            ])
            .arg(data_dir)
            .env("TRAILMARK_DATABASE_URL", database.url())
            .env("TRAILMARK_API_KEY", ADMIN_KEY)
            .env("TRAILMARK_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start trailmark");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server printed its address")
                .expect("read stdout");
            if let Some(address) = line.split("listening on ").nth(1) {
                break address.trim().to_owned();
            }
        };
        ServerProcess { child, base }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command that runs `setup` in a shell, then the `trailmark` binary with the arguments added
/// to it.
pub fn shell_then_trailmark(setup: &str) -> std::process::Command {
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!(r#"{setup} && exec "$0" "$@""#))
        .arg(env!("CARGO_BIN_EXE_trailmark"));
    command
}

/// POSTs `body` as the admin to the server at `base`.
pub async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> reqwest::Response {
    client
        .post(format!("{base}{path}"))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// GETs a JSON body as the admin from the server at `base`.
pub async fn get(client: &reqwest::Client, base: &str, path: &str) -> Value {
    client
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// Creates an organization on the server at `base`; returns its id.
pub async fn organization(client: &reqwest::Client, base: &str) -> String {
    let created: Value = post(client, base, "/organizations", json!({"name": "Acme"}))
        .await
        .json()
        .await
        .expect("json");
    created["id"].as_str().expect("id").to_owned()
}

/// Waits until the server at `base` has signed a checkpoint of `size` events for the
/// organization, and returns it.
/// The `/metrics` text of the server at `base`.
pub async fn metrics(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

pub async fn wait_for_checkpoint(
    client: &Client,
    base: &str,
    organization_id: &str,
    size: u64,
) -> Value {
    for _ in 0..200 {
        let response = client
            .get(format!(
                "{base}/audit_logs/ledger/checkpoint?organization_id={organization_id}"
            ))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("request");
        if response.status() == 200 {
            let checkpoint = body(response).await;
            if checkpoint["tree_size"] == size {
                return checkpoint;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no checkpoint of {size} events was signed");
}

/// A PostgreSQL cluster of the test's own (initdb into a temporary directory, on a free port),
/// so that it can be stopped, started and configured without disturbing anything else.
pub struct PrivateCluster {
    directory: TempDir,
    pub port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PrivateCluster {
    pub fn create() -> PrivateCluster {
        PrivateCluster::create_configured(|_| {})
    }

    /// A cluster whose data directory `configure` may write into (certificates, `pg_hba.conf`,
    /// `postgresql.conf` lines) before it first starts.
    pub fn create_configured(configure: impl FnOnce(&Path)) -> PrivateCluster {
        let directory = tempfile::tempdir().expect("dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let cluster = PrivateCluster { directory, port };
        cluster.hand_to_postgres();
        cluster.pg(&[
            "initdb",
            "-D",
            &cluster.data(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        configure(&cluster.directory.path().join("data"));
        cluster.hand_to_postgres();
        cluster.start();
        cluster
    }

    /// PostgreSQL refuses to run as root; the distribution's `postgres` user runs it and must
    /// own what the test wrote.
    fn hand_to_postgres(&self) {
        if running_as_root() {
            let chowned = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(self.directory.path())
                .status()
                .expect("chown");
            assert!(chowned.success());
        }
    }

    fn data(&self) -> String {
        self.directory.path().join("data").display().to_string()
    }

    fn pg(&self, args: &[&str]) -> String {
        let program = format!("{PG_BIN}/{}", args[0]);
        let mut command: Vec<&str> = vec![&program];
        command.extend(&args[1..]);
        as_postgres(&command)
    }

    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.directory.path().display()
        );
        let log = self.directory.path().join("log").display().to_string();
        self.pg(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-o",
            &options,
            "-l",
            &log,
            "-w",
            "start",
        ]);
    }

    pub fn stop(&self) {
        self.pg(&["pg_ctl", "-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// The superuser over TCP on 127.0.0.1.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` with psql as the superuser over the cluster's Unix socket (whatever
    /// `pg_hba.conf` says about TCP) and returns its unaligned output.
    pub fn sql(&self, sql: &str) -> String {
        let socket = self.directory.path().display().to_string();
        let port = self.port.to_string();
        self.pg(&[
            "psql", "-h", &socket, "-p", &port, "-U", "postgres", "-d", "postgres", "-tAc", sql,
        ])
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.pg(&["pg_ctl", "-D", &self.data(), "-m", "immediate", "stop"]);
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Runs a command as the `postgres` user when this process is root (as in CI), else as is;
/// returns its standard output.
fn as_postgres(command: &[&str]) -> String {
    let status = if running_as_root() {
        std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args(command)
            .output()
    } else {
        std::process::Command::new(command[0])
            .args(&command[1..])
            .output()
    };
    let output = status.unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success() || command.contains(&"immediate"),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The real `trailmark serve` binary with its standard error kept in a file, for tests that
/// read its logs: `args` and `env` are added to a loopback listen address, a fresh data
/// directory and the test key; inherited `TRAILMARK_*` and `RUST_LOG` variables are removed.
pub struct LoggedServer {
    pub process: ServerProcess,
    pub data_dir: TempDir,
    log: PathBuf,
}

impl LoggedServer {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> LoggedServer {
        use std::io::{BufRead, BufReader};
        let data_dir = tempfile::tempdir().expect("temp dir");
        let log = data_dir.path().join("stderr.log");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_trailmark"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TRAILMARK_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .args(args)
            .env("TRAILMARK_API_KEY", ADMIN_KEY)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start trailmark");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!(
                    "the server stopped before it listened: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            if let Some(address) = line.split("listening on ").nth(1) {
                break address.trim().to_owned();
            }
        };
        LoggedServer {
            process: ServerProcess { child, base },
            data_dir,
            log,
        }
    }

    pub fn base(&self) -> &str {
        &self.process.base
    }

    /// Everything the server wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).expect("read the log")
    }
}

/// The hashes of a proof as the ledger API answers it (`"proof": [base64, …]`).
pub fn proof_hashes(value: &Value) -> Vec<[u8; 32]> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| trailmark_ledger::decode_hash(h.as_str().unwrap_or_default()).expect("hash"))
        .collect()
}

impl TestApp {
    /// Asserts the server proves the tree of `second` leaves (root `second_root`) extends the one
    /// of `first` leaves (root `first_root`).
    pub async fn assert_consistent(
        &self,
        organization_id: &str,
        (first, first_root): (u64, &[u8; 32]),
        (second, second_root): (u64, &[u8; 32]),
    ) {
        let proof = body(
            self.get(&format!(
                "/audit_logs/ledger/consistency?organization_id={organization_id}&first={first}&second={second}"
            ))
            .await,
        )
        .await;
        assert!(
            trailmark_ledger::tree::verify_consistency(
                first,
                second,
                first_root,
                second_root,
                &proof_hashes(&proof["proof"])
            ),
            "{first} → {second}: {proof}"
        );
    }

    /// Asserts the server proves event `id` is in the tree of `size` leaves whose root is `root`.
    pub async fn assert_included(
        &self,
        organization_id: &str,
        id: &str,
        size: u64,
        root: &[u8; 32],
    ) {
        let proof = body(self.get(&format!("/audit_logs/ledger/inclusion?organization_id={organization_id}&event_id={id}&tree_size={size}")).await).await;
        let leaf = trailmark_ledger::decode_hash(proof["leaf_hash"].as_str().unwrap_or_default())
            .expect("hash");
        let index = proof["sequence"].as_u64().unwrap_or_default();
        assert!(
            trailmark_ledger::tree::verify_inclusion(
                index,
                size,
                &leaf,
                &proof_hashes(&proof["proof"]),
                root
            ),
            "{id} in {size}: {proof}"
        );
    }
}
