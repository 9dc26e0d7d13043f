//! Flags and environment variables (SPEC §3). Every flag has a `TRAILMARK_…` variable, and its
//! doc comment is its `--help` text. Raw values are resolved into typed configuration once, in
//! [`StorageArgs::resolve`] and `serve::run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "trailmark",
    version,
    propagate_version = true,
    about = "Self-hosted, WorkOS-compatible audit logs with a tamper-evident ledger"
)]
pub struct Cli {
    /// A TOML file of settings whose keys are the flags without their dashes
    /// (`listen = "0.0.0.0:8080"`, `data-dir = "/var/lib/trailmark"`); a flag or environment
    /// variable given as well wins over it.
    #[arg(long, global = true, env = "TRAILMARK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API.
    // Boxed: its flags outweigh every other subcommand's.
    Serve(Box<ServeArgs>),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the operators who sign in to the console at `/console`.
    #[command(subcommand)]
    Operators(OperatorsCommand),
    /// Write one organization's events to a CSV, NDJSON or OCSF file.
    Export(ExportArgs),
    /// The tamper-evident ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Check an NDJSON export, or a whole database, against signed checkpoints.
    Verify(VerifyArgs),
    /// Run a C2SP tlog-witness that cosigns the checkpoints of the logs you trust, only when
    /// they grow consistently.
    Witness(WitnessArgs),
    /// Bring the database's schema up to date and exit (`serve` also does this on start).
    Migrate(StorageArgs),
    /// Print a shell completion script: `source <(trailmark completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Print the verifier key that checks this instance's checkpoints.
    PublicKey(LedgerKeyArgs),
}

/// Where the ledger's signing key comes from; shared by `serve` and `ledger public-key`.
#[derive(Debug, Clone, Args)]
pub struct LedgerKeyArgs {
    /// File holding the 32-byte Ed25519 seed checkpoints are signed with.
    /// Default: `<data-dir>/ledger.key`, created with mode 0600 on first start.
    /// (Also read from `TRAILMARK_SIGNING_KEY_FILE`, its older name.)
    #[arg(long, env = "TRAILMARK_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// The ledger's name: the signing key's name and the first part of every checkpoint origin
    /// (`<name>/<organization id>`). Use a name you control, such as your domain; changing it
    /// changes the verifier key.
    #[arg(long, env = "TRAILMARK_LEDGER_NAME", default_value = "trailmark")]
    pub ledger_name: String,
    /// Directory for the embedded database and key files.
    #[arg(long, env = "TRAILMARK_DATA_DIR", default_value = "./trailmark-data")]
    pub data_dir: PathBuf,
}

