//! The tutorial's `req.log({action, targets})` for axum: [`AuditLayer`] and the [`Audit`]
//! extractor (cargo feature `axum`).
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use axum::{Router, extract::Path, routing::delete};
//! use trailmark_client::Client;
//! use trailmark_client::axum::{Audit, AuditError, AuditLayer, TrustedProxies};
//!
//! async fn delete_post(audit: Audit, Path(id): Path<String>) -> Result<&'static str, AuditError> {
//!     // … delete the post, then record who did it:
//!     audit.log("post.delete").target("post", &id).send().await?;
//!     Ok("deleted")
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new("http://127.0.0.1:8080", "sk_…")?;
//! let app = Router::new()
//!     .route("/posts/{id}", delete(delete_post))
//!     // your authentication middleware inserts an `AuditActor` into the request here
//!     .layer(AuditLayer::new(client).trust_proxies(TrustedProxies::parse(["10.0.0.0/8"])?));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // The peer address is needed for `context.location`:
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! **What the middleware takes from the request, and why:**
//!
//! - *Actor, organization and teams*: from the [`AuditActor`] request extension that the app's
//!   own authentication inserts once it knows the user. Never from headers or the body: who did
//!   it must come from the session the app verified. Teams become default targets, as in the
//!   tutorial, so "what did team X's members do" is one target filter.
//! - *`context.location`*: the client IP. By default the TCP peer address (axum's
//!   `ConnectInfo<SocketAddr>`). `Forwarded` (RFC 7239) or, without it, `X-Forwarded-For` are
//!   read only when the peer is in [`TrustedProxies`], walking the hops from the nearest and
//!   taking the first address that is not itself a trusted proxy. The tutorial trusts the header
//!   blindly; anyone could then forge their location in the audit trail.
//! - *`context.user_agent`*: the `User-Agent` header (what the client claims; recorded as such).
//! - *`occurred_at`*: the time `log` was called.
//!
//! No user, no event: [`Audit::log`] without an [`AuditActor`] fails with
//! [`AuditError::NoUser`], a 401, because an audited route reached without a signed-in user is
//! an unauthenticated request, and refusing it fails closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{HeaderMap, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::background::{BackgroundQueue, Dropped};
use crate::client::Client;
use crate::error::Error;
use crate::wire::{Actor, Context, Event, Receipt, Target};

/// Who is acting, set by the app's authentication as a request extension
/// (`request.extensions_mut().insert(actor)`).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditActor {
    /// The organization whose log the user's events go to.
    pub organization_id: String,
    pub actor: Actor,
    /// The user's teams: every event of this user names them as targets (type `team`).
    pub teams: Vec<Target>,
}

impl AuditActor {
    /// A user (`type: "user"`) of an organization, with no teams yet.
    pub fn user(
        organization_id: impl Into<String>,
        id: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        AuditActor {
            organization_id: organization_id.into(),
            actor: Actor::new("user", id).named(name),
            teams: Vec::new(),
        }
    }

    /// The same actor, member of one more team.
    #[must_use]
    pub fn team(mut self, id: impl Into<String>, name: impl Into<String>) -> Self {
        self.teams.push(Target::new("team", id).named(name));
        self
    }
}

/// The proxies whose `Forwarded` / `X-Forwarded-For` headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

/// A trusted-proxy entry that is neither an IP address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trusted proxy {0:?} is not an IP address or a CIDR block like 10.0.0.0/8")]
pub struct InvalidProxy(pub String);

impl TrustedProxies {
    /// No proxy is trusted: the TCP peer is the client (the default).
    pub fn none() -> Self {
        TrustedProxies::default()
    }

    /// Addresses (`10.0.0.7`, `::1`) and CIDR blocks (`10.0.0.0/8`, `fd00::/8`).
    ///
    /// # Errors
    ///
    /// [`InvalidProxy`] naming the first entry that is neither.
    pub fn parse<I, S>(entries: I) -> Result<Self, InvalidProxy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        entries
            .into_iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                let invalid = || InvalidProxy(entry.to_owned());
                let (address, prefix) = match entry.split_once('/') {
                    Some((address, prefix)) => {
                        (address, Some(prefix.parse::<u8>().map_err(|_| invalid())?))
                    }
                    None => (entry, None),
                };
                let address = address
                    .parse::<IpAddr>()
                    .map_err(|_| invalid())?
                    .to_canonical();
                let bits = if address.is_ipv4() { 32 } else { 128 };
                let prefix = prefix.unwrap_or(bits);
                if prefix > bits {
                    return Err(invalid());
                }
                Ok((address, prefix))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether `address` is a trusted proxy.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|(block, prefix)| match (block, address) {
            (IpAddr::V4(block), IpAddr::V4(address)) => same_prefix(
                u32::from(*block).into(),
                u32::from(address).into(),
                *prefix,
                32,
            ),
            (IpAddr::V6(block), IpAddr::V6(address)) => {
                same_prefix(u128::from(*block), u128::from(address), *prefix, 128)
            }
            _ => false,
        })
    }

    /// The client's address for a request from `peer` carrying `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        // Nearest hop last in the header; walk back while the hops are our own proxies.
        for hop in forwarded_hops(headers).into_iter().rev() {
            match hop {
                Some(address) => {
                    client = address.to_canonical();
                    if !self.contains(client) {
                        return client;
                    }
                }
                // An obfuscated or garbled hop: the last trusted proxy is as far as we know.
                None => return client,
            }
        }
        client
    }
}

