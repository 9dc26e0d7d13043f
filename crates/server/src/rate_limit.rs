//! Rate limits, answered as WorkOS answers them: `429 {"message", "code": "rate_limit_exceeded"}`
//! with `Retry-After` in whole seconds, which every SDK honours before retrying.
//!
//! - **Per client address**: every request but `/healthz` and `/readyz` (orchestrators must never
//!   see a 429 from a healthy instance), by default 6,000 a minute, WorkOS's own limit, so an app
//!   that works against WorkOS works here. IPv6 addresses count per /64, the block one host is
//!   usually given. The address is the TCP peer's; `X-Forwarded-For` is read only when the peer
//!   is a configured trusted proxy (walking back from the nearest hop to the first address that
//!   is not one), since anyone else could write any address there.
//! - **Per API key**: every authenticated request, by default 60,000 a minute, so one key (one
//!   tenant's service, say) cannot take the server from the others even from many addresses.
//!
//! Each limit is a token bucket holding a minute's worth of requests and refilled at the
//! per-minute rate: bursts up to the limit pass, a sustained rate above it does not. Limits are
//! kept **per instance**, in memory: instances sharing a PostgreSQL database do not share them
//! (with N instances behind a balancer, a client may get up to N times the limit). Sharing them
//! would put a database write on every request, which is the load a limit must not add when it
//! matters most, under abuse; divide the limits by the number of instances if they must hold
//! for the whole deployment.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::state::AppState;

/// How many requests are let through (`--rate-limit-per-address`, `--rate-limit-per-key`,
/// `--trusted-proxies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests a minute from one client address; 0: no limit.
    pub per_address: u32,
    /// Requests a minute with one API key; 0: no limit.
    pub per_key: u32,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
}

/// WorkOS's limit: 6,000 requests a minute per IP address.
pub const DEFAULT_PER_ADDRESS: u32 = 6_000;
/// Ten addresses' worth, for one key used by a fleet of app servers.
pub const DEFAULT_PER_KEY: u32 = 60_000;

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_address: DEFAULT_PER_ADDRESS,
            per_key: DEFAULT_PER_KEY,
            trusted_proxies: Vec::new(),
        }
    }
}

/// An address block, `10.0.0.0/8` or `2001:db8::/32` (a bare address is its own block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// # Errors
    ///
    /// A message naming the text if it is not an address or a block.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not an IP address or CIDR block");
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().map_err(|_| bad())?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(bad)?,
            None => width,
        };
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A token bucket holding up to `per_minute` requests, refilled at `per_minute` a minute. Pure:
/// the caller passes the time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub(crate) fn full(now: Instant, per_minute: u32) -> Self {
        TokenBucket {
            tokens: f64::from(per_minute),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant, per_minute: u32) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        let capacity = f64::from(per_minute);
        self.tokens = (self.tokens + elapsed * capacity / 60.0).min(capacity);
        self.updated = now;
    }

    /// Takes one request's token at `now`, or says how long until one is there.
    pub(crate) fn take(&mut self, now: Instant, per_minute: u32) -> Result<(), Duration> {
        self.refill(now, per_minute);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(Duration::from_secs_f64(
                missing * 60.0 / f64::from(per_minute),
            ))
        }
    }

    /// Whether the bucket is full again at `now`, so forgetting it changes nothing.
    fn is_full(mut self, now: Instant, per_minute: u32) -> bool {
        self.refill(now, per_minute);
        self.tokens >= f64::from(per_minute)
    }
}

/// Buckets by key, forgetting the full ones now and then so memory follows the clients active
/// within the last minute, not every client ever seen.
struct Buckets<K> {
    per_minute: u32,
    buckets: Mutex<HashMap<K, TokenBucket>>,
    checks: AtomicU64,
}

/// Every this many checks, full buckets are forgotten.
const SWEEP_EVERY: u64 = 4096;

impl<K: Hash + Eq> Buckets<K> {
    fn new(per_minute: u32) -> Self {
        Buckets {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
        }
    }

    fn check(&self, key: K, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            buckets.retain(|_, bucket| !bucket.is_full(now, self.per_minute));
        }
        buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(now, self.per_minute))
            .take(now, self.per_minute)
    }
}

/// The instance's limits and their buckets.
pub(crate) struct RateLimiter {
    config: RateLimits,
    addresses: Buckets<IpAddr>,
    keys: Buckets<String>,
}

impl RateLimiter {
    pub(crate) fn new(config: RateLimits) -> Self {
        RateLimiter {
            addresses: Buckets::new(config.per_address),
            keys: Buckets::new(config.per_key),
            config,
        }
    }

    /// # Errors
    ///
    /// [`ApiError::RateLimited`] when the key's minute is used up.
    pub(crate) fn check_key(&self, key_id: &str) -> Result<(), ApiError> {
        self.keys
            .check(key_id.to_owned(), Instant::now())
            .map_err(|retry_after| ApiError::RateLimited {
                by: "API key",
                per_minute: self.config.per_key,
                retry_after,
            })
    }

