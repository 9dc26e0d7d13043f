//! `TestApp`: a Trailmark server on a free loopback port over a fresh temporary data directory,
//! with one method per endpoint the tests use.

use std::sync::Arc;

use reqwest::{Client, Response};
use serde_json::{Value, json};
use tempfile::TempDir;
use trailmark_server::{AppState, ServerConfig};
use trailmark_store::SqliteStore;

pub const ADMIN_KEY: &str = "sk_test_admin_0123456789abcdef";

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub data_dir: TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

pub struct Options {
    pub require_schemas: bool,
    pub max_body_bytes: usize,
    pub export_max_range_days: Option<u32>,
    /// A data directory to reuse (to restart over the same data), instead of a fresh one.
    pub data_dir: Option<TempDir>,
    /// Let streams reach loopback receivers (the default in tests; one test turns it off).
    pub allow_private_destinations: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            require_schemas: false,
            max_body_bytes: 1024 * 1024,
            export_max_range_days: None,
            data_dir: None,
            allow_private_destinations: true,
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
        let store = SqliteStore::open(&data_dir.path().join("trailmark.db")).expect("open store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let config = ServerConfig {
            data_dir: data_dir.path().to_owned(),
            public_url: base.clone(),
            secrets_key: [42; 32],
            export_link_ttl: std::time::Duration::from_secs(600),
            export_max_range_days: options.export_max_range_days,
            ledger_name: "trailmark.test".into(),
            signing_key: [7; 32],
            checkpoint_interval: std::time::Duration::from_millis(100),
            retention_interval: std::time::Duration::from_millis(100),
            streams: trailmark_streams::worker::WorkerConfig {
                allow_private: options.allow_private_destinations,
                backoff_initial: std::time::Duration::from_millis(50),
                backoff_max: std::time::Duration::from_millis(400),
                invalid_retry: std::time::Duration::from_millis(300),
                idle_poll: std::time::Duration::from_millis(50),
                lease: std::time::Duration::from_secs(5),
            },
            require_schemas: options.require_schemas,
            max_body_bytes: options.max_body_bytes,
            bootstrap_key_hash: Some(
                trailmark_domain::api_key::ApiKeySecret::new(ADMIN_KEY).hash(),
            ),
        };
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let state = AppState::new(Arc::new(store), config).expect("valid config");
        tokio::spawn(trailmark_server::serve(listener, state, async {
            let _ = stop.await;
        }));
        TestApp {
            base,
            client: Client::new(),
            data_dir,
            shutdown: Some(shutdown),
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

    /// The organization's stored events, read straight from the database file.
    pub async fn stored_events(&self, organization_id: &str) -> Vec<trailmark_store::StoredEvent> {
        use trailmark_store::Store;
        let store =
            SqliteStore::open(&self.data_dir.path().join("trailmark.db")).expect("open store");
        store
            .events_after(organization_id, None, 100_000)
            .await
            .expect("read events")
    }
}

impl TestApp {
    /// Stops this server and starts another over the same data directory.
    pub async fn restart(mut self) -> TestApp {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let data_dir =
            std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("temp dir"));
        TestApp::spawn_with(Options {
            data_dir: Some(data_dir),
            ..Options::default()
        })
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
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
