//! State shared by every request: the application, the HTTP configuration, the download-link
//! signer and the HTTP metrics. One `Arc`: every request clones it (axum's `State`) and drops
//! it, and a clone of each field instead was ~3% of a single-event request's CPU (`perf`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use trailmark_app::Trailmark;
use trailmark_domain::Timestamp;

use crate::connections::ConnectionLimits;
use crate::links::LinkSigner;
use crate::metrics::Metrics;
use crate::rate_limit::{RateLimiter, RateLimits};

/// What the HTTP edge is configured with (the CLI resolves it from flags and environment
/// variables; the application's own settings are `trailmark_app::AppConfig`).
#[derive(Clone)]
pub struct ServerConfig {
    /// The base URL clients reach this server at; download and portal links start with it.
    pub public_url: String,
    /// The instance's secrets key (the secrets key file); download-link keys derive from it.
    pub secrets_key: [u8; 32],
    /// How long a download link stays valid; every `GET` of the export makes a new one.
    pub export_link_ttl: Duration,
    /// Largest accepted request body, in bytes; batch ingest accepts [`BATCH_BODY_FACTOR`] times it.
    pub max_body_bytes: usize,
    /// Timeouts and the connection cap of the listener.
    pub connections: ConnectionLimits,
    /// Requests a minute per client address and per API key.
    pub rate_limits: RateLimits,
}

/// How long a portal link can be opened: WorkOS's links expire after 5 minutes.
const PORTAL_LINK_TTL: Duration = Duration::from_secs(5 * 60);

/// A batch may carry up to 1,000 events, so its body limit is this multiple of the normal one.
pub const BATCH_BODY_FACTOR: usize = 16;

impl std::fmt::Debug for ServerConfig {
    /// The secrets key never appears; everything else does, for the startup log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("public_url", &self.public_url)
            .field("export_link_ttl", &self.export_link_ttl)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("connections", &self.connections)
            .field("rate_limits", &self.rate_limits)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares; its fields are read through `Deref`.
#[derive(Clone)]
pub struct Shared {
    pub(crate) app: Trailmark,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) links: LinkSigner,
    /// How long an Admin Portal link can be opened after it was issued.
    pub(crate) portal_link_ttl: Duration,
    /// This instance's rate-limit buckets.
    pub(crate) rate_limiter: Arc<RateLimiter>,
    /// The time console sessions are judged by.
    pub(crate) clock: Clock,
    /// A console session ends after this long without a request.
    pub(crate) console_idle_timeout: Duration,
    /// The console's OpenID Connect client, when configured.
    pub(crate) console_oidc: Option<Arc<trailmark_app::oidc::OidcSettings>>,
}

/// A console session ends after this long without a request, unless configured otherwise (as
/// the portal's sessions do).
pub const CONSOLE_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The console's clock: the system's, moved forward by what a test asked for, so that a test
/// sees a session expire without waiting half an hour.
#[derive(Clone, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn now(&self) -> Timestamp {
        Timestamp::now().plus_millis(self.0.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(app: Trailmark, config: ServerConfig) -> Self {
        AppState(Arc::new(Shared {
            metrics: Arc::new(Metrics::new(app.metrics())),
            app,
            links: LinkSigner::new(
                &config.secrets_key,
                config.export_link_ttl,
                &config.public_url,
            ),
            portal_link_ttl: PORTAL_LINK_TTL,
            rate_limiter: Arc::new(RateLimiter::new(config.rate_limits.clone())),
            clock: Clock::default(),
            console_idle_timeout: CONSOLE_IDLE_TIMEOUT,
            console_oidc: None,
            config: Arc::new(config),
        }))
    }

    /// The shared state to change while the server is being set up (each `with_…` below),
    /// copied first if a clone of this state shares it.
    fn setting(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }

    /// Changes how long portal links stay valid (WorkOS's 5 minutes by default). Only tests
    /// shorten it, to see an expired link refused without waiting five minutes.
    #[must_use]
    pub fn with_portal_link_ttl(mut self, ttl: Duration) -> Self {
        self.setting().portal_link_ttl = ttl;
        self
    }

    /// Ends console sessions after `idle` without a request (`--console-idle-timeout-secs`).
    #[must_use]
    pub fn with_console_idle_timeout(mut self, idle: Duration) -> Self {
        self.setting().console_idle_timeout = idle;
        self
    }

    /// Lets operators sign in to the console with an OpenID Connect provider.
    #[must_use]
    pub fn with_console_oidc(mut self, settings: trailmark_app::oidc::OidcSettings) -> Self {
        self.setting().console_oidc = Some(Arc::new(settings));
        self
    }

    /// Judges console sessions by `clock` (tests move it forward).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.setting().clock = clock;
        self
    }
}