impl LedgerKeyArgs {
    /// The signing key file's path.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join("ledger.key"))
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// An NDJSON export to verify (its last line is the manifest).
    pub export: Option<PathBuf>,
    /// The verifier key (`<name>+<id>+<key>`, from `GET /audit_logs/ledger/public_key` or
    /// `trailmark ledger public-key`), or a file holding it.
    #[arg(long, env = "TRAILMARK_PUBLIC_KEY")]
    pub public_key: Option<String>,
    /// Verify every organization's log in this database instead of an export
    /// (`sqlite://PATH`); with no value, the database of `--data-dir`.
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    pub database: Option<String>,
    /// Directory of the database (and of the signing key, when no --public-key is given).
    #[arg(long, env = "TRAILMARK_DATA_DIR", default_value = "./trailmark-data")]
    pub data_dir: PathBuf,
    /// The ledger's name, to derive the verifier key from the local signing key file.
    #[arg(long, env = "TRAILMARK_LEDGER_NAME", default_value = "trailmark")]
    pub ledger_name: String,
    /// A signed checkpoint you kept from before (the `checkpoint` note of
    /// `GET /audit_logs/ledger/checkpoint`, or that whole answer), repeatable: proves the log
    /// now extends each one, so a rewritten history fails naming the checkpoint it contradicts.
    #[arg(long = "checkpoint", value_name = "FILE")]
    pub checkpoints: Vec<PathBuf>,
    /// Check the --checkpoint files against this running server's current log (consistency
    /// proofs), or, with a filtered export, fetch the proofs the export cannot give itself.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// A witness's cosignature verifier key (`trailmark witness` prints it), repeatable: the
    /// checkpoint the log is checked against must carry --witnesses-required valid
    /// cosignatures from these witnesses (C2SP tlog-cosignature).
    #[arg(long = "witness-key", value_name = "KEY")]
    pub witness_keys: Vec<String>,
    /// How many of the --witness-key witnesses must have cosigned (default 1 when a witness key
    /// is given).
    #[arg(long, value_name = "N")]
    pub witnesses_required: Option<usize>,
    /// API key with read access, for `--server`.
    #[arg(long, env = "TRAILMARK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the result as one JSON object on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// Address to listen on (`HOST:PORT`; port 0 picks a free one).
    #[arg(
        long,
        env = "TRAILMARK_WITNESS_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    pub listen: SocketAddr,
    /// The witness's name, in every cosignature line: a name you control, such as
    /// `witness.example.com/w1`.
    #[arg(long, env = "TRAILMARK_WITNESS_NAME")]
    pub name: String,
    /// The verifier key of a log to witness (`GET /audit_logs/ledger/public_key`), repeatable:
    /// every origin `<key name>/…` signed by it is witnessed.
    #[arg(long = "log-key", value_name = "KEY", required = true)]
    pub log_keys: Vec<String>,
    /// Directory for the witness's key (`witness.key`) and state (`witness-state.json`).
    #[arg(
        long,
        env = "TRAILMARK_DATA_DIR",
        default_value = "./trailmark-witness"
    )]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it once. Works while the server runs.
    Create(KeyCreateArgs),
    /// List the keys: id, name, scope, organization, prefix, created, expires, last used (never
    /// the key or its hash).
    List(KeyListArgs),
    /// Revoke a key: every server over the database refuses it within 5 seconds.
    Revoke(KeyRevokeArgs),
}

#[derive(Debug, Subcommand)]
pub enum OperatorsCommand {
    /// Create a console operator; the password is read from standard input (its first line).
    /// Works while the server runs.
    Create(OperatorCreateArgs),
}

#[derive(Debug, Args)]
pub struct OperatorCreateArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The operator's e-mail, which they sign in with.
    #[arg(long)]
    pub email: String,
}

/// Where the data lives; shared by every subcommand so they all agree.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Directory for the embedded database and key files.
    #[arg(long, env = "TRAILMARK_DATA_DIR", default_value = "./trailmark-data")]
    pub data_dir: PathBuf,
    /// Storage URL: `sqlite://PATH` (default `sqlite://<data-dir>/trailmark.db`) or `postgres://…`.
    /// (Also read from `TRAILMARK_DATABASE_URL`, its older name.)
    #[arg(long, env = "TRAILMARK_DATABASE", value_name = "URL")]
    pub database: Option<String>,
}

/// The storage a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, as libpq takes it.
    Postgres(String),
}