    fn check_address(&self, address: IpAddr) -> Result<(), ApiError> {
        self.addresses
            .check(bucket_of(address), Instant::now())
            .map_err(|retry_after| ApiError::RateLimited {
                by: "address",
                per_minute: self.config.per_address,
                retry_after,
            })
    }

    /// The client's address: the peer's, or, from a trusted proxy, the nearest address in
    /// `X-Forwarded-For` that is not a trusted proxy.
    pub(crate) fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: IpAddr| self.config.trusted_proxies.iter().any(|c| c.contains(ip));
        let mut client = peer.to_canonical();
        if !trusted(client) {
            return client;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.into_iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !trusted(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly bracketed or with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()
        })
        .map(|ip: IpAddr| ip.to_canonical())
}

/// The bucket an address counts in: itself for IPv4, its /64 for IPv6.
fn bucket_of(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// The client's address, as the per-address limit counts it: left on the request for the
/// handlers (the events Trailmark records about a key's changes name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddress(pub(crate) IpAddr);

/// The per-address limit, around every request but the health probes.
pub(crate) async fn by_address(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    if let Some(peer) = peer {
        let limiter = &state.rate_limiter;
        let client = limiter.client_address(peer, request.headers());
        if !probe && let Err(refusal) = limiter.check_address(client) {
            return refusal.into_response();
        }
        request.extensions_mut().insert(ClientAddress(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_lets_a_minute_s_worth_through_at_once_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(start, 60);
        for n in 0..60 {
            assert!(bucket.take(Instant::now(), 60).is_ok(), "request {n}");
        }
        let wait = bucket.take(Instant::now(), 60).expect_err("empty");
        assert_eq!(wait, Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(500)).await;
        let wait = bucket.take(Instant::now(), 60).expect_err("half a token");
        assert_eq!(wait, Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(
            bucket.take(Instant::now(), 60).is_ok(),
            "one token a second"
        );
        assert!(bucket.take(Instant::now(), 60).is_err());
        // A long pause refills to the capacity, never beyond.
        tokio::time::advance(Duration::from_secs(3600)).await;
        for _ in 0..60 {
            assert!(bucket.take(Instant::now(), 60).is_ok());
        }
        assert!(bucket.take(Instant::now(), 60).is_err());
        assert!(!bucket.is_full(Instant::now(), 60));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(bucket.is_full(Instant::now(), 60));
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_per_key_forget_full_ones_and_zero_means_no_limit() {
        let buckets = Buckets::new(2);
        let now = Instant::now();
        assert!(buckets.check("a", now).is_ok());
        assert!(buckets.check("a", now).is_ok());
        assert!(buckets.check("a", now).is_err());
        assert!(buckets.check("b", now).is_ok(), "another key has its own");
        tokio::time::advance(Duration::from_secs(60)).await;
        for n in 0..SWEEP_EVERY {
            let _ = buckets.check(if n % 2 == 0 { "c" } else { "d" }, Instant::now());
        }
        let remembered = buckets.buckets.lock().expect("lock").len();
        assert!(remembered <= 2, "{remembered} buckets kept after a sweep");
        let unlimited = Buckets::new(0);
        for _ in 0..10_000 {
            assert!(unlimited.check("a", now).is_ok());
        }
        assert!(unlimited.buckets.lock().expect("lock").is_empty());
    }

    #[test]
    fn the_client_address_is_the_peer_unless_a_trusted_proxy_names_it() {
        let limiter = RateLimiter::new(RateLimits {
            trusted_proxies: vec![
                Cidr::parse("10.0.0.0/8").expect("cidr"),
                Cidr::parse("::1").expect("cidr"),
            ],
            ..RateLimits::default()
        });
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", value.parse().expect("header"));
            headers
        };
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        // An untrusted peer's header is ignored.
        assert_eq!(
            limiter.client_address(ip("198.51.100.9"), &headers("192.0.2.1")),
            ip("198.51.100.9")
        );
        // Through trusted proxies, the nearest untrusted hop; a forged first hop does not count.
        assert_eq!(
            limiter.client_address(ip("10.0.0.2"), &headers("6.6.6.6, 192.0.2.1, 10.0.0.1")),
            ip("192.0.2.1")
        );
        assert_eq!(
            limiter.client_address(ip("::1"), &headers("[2001:db8::7]:443")),
            ip("2001:db8::7")
        );
        assert_eq!(
            limiter.client_address(ip("::ffff:10.0.0.2"), &headers("192.0.2.5")),
            ip("192.0.2.5")
        );
        // Garbage stops the walk at the nearest address known.
        assert_eq!(
            limiter.client_address(ip("10.0.0.2"), &headers("192.0.2.1, unknown")),
            ip("10.0.0.2")
        );
        assert_eq!(
            limiter.client_address(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        assert_eq!(
            bucket_of(ip("2001:db8:1:2:3:4:5:6")),
            ip("2001:db8:1:2::"),
            "IPv6 counts per /64"
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("all")
                .contains(ip("8.8.8.8"))
        );
    }
}