fn same_prefix(block: u128, address: u128, prefix: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix);
    shift >= bits || (block >> shift) == (address >> shift)
}

/// The `for` addresses of `Forwarded` (RFC 7239), or else of `X-Forwarded-For`, client first;
/// `None` for a hop that is not an address (`unknown`, `_hidden`, garbage).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|value| value.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for")
                        .then(|| parse_hop(value.trim().trim_matches('"')))
                })
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|hop| parse_hop(hop.trim()))
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })
}

/// Why an audited request could not be recorded. As a response: 401 for
/// [`AuditError::NoUser`], 503 when Trailmark is unreachable or the queue is full, 500 otherwise
/// (the cause is logged, never sent to the client).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The request carries no [`AuditActor`]: nobody is signed in.
    #[error("this action is audited and needs a signed-in user")]
    NoUser,
    /// The route has no [`AuditLayer`] above it.
    #[error("the Audit extractor needs AuditLayer on the router")]
    LayerMissing,
    /// The app is not served with `into_make_service_with_connect_info::<SocketAddr>()`.
    #[error(
        "the client address is unknown: serve the app with into_make_service_with_connect_info::<SocketAddr>()"
    )]
    NoPeerAddress,
    /// Trailmark did not acknowledge the event.
    #[error("the audit event was not recorded: {0}")]
    Trailmark(#[from] Error),
    /// The background queue was full.
    #[error(transparent)]
    Dropped(#[from] Dropped),
}

impl IntoResponse for AuditError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            AuditError::NoUser => (
                StatusCode::UNAUTHORIZED,
                json!({"message": self.to_string(), "code": "audit_no_user"}),
            ),
            AuditError::Trailmark(Error::Transport { .. }) | AuditError::Dropped(_) => {
                tracing::error!(error = %self, "audit event not recorded");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"message": "The audit log is unavailable; try again.", "code": "audit_unavailable"}),
                )
            }
            _ => {
                tracing::error!(error = %self, "audit event not recorded");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"message": "Internal error.", "code": "audit_failed"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

#[derive(Clone)]
struct Shared {
    client: Client,
    trusted: TrustedProxies,
    queue: Option<Arc<BackgroundQueue>>,
}

/// Makes [`Audit`] available to every handler below it.
#[derive(Clone)]
pub struct AuditLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer")
            .field("trusted", &self.shared.trusted)
            .field("background", &self.shared.queue.is_some())
            .finish()
    }
}

impl AuditLayer {
    /// Sends through `client`, awaiting each acknowledgement; no proxy trusted.
    pub fn new(client: Client) -> Self {
        AuditLayer {
            shared: Arc::new(Shared {
                client,
                trusted: TrustedProxies::none(),
                queue: None,
            }),
        }
    }

    /// Believes forwarding headers from these proxies.
    #[must_use]
    pub fn trust_proxies(self, trusted: TrustedProxies) -> Self {
        self.map(|shared| shared.trusted = trusted)
    }

    /// Queues events in `queue` instead of awaiting each acknowledgement
    /// ([`AuditEntry::send`] then returns once queued, with no receipt).
    #[must_use]
    pub fn background(self, queue: Arc<BackgroundQueue>) -> Self {
        self.map(|shared| shared.queue = Some(queue))
    }

    fn map(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        change(&mut shared);
        AuditLayer {
            shared: Arc::new(shared),
        }
    }
}

impl<S> tower::Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`AuditLayer`] wraps around a router or route.
#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> tower::Service<Request<B>> for AuditService<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        request.extensions_mut().insert(Arc::clone(&self.shared));
        self.inner.call(request)
    }
}

