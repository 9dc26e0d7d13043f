//! `trailmark serve`: open the store, make sure a key exists, bind, and serve until SIGTERM or
//! Ctrl-C, then finish in-flight requests.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use trailmark_app::metrics::AppMetrics;
use trailmark_app::{AppConfig, Trailmark};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::{ApiKeySecret, Scope};
use trailmark_domain::id::IdKind;
use trailmark_server::{AppState, ConnectionLimits, RateLimits, ServerConfig};
use trailmark_store::{
    ApiKeyRecord, ClusterConfig, PostgresStore, SqliteStore, Store, StoreObserver,
};
use trailmark_streams::egress::{Egress, Proxy};
use trailmark_streams::worker::WorkerConfig;

use crate::args::{DatabaseUrl, LimitArgs, ServeArgs, StorageArgs, entropy};
use crate::key_files::load_or_create;

/// Who opens the storage: the server (the one writer of an embedded log, and the only command
/// that creates a database), `migrate` (a writer of an existing one), or a command that may run
/// beside the server. Only `serve` creates: every other command needs the database to exist, so
/// a mistyped `--data-dir` is an error naming it rather than a new, empty database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Serve,
    Migrate,
    Beside,
}

/// Opens the storage `--database` names, applying any migrations it lacks.
pub async fn open_store(storage: &StorageArgs, access: Access) -> anyhow::Result<Arc<dyn Store>> {
    open_observed_store(storage, access, None, None).await
}

/// [`open_store`], reporting commits and connection use to `observer` (the metrics), and with
/// `cluster` joining the other instances over a PostgreSQL database.
async fn open_observed_store(
    storage: &StorageArgs,
    access: Access,
    observer: Option<Arc<dyn StoreObserver>>,
    cluster: Option<ClusterConfig>,
) -> anyhow::Result<Arc<dyn Store>> {
    match storage.resolve()? {
        DatabaseUrl::Sqlite(_) if cluster.is_some() => {
            bail!(
                "--cluster-listen needs a PostgreSQL --database: an embedded database has one writer, so there is nothing to hand over"
            )
        }
        DatabaseUrl::Sqlite(path) => {
            if access != Access::Serve && !path.is_file() {
                bail!(
                    "there is no database at {}: `trailmark serve` creates it on first start (check --data-dir or --database)",
                    path.display()
                );
            }
            let store = match (access, observer) {
                (Access::Serve, Some(observer)) => SqliteStore::open_observed(&path, observer),
                (Access::Serve | Access::Migrate, _) => SqliteStore::open(&path),
                (Access::Beside, _) => SqliteStore::open_beside(&path),
            }
            .with_context(|| format!("cannot open the database at {}", path.display()))?;
            Ok(Arc::new(store))
        }
        DatabaseUrl::Postgres(url) => {
            let connected = match observer {
                Some(observer) => PostgresStore::connect_in_cluster(&url, observer, cluster).await,
                None => PostgresStore::connect(&url).await,
            };
            let store =
                connected.context("cannot open the PostgreSQL database given by --database")?;
            Ok(Arc::new(store))
        }
    }
}

/// `trailmark migrate`: opening a store applies its migrations, so instances started later (and
/// at once) find the schema ready.
pub async fn migrate(storage: &StorageArgs) -> anyhow::Result<()> {
    open_store(storage, Access::Migrate).await?;
    println!("The database's schema is up to date.");
    Ok(())
}