impl StorageArgs {
    /// Resolves `--database`, defaulting to SQLite in the data directory.
    ///
    /// # Errors
    ///
    /// An unknown scheme, or `sqlite://` without a path.
    pub fn resolve(&self) -> anyhow::Result<DatabaseUrl> {
        match self.database.as_deref() {
            None => Ok(DatabaseUrl::Sqlite(self.data_dir.join("trailmark.db"))),
            Some(url) => {
                if let Some(path) = url
                    .strip_prefix("sqlite://")
                    .or_else(|| url.strip_prefix("sqlite:"))
                {
                    if path.is_empty() {
                        bail!(
                            "--database sqlite:// needs a file path, e.g. sqlite://./trailmark-data/trailmark.db"
                        );
                    }
                    Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
                } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    Ok(DatabaseUrl::Postgres(url.to_owned()))
                } else {
                    bail!("--database must start with sqlite:// or postgres://")
                }
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (`HOST:PORT`; port 0 picks a free one).
    #[arg(long, env = "TRAILMARK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// With a PostgreSQL `--database`: take appends from the other instances at this address
    /// (`HOST:PORT`), and hand them this instance's appends for the organizations they
    /// sequence, so that one organization's appends are committed by one instance rather than
    /// by several taking turns (default: off). Every instance over the database should have it.
    /// The connection is authenticated with a key derived from the secrets key (which the
    /// instances share already), not encrypted: use a private network.
    #[arg(long, env = "TRAILMARK_CLUSTER_LISTEN", value_name = "HOST:PORT")]
    pub cluster_listen: Option<SocketAddr>,
    /// The address the other instances reach `--cluster-listen` at (default: that address,
    /// which must then name one interface rather than `0.0.0.0`).
    #[arg(
        long,
        env = "TRAILMARK_CLUSTER_ADVERTISE",
        value_name = "HOST:PORT",
        requires = "cluster_listen"
    )]
    pub cluster_advertise: Option<String>,
    /// With `--cluster-listen`: how many of the instances sequence organizations, the others
    /// handing them their events. One keeps PostgreSQL's transactions fewest (measured best with
    /// one PostgreSQL); more spread the commits. Give every instance the same number.
    #[arg(long, env = "TRAILMARK_CLUSTER_SEQUENCERS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024), requires = "cluster_listen")]
    pub cluster_sequencers: u16,
    /// Base URL clients reach this server at, used in printed examples and links
    /// (default `http://<listen>`).
    #[arg(long, env = "TRAILMARK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Refuse events whose action has no schema.
    #[arg(long, env = "TRAILMARK_REQUIRE_SCHEMAS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub require_schemas: bool,
    /// Largest request body accepted, in bytes (batch ingest accepts 16 times this).
    #[arg(long, env = "TRAILMARK_MAX_BODY_BYTES", default_value_t = 1024 * 1024, value_parser = body_bytes)]
    pub max_body_bytes: usize,
    /// An API key (`sk_…`) valid with full rights, kept in memory only. Without it, the first
    /// start creates a key, prints it once and stores only its hash.
    #[arg(long, env = "TRAILMARK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// File holding the 32-byte secrets key (download-link signing; stream credentials).
    /// Default: `<data-dir>/secrets.key`, created with mode 0600 on first start.
    /// (Also read from `TRAILMARK_SECRETS_KEY_FILE`, its older name.)
    #[arg(long, env = "TRAILMARK_SECRETS_KEY", value_name = "FILE")]
    pub secrets_key: Option<PathBuf>,
    /// File holding the 32-byte Ed25519 seed checkpoints are signed with.
    /// Default: `<data-dir>/ledger.key`, created with mode 0600 on first start.
    /// (Also read from `TRAILMARK_SIGNING_KEY_FILE`, its older name.)
    #[arg(long, env = "TRAILMARK_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// The ledger's name: the signing key's name and the first part of every checkpoint origin.
    #[arg(long, env = "TRAILMARK_LEDGER_NAME", default_value = "trailmark")]
    pub ledger_name: String,
    /// Sign a checkpoint for each grown log at most this often, in milliseconds.
    #[arg(long, env = "TRAILMARK_CHECKPOINT_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub checkpoint_interval_ms: u64,
    /// How often the retention job looks for expired events, in seconds.
    #[arg(
        long,
        env = "TRAILMARK_RETENTION_INTERVAL_SECS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..=604_800)
    )]
    pub retention_interval_secs: u64,
    /// Let log streams deliver to loopback, private and link-local addresses (refused by default,
    /// so a stream cannot reach into the network Trailmark runs in).
    #[arg(long, env = "TRAILMARK_ALLOW_PRIVATE_DESTINATIONS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_private_destinations: bool,
    /// Send every log stream's traffic (deliveries, token requests, syslog connections) through
    /// this HTTP CONNECT proxy, `http://[user:password@]host:port` (user and password
    /// percent-encoded; Basic authentication), so it leaves from the proxy's addresses, which
    /// customers can allowlist. A stream may name its own proxy, or `none`, in its
    /// `egress_proxy` setting, unless `--egress-proxy-required`.
    #[arg(
        long,
        env = "TRAILMARK_EGRESS_PROXY",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub egress_proxy: Option<String>,
    /// Refuse a stream's own `egress_proxy` setting (another proxy or `none`): every stream's
    /// traffic goes through `--egress-proxy`.
    #[arg(long, env = "TRAILMARK_EGRESS_PROXY_REQUIRED", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub egress_proxy_required: bool,
    /// A PEM file of CA certificates log streams trust besides Mozilla's roots, for
    /// destinations whose certificates an organization's own CA issued (a syslog stream's
    /// `ca_certificate` replaces both).
    #[arg(long, env = "TRAILMARK_STREAM_CA_FILE", value_name = "FILE")]
    pub stream_ca_file: Option<PathBuf>,
    /// Lend the AWS credentials Trailmark runs with (the default chain: AWS_* keys, a web
    /// identity token file, container credentials, instance metadata) to `s3` streams that set
    /// no keys of their own, as the base that assumes their `role_arn` or to write directly.
    /// Off by default: on an instance shared by several customers, the host's role must not be
    /// usable by any customer's stream.
    #[arg(long, env = "TRAILMARK_AWS_DEFAULT_CREDENTIALS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub aws_default_credentials: bool,
    /// A C2SP tlog-witness to ask to cosign each new checkpoint, as `URL=VERIFIER_KEY` (its
    /// submission prefix and cosignature key; `trailmark witness` prints both), repeatable
    /// (comma-separated in the variable).
    #[arg(
        long = "witness",
        env = "TRAILMARK_WITNESSES",
        value_delimiter = ',',
        value_name = "URL=KEY"
    )]
    pub witnesses: Vec<String>,
    /// How long a worker's hold on a stream lasts without renewal, in seconds: after a crash,
    /// the stream's delivery resumes (here or on another instance) once it ran out.
    #[arg(long, env = "TRAILMARK_STREAM_LEASE_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub stream_lease_secs: u64,
    /// How often each log stream delivers its organization's newest signed checkpoint, in
    /// seconds (when the log grew): the customer's own copy of each checkpoint, to verify later
    /// that the log was never rewritten (`trailmark verify --checkpoint`).
    #[arg(long, env = "TRAILMARK_STREAM_CHECKPOINT_INTERVAL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stream_checkpoint_interval_secs: u64,
    /// The operator's URL told, by a signed `POST`, when a stream has been `error` or `invalid`
    /// for longer than --alert-after-secs (and when it recovers) or an export fails (README
    /// "Alerts"). May be a private address: it is the operator's own.
    #[arg(
        long,
        env = "TRAILMARK_ALERT_WEBHOOK",
        value_name = "URL",
        requires = "alert_webhook_secret"
    )]
    pub alert_webhook: Option<String>,
    /// The `whsec_…` secret (`whsec_` and the base64 of at least 16 random bytes) alert
    /// notifications are signed with, Standard Webhooks style, as `http` streams sign theirs.
    #[arg(
        long,
        env = "TRAILMARK_ALERT_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub alert_webhook_secret: Option<String>,
    /// How long a stream is `error` or `invalid`, in seconds, before it is an incident the
    /// operator hears of.
    #[arg(long, env = "TRAILMARK_ALERT_AFTER_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub alert_after_secs: u64,
    /// How long an export's download link stays valid, in seconds.
    #[arg(long, env = "TRAILMARK_EXPORT_LINK_TTL_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub export_link_ttl_secs: u64,
    /// How long an Admin Portal link can be opened, in seconds. Hidden: WorkOS's links last 5
    /// minutes and so do Trailmark's; only the browser tests shorten it, to see a link expire.
    #[arg(
        long,
        env = "TRAILMARK_PORTAL_LINK_TTL_SECS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        hide = true
    )]
    pub portal_link_ttl_secs: u64,
    /// A console session ends after this many seconds without a request (and 12 hours after
    /// sign-in in any case).
    #[arg(long, env = "TRAILMARK_CONSOLE_IDLE_TIMEOUT_SECS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub console_idle_timeout_secs: u64,
    /// An OpenID Connect provider operators may sign in to the console with (its issuer URL;
    /// discovery finds the rest). Needs the client id and secret too; the redirect URI to
    /// register is `<public-url>/console/oidc/callback`.
    #[arg(long, env = "TRAILMARK_CONSOLE_OIDC_ISSUER", requires_all = ["console_oidc_client_id", "console_oidc_client_secret"])]
    pub console_oidc_issuer: Option<String>,
    /// The console's client id at the OpenID Connect provider.
    #[arg(long, env = "TRAILMARK_CONSOLE_OIDC_CLIENT_ID")]
    pub console_oidc_client_id: Option<String>,
    /// The console's client secret at the OpenID Connect provider.
    #[arg(
        long,
        env = "TRAILMARK_CONSOLE_OIDC_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub console_oidc_client_secret: Option<String>,
    /// Exports of one organization pending (waiting or being written) at once; one more is
    /// refused with 429 `too_many_exports` until one is ready.
    #[arg(long, env = "TRAILMARK_EXPORT_MAX_PENDING", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub export_max_pending: u32,
    /// How long an export's file is kept after the export was requested, in hours; then it is
    /// deleted and the export fails as expired.
    #[arg(long, env = "TRAILMARK_EXPORT_FILE_TTL_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub export_file_ttl_hours: u64,
    /// Bytes export files may take together under `<data-dir>/exports`: a new export is refused
    /// with 429 `export_storage_full` at the bound, one that would cross it fails.
    #[arg(long, env = "TRAILMARK_EXPORT_MAX_DISK_BYTES", default_value_t = 10 * 1024 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub export_max_disk_bytes: u64,
    /// Longest date range one export may span, in days (default: no limit).
    #[arg(long, env = "TRAILMARK_EXPORT_MAX_RANGE_DAYS", value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub export_max_range_days: Option<u32>,
    /// Log filter in `RUST_LOG` syntax, e.g. `info`, `debug`, `warn,trailmark::access=info`
    /// (default: `RUST_LOG` if set, else `info`).
    #[arg(long, env = "TRAILMARK_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// How log lines are written to standard error: `text` (coloured on a terminal) or `json`
    /// (one object per line).
    #[arg(long, env = "TRAILMARK_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::logging::LogFormat,
    /// Send OpenTelemetry traces (a span per request, with its storage commit and stream
    /// deliveries) over OTLP/HTTP to this collector, e.g. `http://127.0.0.1:4318` (default:
    /// none). Needs the `otlp` cargo feature, on by default.
    #[arg(long, env = "TRAILMARK_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What keeps clients from hurting the service: connection timeouts and cap, rate limits.