/// A handler's audit logger, bound to the request: its actor, teams, IP and user agent.
pub struct Audit {
    shared: Arc<Shared>,
    actor: Option<AuditActor>,
    context: Context,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("actor", &self.actor)
            .field("context", &self.context)
            .finish()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Audit {
    type Rejection = AuditError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let shared = parts
            .extensions
            .get::<Arc<Shared>>()
            .cloned()
            .ok_or(AuditError::LayerMissing)?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip())
            .ok_or(AuditError::NoPeerAddress)?;
        let context = Context {
            location: shared.trusted.client_ip(peer, &parts.headers).to_string(),
            user_agent: parts
                .headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        Ok(Audit {
            actor: parts.extensions.get::<AuditActor>().cloned(),
            shared,
            context,
        })
    }
}

impl Audit {
    /// Starts an event by the request's signed-in user. Its teams are default targets.
    pub fn log(&self, action: impl Into<String>) -> AuditEntry<'_> {
        AuditEntry {
            audit: self,
            actor: self.actor.clone(),
            action: action.into(),
            targets: Vec::new(),
            metadata: Vec::new(),
        }
    }

    /// Starts an event by `actor`, for the requests that establish who the user is (a login).
    pub fn log_as(&self, actor: &AuditActor, action: impl Into<String>) -> AuditEntry<'_> {
        AuditEntry {
            actor: Some(actor.clone()),
            ..self.log(action)
        }
    }

    /// The signed-in user, if any.
    pub fn actor(&self) -> Option<&AuditActor> {
        self.actor.as_ref()
    }

    /// The context events of this request carry.
    pub fn context(&self) -> &Context {
        &self.context
    }
}

/// One event being built; nothing is sent until [`AuditEntry::send`].
#[must_use = "an audit entry records nothing until .send().await"]
pub struct AuditEntry<'a> {
    audit: &'a Audit,
    actor: Option<AuditActor>,
    action: String,
    targets: Vec<Target>,
    metadata: Vec<(String, Value)>,
}

impl AuditEntry<'_> {
    /// Adds a target of `kind` (e.g. `"post"`) with this id.
    pub fn target(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.targets.push(Target::new(kind, id));
        self
    }

    /// Adds a fully described target (name, metadata).
    pub fn target_with(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    /// Adds a metadata value (string, number or boolean).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Sends the event and waits until Trailmark stored it (with the layer's background queue,
    /// until it is queued; the receipt is then `None`).
    ///
    /// # Errors
    ///
    /// [`AuditError::NoUser`] without an actor; [`AuditError::Trailmark`] if Trailmark refused
    /// it or stayed unreachable; [`AuditError::Dropped`] if the queue was full.
    pub async fn send(self) -> Result<Option<Receipt>, AuditError> {
        let AuditEntry {
            audit,
            actor,
            action,
            targets,
            metadata,
        } = self;
        let actor = actor.ok_or(AuditError::NoUser)?;
        let mut event = Event::new(action, actor.actor);
        event.targets = targets;
        event.targets.extend(actor.teams);
        event.context = audit.context.clone();
        for (key, value) in metadata {
            event = event.metadata(key, value);
        }
        match &audit.shared.queue {
            Some(queue) => {
                queue.send(actor.organization_id, event)?;
                Ok(None)
            }
            None => Ok(Some(
                audit
                    .shared
                    .client
                    .create_event(&actor.organization_id, &event)
                    .await?,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).expect("valid");
        let forged = headers(&[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(
            trusted.client_ip(ip("203.0.113.5"), &forged),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn the_first_untrusted_hop_from_the_nearest_is_the_client() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8", "192.0.2.9"]).expect("valid");
        // The client prepended a forged address; our proxies appended the real ones.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.5, 192.0.2.9")]);
        assert_eq!(trusted.client_ip(ip("10.1.2.3"), &chain), ip("203.0.113.5"));
    }

    #[test]
    fn forwarded_is_preferred_and_understands_ports_and_ipv6() {
        let trusted = TrustedProxies::parse(["::1", "127.0.0.1"]).expect("valid");
        let both = headers(&[
            (
                "forwarded",
                r#"for="[2001:db8::7]:4711";proto=https, for=127.0.0.1"#,
            ),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        assert_eq!(trusted.client_ip(ip("::1"), &both), ip("2001:db8::7"));
        let obfuscated = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), &obfuscated),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn trusted_proxy_entries_are_checked() {
        assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(["proxy.internal"]).is_err());
        let all_v4 = TrustedProxies::parse(["0.0.0.0/0"]).expect("valid");
        assert!(all_v4.contains(ip("8.8.8.8")));
        assert!(all_v4.contains(ip("::ffff:8.8.8.8")));
        assert!(!all_v4.contains(ip("2001:db8::1")));
    }
}