/// Creates the data directory for the owner only (0700, whatever the umask) if it does not
/// exist: it holds the keys, the database and every export.
fn create_data_dir(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(path)
        .with_context(|| format!("cannot create the data directory {}", path.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("cannot restrict the data directory {}", path.display()))?;
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (traces, flusher) = traces(args.otlp_endpoint.as_deref())?;
    crate::logging::init(args.log.as_deref(), args.log_format, traces)?;

    create_data_dir(&args.storage.data_dir)?;
    // Before the store: the instances' channel (`--cluster-listen`) is keyed from it.
    let secrets_key_path = args
        .secrets_key
        .clone()
        .unwrap_or_else(|| args.storage.data_dir.join("secrets.key"));
    let secrets_key = load_or_create(&secrets_key_path, args.secrets_key.is_none())?;
    let metrics = Arc::new(AppMetrics::default());
    let store = open_observed_store(
        &args.storage,
        Access::Serve,
        Some(Arc::clone(&metrics) as Arc<dyn StoreObserver>),
        args.cluster_listen.map(|listen| ClusterConfig {
            advertise: args.cluster_advertise.clone(),
            sequencers: usize::from(args.cluster_sequencers),
            ..ClusterConfig::new(listen, secrets_key)
        }),
    )
    .await?;
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
                name: "first admin key".into(),
                prefix: secret.prefix(),
                scope: Scope::Admin,
                organization_id: None,
                created_at: Timestamp::now(),
                expires_at: None,
                last_used_at: None,
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
            egress: Egress {
                proxy: args
                    .egress_proxy
                    .as_deref()
                    .map(Proxy::operator)
                    .transpose()
                    // The URL holds the proxy's password: the error names the flag, not the value.
                    .map_err(|error| anyhow::anyhow!("--egress-proxy: {error}"))?
                    .map(Arc::new),
                required: args.egress_proxy_required,
            },
            trusted: match &args.stream_ca_file {
                None => Vec::new(),
                Some(path) => {
                    let pem = std::fs::read_to_string(path).with_context(|| {
                        format!("--stream-ca-file: cannot read {}", path.display())
                    })?;
                    trailmark_streams::net::certificates(&pem).with_context(|| {
                        format!(
                            "--stream-ca-file: {} holds no PEM certificate, or one that cannot be read",
                            path.display()
                        )
                    })?
                }
            },
            lease: Duration::from_secs(args.stream_lease_secs.max(1)),
            checkpoint_every: Duration::from_secs(args.stream_checkpoint_interval_secs.max(1)),
            // The one place the AWS environment is read (the streams crate reads none).
            aws_default_chain: args.aws_default_credentials.then(|| {
                trailmark_streams::s3::DefaultChain::from_environment(|name| {
                    std::env::var(name).ok()
                })
            }),
            ..WorkerConfig::default()
        },
        require_schemas: args.require_schemas,
        export_max_range_days: args.export_max_range_days,
        export_max_pending: args.export_max_pending,
        export_max_disk_bytes: args.export_max_disk_bytes,
        export_file_ttl: Duration::from_secs(args.export_file_ttl_hours * 3600),
        bootstrap_key_hash: bootstrap.map(|key| key.hash()),
        witnesses: args
            .witnesses
            .iter()
            .map(|witness| parse_witness(witness))
            .collect::<anyhow::Result<_>>()?,
        alerts: alert_config(&args)?,
    };
    let config = ServerConfig {
        public_url: public_url.clone(),
        secrets_key,
        export_link_ttl: Duration::from_secs(args.export_link_ttl_secs),
        max_body_bytes: args.max_body_bytes,
        connections: connection_limits(&args.limits)?,
        rate_limits: RateLimits {
            per_address: args.limits.rate_limit_per_address,
            per_key: args.limits.rate_limit_per_key,
            trusted_proxies: args.limits.trusted_proxies.clone(),
        },
    };
    log_start(&args, &app_config, &config, address);
    let app = Trailmark::with_metrics(store, app_config, metrics)
        .map_err(|e| anyhow::anyhow!("--ledger-name: {e}"))?;
    let state = AppState::new(app, config)
        .with_portal_link_ttl(Duration::from_secs(args.portal_link_ttl_secs))
        .with_console_idle_timeout(Duration::from_secs(args.console_idle_timeout_secs));
    let state = match (
        &args.console_oidc_issuer,
        &args.console_oidc_client_id,
        &args.console_oidc_client_secret,
    ) {
        (Some(issuer), Some(client_id), Some(client_secret)) => {
            state.with_console_oidc(trailmark_app::oidc::OidcSettings {
                issuer: issuer.clone(),
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                redirect_uri: format!("{}/console/oidc/callback", public_url.trim_end_matches('/')),
            })
        }
        _ => state,
    };
    // Tests and scripts wait for this exact line to learn the port.
    println!("Trailmark listening on http://{address}");
    trailmark_server::serve(listener, state, shutdown_signal()).await?;
    #[cfg(feature = "otlp")]
    if let Some(flusher) = flusher {
        flusher.flush(Duration::from_secs(5)).await;
    }
    #[cfg(not(feature = "otlp"))]
    let _: Option<Flusher> = flusher;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(feature = "otlp")]
type Flusher = crate::otlp::Flusher;
#[cfg(not(feature = "otlp"))]
type Flusher = std::convert::Infallible;

/// The OTLP exporter `--otlp-endpoint` asks for: Trailmark's spans (targets `trailmark…`) at
/// info and above, whatever the log filter.
#[cfg(feature = "otlp")]
fn traces(endpoint: Option<&str>) -> anyhow::Result<(crate::logging::Traces, Option<Flusher>)> {
    use tracing_subscriber::Layer;
    let Some(endpoint) = endpoint else {
        return Ok((None, None));
    };
    let (layer, flusher) = crate::otlp::layer(endpoint)?;
    let spans = tracing_subscriber::filter::filter_fn(|metadata| {
        metadata.is_span()
            && metadata.target().starts_with("trailmark")
            && *metadata.level() <= tracing::Level::INFO
    });
    Ok((Some(layer.with_filter(spans).boxed()), Some(flusher)))
}

#[cfg(not(feature = "otlp"))]
fn traces(endpoint: Option<&str>) -> anyhow::Result<(crate::logging::Traces, Option<Flusher>)> {
    match endpoint {
        Some(_) => anyhow::bail!(
            "--otlp-endpoint needs a trailmark built with the `otlp` cargo feature (on by default)"
        ),
        None => Ok((None, None)),
    }
}