/// README "Limits" lists them with their defaults.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Connections open at once, at most (default: three quarters of the open-file limit, which
    /// `serve` raises to its maximum, up to 10,000). At the cap, the connection idle the longest
    /// is closed to make room; 503 only when every one is busy.
    #[arg(long, env = "TRAILMARK_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,
    /// The longest a request's head may take to arrive, from its first byte, in seconds.
    #[arg(long, env = "TRAILMARK_HEADER_TIMEOUT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,
    /// The longest a request's body may take to arrive after its head, in seconds (408 after).
    #[arg(long, env = "TRAILMARK_BODY_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_secs: u64,
    /// The longest a kept-alive connection may wait for its next request, in seconds.
    #[arg(long, env = "TRAILMARK_IDLE_TIMEOUT_SECS", default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout_secs: u64,
    /// On SIGTERM, how long requests in flight may finish before their connections are dropped,
    /// in seconds.
    #[arg(long, env = "TRAILMARK_SHUTDOWN_GRACE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,
    /// Requests a minute from one client address (an IPv6 /64); 0 for no limit. WorkOS's own
    /// limit by default. Kept per instance.
    #[arg(long, env = "TRAILMARK_RATE_LIMIT_PER_ADDRESS", default_value_t = trailmark_server::DEFAULT_PER_ADDRESS)]
    pub rate_limit_per_address: u32,
    /// Requests a minute with one API key; 0 for no limit. Kept per instance.
    #[arg(long, env = "TRAILMARK_RATE_LIMIT_PER_KEY", default_value_t = trailmark_server::DEFAULT_PER_KEY)]
    pub rate_limit_per_key: u32,
    /// Proxies (addresses or CIDR blocks, comma-separated) whose `X-Forwarded-For` names the
    /// client for the per-address limit. By default none: the TCP peer is the client.
    #[arg(long, env = "TRAILMARK_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<trailmark_server::Cidr>,
}

