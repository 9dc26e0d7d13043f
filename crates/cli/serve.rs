//! `trailmark serve`: open the store, make sure a key exists, bind, and serve until SIGTERM or
//! Ctrl-C, then finish in-flight requests.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use trailmark_app::{AppConfig, Trailmark};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{ApiKeySecret, Scope};
use trailmark_domain::id::IdKind;
use trailmark_server::{AppState, ServerConfig};
use trailmark_store::{ApiKeyRecord, PostgresStore, SqliteStore, Store};
use trailmark_streams::worker::WorkerConfig;

use crate::args::{DatabaseUrl, ServeArgs, StorageArgs, entropy};
use crate::key_files::load_or_create;

/// Who opens the storage: the server (the one writer of an embedded log), or a command that
/// may run beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Serve,
    Beside,
}

/// Opens the storage `--database` names, applying any migrations it lacks.
pub async fn open_store(storage: &StorageArgs, access: Access) -> anyhow::Result<Arc<dyn Store>> {
    match storage.resolve()? {
        DatabaseUrl::Sqlite(path) => {
            let store = match access {
                Access::Serve => SqliteStore::open(&path),
                Access::Beside => SqliteStore::open_beside(&path),
            }
            .with_context(|| format!("cannot open the database at {}", path.display()))?;
            Ok(Arc::new(store))
        }
        DatabaseUrl::Postgres(url) => {
            let store = PostgresStore::connect(&url)
                .await
                .context("cannot open the PostgreSQL database given by --database")?;
            Ok(Arc::new(store))
        }
    }
}

/// `trailmark migrate`: opening a store applies its migrations, so instances started later (and
/// at once) find the schema ready.
pub async fn migrate(storage: &StorageArgs) -> anyhow::Result<()> {
    open_store(storage, Access::Serve).await?;
    println!("The database's schema is up to date.");
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&args.log).context("--log is not a valid filter")?)
        .with_writer(std::io::stderr)
        .init();

    let store = open_store(&args.storage, Access::Serve).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));

    let bootstrap = args.api_key.as_deref().map(ApiKeySecret::new);
    if bootstrap.is_none() && !store.has_api_keys().await? {
        let secret = ApiKeySecret::from_entropy(entropy()?);
        store
            .insert_api_key(ApiKeyRecord {
                id: IdKind::ApiKey.generate().into_string(),
                hash: secret.hash(),
                scope: Scope::Admin,
                organization_id: None,
                created_at: Timestamp::now(),
            })
            .await?;
        println!(
            "Created an admin API key. It is shown only this once; only its hash is stored:\n"
        );
        println!("    {}\n", secret.expose());
        println!("Try it:\n");
        println!(
            "    curl -s {public_url}/organizations -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -d '{{\"name\":\"Acme\"}}'\n",
            secret.expose()
        );
    }

    let secrets_key_path = args
        .secrets_key
        .clone()
        .unwrap_or_else(|| args.storage.data_dir.join("secrets.key"));
    let secrets_key = load_or_create(&secrets_key_path, args.secrets_key.is_none())?;
    let signing_key_path = args
        .signing_key
        .clone()
        .unwrap_or_else(|| args.storage.data_dir.join("ledger.key"));
    let signing_key = load_or_create(&signing_key_path, args.signing_key.is_none())?;
    let app_config = AppConfig {
        data_dir: args.storage.data_dir.clone(),
        secrets_key,
        ledger_name: args.ledger_name.clone(),
        signing_key,
        checkpoint_interval: Duration::from_millis(args.checkpoint_interval_ms.max(1)),
        retention_interval: Duration::from_secs(args.retention_interval_secs.max(1)),
        streams: WorkerConfig {
            allow_private: args.allow_private_destinations,
            lease: Duration::from_secs(args.stream_lease_secs.max(1)),
            ..WorkerConfig::default()
        },
        require_schemas: args.require_schemas,
        export_max_range_days: args.export_max_range_days,
        bootstrap_key_hash: bootstrap.map(|key| key.hash()),
    };
    let config = ServerConfig {
        public_url: public_url.clone(),
        secrets_key,
        export_link_ttl: Duration::from_secs(args.export_link_ttl_secs),
        max_body_bytes: args.max_body_bytes,
    };
    tracing::info!(?app_config, ?config, %address, "starting");
    let app =
        Trailmark::new(store, app_config).map_err(|e| anyhow::anyhow!("--ledger-name: {e}"))?;
    let state = AppState::new(app, config)
        .with_portal_link_ttl(Duration::from_secs(args.portal_link_ttl_secs));
    // Tests and scripts wait for this exact line to learn the port.
    println!("Trailmark listening on http://{address}");
    trailmark_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