/// One readable line saying what started, where, and with which choices that matter; never a
/// key, and a database URL only without its password.
fn log_start(
    args: &ServeArgs,
    app: &AppConfig,
    config: &ServerConfig,
    address: std::net::SocketAddr,
) {
    let database = match args.storage.resolve() {
        Ok(DatabaseUrl::Sqlite(path)) => format!("sqlite://{}", path.display()),
        Ok(DatabaseUrl::Postgres(url)) => without_password(&url),
        Err(_) => "unknown".to_owned(),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %address,
        public_url = %config.public_url,
        database = %database,
        data_dir = %app.data_dir.display(),
        ledger_name = %app.ledger_name,
        require_schemas = app.require_schemas,
        private_destinations = if app.streams.allow_private { "allowed" } else { "refused" },
        egress_proxy = %app.streams.egress.proxy.as_deref().map_or_else(|| "none".to_owned(), Proxy::shown),
        "Trailmark {} serving on http://{address}, storage {database}",
        env!("CARGO_PKG_VERSION"),
    );
}

/// A PostgreSQL URL with any password (in the user part or as a `password=` parameter) masked.
fn without_password(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((user_info, host)) => {
                let user = user_info
                    .split_once(':')
                    .map_or(user_info, |(user, _)| user);
                let masked = if user_info.contains(':') { ":****" } else { "" };
                format!("{scheme}://{user}{masked}@{host}")
            }
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if query.is_empty() {
        return base;
    }
    let parameters: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=****"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", parameters.join("&"))
}

/// File descriptors kept for everything but client connections (the database and its files,
/// stream deliveries, export files, logs), at least.
const RESERVED_FILES: u64 = 64;
/// The default connection cap, however high the open-file limit.
const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;

/// The listener's limits from the flags. The connection cap stays below the open-file limit
/// (raised to its hard maximum first, where allowed), so accepting never starves the database
/// or a stream of a descriptor: by default three quarters of it, at most 10,000.
fn connection_limits(args: &LimitArgs) -> anyhow::Result<ConnectionLimits> {
    let files = raise_open_file_limit();
    let room = files.saturating_sub(RESERVED_FILES);
    let max_connections = match args.max_connections {
        Some(wanted) if wanted > room => anyhow::bail!(
            "--max-connections {wanted} does not fit the open-file limit of {files}: keep it at most {room}, \
             leaving {RESERVED_FILES} descriptors for the database, files and streams (or raise `ulimit -n`)"
        ),
        Some(wanted) => wanted,
        None => (files / 4 * 3).clamp(1, DEFAULT_MAX_CONNECTIONS),
    };
    Ok(ConnectionLimits {
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        header_timeout: Duration::from_secs(args.header_timeout_secs),
        body_timeout: Duration::from_secs(args.body_timeout_secs),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
    })
}

/// Raises the soft open-file limit to the hard one (as Go's runtime does) and returns the limit
/// in force; the soft limit as it was if it cannot be raised.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    // An unlimited hard limit is not a number of files the kernel takes as a soft limit.
    let target = limit.rlim_max.min(1 << 20);
    if target > limit.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = target;
        }
    }
    limit.rlim_cur
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

/// `--witness URL=KEY`: a witness's submission prefix and its cosignature verifier key.
/// Where alerts go: `--alert-webhook` must be an http(s) URL, and its secret a `whsec_…` one.
fn alert_config(
    args: &crate::args::ServeArgs,
) -> anyhow::Result<trailmark_app::alerts::AlertConfig> {
    if let Some(url) = &args.alert_webhook {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("--alert-webhook {url}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--alert-webhook {url}: the URL must start with http:// or https://");
        }
    }
    if let Some(secret) = &args.alert_webhook_secret
        && !trailmark_app::alerts::is_webhook_secret(secret)
    {
        bail!(
            "--alert-webhook-secret must be 'whsec_' followed by the base64 of at least 16 bytes (for example: echo whsec_$(head -c 24 /dev/urandom | base64))"
        );
    }
    Ok(trailmark_app::alerts::AlertConfig {
        webhook: args.alert_webhook.clone(),
        secret: args.alert_webhook_secret.clone(),
        after: Duration::from_secs(args.alert_after_secs),
        ..Default::default()
    })
}

fn parse_witness(text: &str) -> anyhow::Result<trailmark_app::WitnessConfig> {
    let (url, key) = text
        .split_once('=')
        .with_context(|| format!("--witness {text}: expected URL=VERIFIER_KEY"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--witness {text}: the URL must start with http:// or https://");
    }
    let key = trailmark_ledger::cosignature::CosignatureVerifier::parse(key)
        .map_err(|e| anyhow::anyhow!("--witness {text}: {e}"))?;
    Ok(trailmark_app::WitnessConfig {
        url: url.to_owned(),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn database_urls_lose_their_passwords() {
        assert_eq!(
            without_password("postgres://trailmark:s3cret@db:5432/audit?sslmode=require"),
            "postgres://trailmark:****@db:5432/audit?sslmode=require"
        );
        assert_eq!(
            without_password("postgresql://u@h/d?password=s3cret&sslmode=disable"),
            "postgresql://u@h/d?password=****&sslmode=disable"
        );
        assert_eq!(without_password("postgres://h/d"), "postgres://h/d");
    }
}