/// `--max-body-bytes`: at least 1, at most 64 MiB (a batch takes 16 times it, so 1 GiB at most).
fn body_bytes(text: &str) -> Result<usize, String> {
    const RANGE: std::ops::RangeInclusive<usize> = 1..=64 * 1024 * 1024;
    text.parse::<usize>()
        .ok()
        .filter(|bytes| RANGE.contains(bytes))
        .ok_or_else(|| {
            format!(
                "{text} is not a size from {} to {} bytes",
                RANGE.start(),
                RANGE.end()
            )
        })
}

fn parse_cidr(text: &str) -> Result<trailmark_server::Cidr, String> {
    trailmark_server::Cidr::parse(text)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    Ingest,
    Read,
    Admin,
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// What the key may do: `ingest` (send events), `read` (read and export), `admin` (everything).
    #[arg(long, value_enum, default_value = "admin")]
    pub scope: ScopeArg,
    /// What to call the key (who or what uses it); defaults to `<scope> key`.
    #[arg(long)]
    pub name: Option<String>,
    /// When the key stops working, an ISO-8601 date-time (`2027-01-31T00:00:00Z`).
    #[arg(long, value_name = "WHEN")]
    pub expires_at: Option<String>,
    /// Restrict the key to one organization.
    #[arg(long)]
    pub organization: Option<String>,
    /// Print the key and its details as one JSON object on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct KeyListArgs {
    /// Print the keys as one JSON object (`{"object":"list","data":[…]}`, as `GET /api_keys`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct KeyRevokeArgs {
    /// The key's id (`key_…`, from `trailmark keys list`).
    pub id: String,
    /// Revoke it even if it is the last unrestricted admin key.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Csv,
    Ndjson,
    /// NDJSON of OCSF 1.3.0 API Activity events, each holding the event object in `unmapped`.
    Ocsf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The organization whose events to export.
    #[arg(long)]
    pub organization: String,
    /// Earliest `occurred_at` (ISO-8601), inclusive.
    #[arg(long)]
    pub since: Option<String>,
    /// Latest `occurred_at` (ISO-8601), inclusive.
    #[arg(long)]
    pub until: Option<String>,
    /// Actions to include (`user.*` matches by prefix); comma-separated or repeated.
    #[arg(long, value_delimiter = ',')]
    pub actions: Vec<String>,
    /// Actor ids to include.
    #[arg(long, value_delimiter = ',')]
    pub actor_ids: Vec<String>,
    /// Actor names to include.
    #[arg(long, value_delimiter = ',')]
    pub actor_names: Vec<String>,
    /// Target ids to include.
    #[arg(long, value_delimiter = ',')]
    pub target_ids: Vec<String>,
    /// Target types to include.
    #[arg(long, value_delimiter = ',')]
    pub target_types: Vec<String>,
    /// Free text (at least 3 characters) to find in ids, names, location and metadata.
    #[arg(long)]
    pub q: Option<String>,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: FormatArg,
    /// The file to write (written to `<out>.partial`, then renamed when complete).
    #[arg(long)]
    pub out: PathBuf,
    /// Export through a running server's API instead of reading the database directly.
    #[arg(long, env = "TRAILMARK_SERVER")]
    pub server: Option<String>,
    /// API key for `--server`.
    #[arg(long, env = "TRAILMARK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print a summary of the written file as one JSON object on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Reads 32 bytes from the operating system's random source.
pub fn entropy() -> anyhow::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot read random bytes from the OS")?;
    Ok(bytes)
}
