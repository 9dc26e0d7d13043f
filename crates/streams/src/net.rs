//! The network side of delivery: one HTTP client (TLS verified against the system's roots),
//! the guard that keeps streams off private networks, and the reading of a destination's answer.
//!
//! **Private destinations.** Unless the operator allowed them (`--allow-private-destinations`),
//! a stream may reach only globally routable unicast addresses: everything the IANA
//! special-purpose address registries (IPv4 and IPv6) mark as not globally reachable is refused,
//! and so are multicast, the reserved 240.0.0.0/4 and, for IPv6, anything outside the global
//! unicast block 2000::/3. IPv6 forms that carry an IPv4 address are decoded first: IPv4-mapped
//! (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::/96`) addresses are judged by the IPv4 address they
//! reach; the deprecated transition forms (IPv4-compatible `::a.b.c.d`, IPv4-translated
//! `::ffff:0:a.b.c.d`, 6to4 `2002::/16`, Teredo `2001::/32`) and the local-use NAT64 prefix
//! `64:ff9b:1::/48` are refused whatever they embed. A destination is checked when the stream is
//! saved ([`check_destination`]: a name must resolve, and to global addresses only) and again at
//! every connection (the client's resolver drops refused addresses), because DNS can change
//! between the two.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::Outcome;
use crate::destination::Context;

/// How long one delivery request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an address is not one a stream may reach: the registry range it falls in and, for an
/// IPv6 form that carries an IPv4 address, that address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotGlobal {
    /// The range and its registry name, e.g. `127.0.0.0/8 (loopback)`.
    pub range: &'static str,
    /// The IPv4 address an IPv6 form carries.
    pub embedded: Option<Ipv4Addr>,
    /// For IPv6 forms that reach the IPv4 address they carry (IPv4-mapped, NAT64): the form;
    /// `range` is then the carried address's range.
    pub form: Option<&'static str>,
}

impl std::fmt::Display for NotGlobal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.form, self.embedded) {
            (Some(form), Some(v4)) => write!(f, "the {form} form of {v4}, in {}", self.range),
            (_, Some(v4)) => write!(f, "{}, carrying {v4}", self.range),
            _ => f.write_str(self.range),
        }
    }
}

/// IPv4 ranges that are not globally reachable unicast: the IANA IPv4 Special-Purpose Address
/// Registry's entries whose "Globally Reachable" is false or N/A, plus multicast (224.0.0.0/4).
/// Checked after [`V4_GLOBAL_EXCEPTIONS`].
const V4_NOT_GLOBAL: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "0.0.0.0/8 (this network)"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "10.0.0.0/8 (private use)"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "100.64.0.0/10 (shared address space, carrier-grade NAT)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "127.0.0.0/8 (loopback)"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "169.254.0.0/16 (link local)",
    ),
    (
        Ipv4Addr::new(172, 16, 0, 0),
        12,
        "172.16.0.0/12 (private use)",
    ),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "192.0.0.0/24 (IETF protocol assignments)",
    ),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        "192.0.2.0/24 (documentation, TEST-NET-1)",
    ),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "192.88.99.0/24 (6to4 relay anycast, deprecated)",
    ),
    (
        Ipv4Addr::new(192, 168, 0, 0),
        16,
        "192.168.0.0/16 (private use)",
    ),
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        "198.18.0.0/15 (benchmarking)",
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "198.51.100.0/24 (documentation, TEST-NET-2)",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        "203.0.113.0/24 (documentation, TEST-NET-3)",
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "224.0.0.0/4 (multicast)"),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        "255.255.255.255/32 (limited broadcast)",
    ),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "240.0.0.0/4 (reserved)"),
];

/// Single addresses inside [`V4_NOT_GLOBAL`] ranges that the registry marks globally reachable
/// (the PCP and TURN anycast addresses in 192.0.0.0/24).
const V4_GLOBAL_EXCEPTIONS: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(192, 0, 0, 9), 32),
    (Ipv4Addr::new(192, 0, 0, 10), 32),
];

/// IPv6 ranges that are not globally reachable unicast (IANA IPv6 Special-Purpose Address
/// Registry, "Globally Reachable" false or N/A; plus site-local, multicast and SRv6 SIDs), checked
/// after the embedded IPv4 forms are decoded and after [`V6_GLOBAL_EXCEPTIONS`]. Anything outside
/// 2000::/3, the one block allocated for global unicast, is refused after this table.
const V6_NOT_GLOBAL: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "::/128 (unspecified)"),
    (Ipv6Addr::LOCALHOST, 128, "::1/128 (loopback)"),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "64:ff9b:1::/48 (local-use IPv4/IPv6 translation)",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "100::/64 (discard only)",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0),
        64,
        "100:0:0:1::/64 (dummy IPv6 prefix)",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "2001:db8::/32 (documentation)",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "2001::/23 (IETF protocol assignments)",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "3fff::/20 (documentation)",
    ),
    (
        Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        "5f00::/16 (segment routing SIDs)",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "fc00::/7 (unique local)",
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        "fe80::/10 (link local)",
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "fec0::/10 (site local, deprecated)",
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        "ff00::/8 (multicast)",
    ),
];

/// Globally reachable entries inside 2001::/23 (PCP, TURN and DNS-SD anycast, AMT, AS112-v6,
/// ORCHIDv2, drone remote ID).
const V6_GLOBAL_EXCEPTIONS: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 1), 128),
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 2), 128),
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 3), 128),
    (Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2001, 4, 0x112, 0, 0, 0, 0, 0), 48),
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28),
    (Ipv6Addr::new(0x2001, 0x30, 0, 0, 0, 0, 0, 0), 28),
];

fn in_v4(ip: Ipv4Addr, network: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(network) & mask
}

fn in_v6(ip: Ipv6Addr, network: Ipv6Addr, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

/// `Ok` if a stream may reach `ip` (globally routable unicast), else the range that refuses it.
///
/// # Errors
///
/// [`NotGlobal`] naming the registry range `ip` (or the IPv4 address it carries) falls in.
pub fn check_global(ip: IpAddr) -> Result<(), NotGlobal> {
    match ip {
        IpAddr::V4(v4) => check_v4(v4),
        IpAddr::V6(v6) => check_v6(v6),
    }
}

fn check_v4(ip: Ipv4Addr) -> Result<(), NotGlobal> {
    if V4_GLOBAL_EXCEPTIONS
        .iter()
        .any(|(network, prefix)| in_v4(ip, *network, *prefix))
    {
        return Ok(());
    }
    match V4_NOT_GLOBAL
        .iter()
        .find(|(network, prefix, _)| in_v4(ip, *network, *prefix))
    {
        Some((_, _, range)) => Err(NotGlobal {
            range,
            embedded: None,
            form: None,
        }),
        None => Ok(()),
    }
}

fn check_v6(ip: Ipv6Addr) -> Result<(), NotGlobal> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let refused = |range: &'static str, embedded: Ipv4Addr| {
        Err(NotGlobal {
            range,
            embedded: Some(embedded),
            form: None,
        })
    };
    // Forms that reach the IPv4 address they carry are judged by that address.
    let reached = |form: &'static str| {
        check_v4(low32).map_err(|inner| NotGlobal {
            range: inner.range,
            embedded: Some(low32),
            form: Some(form),
        })
    };
    if in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96) {
        return reached("IPv4-mapped");
    }
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return reached("NAT64 (64:ff9b::/96)");
    }
    // Deprecated transition forms: refused whatever they carry.
    if in_v6(ip, Ipv6Addr::UNSPECIFIED, 96) && bits > 1 {
        return refused("::/96 (IPv4-compatible, deprecated)", low32);
    }
    if in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96) {
        return refused("::ffff:0:0:0/96 (IPv4-translated)", low32);
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        let carried = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        return refused("2002::/16 (6to4)", carried);
    }
    if in_v6(ip, Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32) {
        // Teredo carries the client's public address with every bit inverted.
        return refused("2001::/32 (Teredo)", Ipv4Addr::from(!u32::from(low32)));
    }
    if V6_GLOBAL_EXCEPTIONS
        .iter()
        .any(|(network, prefix)| in_v6(ip, *network, *prefix))
    {
        return Ok(());
    }
    if let Some((_, _, range)) = V6_NOT_GLOBAL
        .iter()
        .find(|(network, prefix, _)| in_v6(ip, *network, *prefix))
    {
        return Err(NotGlobal {
            range,
            embedded: None,
            form: None,
        });
    }
    if !in_v6(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        return Err(NotGlobal {
            range: "outside 2000::/3 (not global unicast)",
            embedded: None,
            form: None,
        });
    }
    Ok(())
}

/// Whether `ip` is an address a stream must not reach unless the operator allowed it.
pub fn is_private(ip: IpAddr) -> bool {
    check_global(ip).is_err()
}

/// The flag that lifts the guard, named in every refusal so the operator knows the way out.
const ALLOW_FLAG: &str = "--allow-private-destinations (TRAILMARK_ALLOW_PRIVATE_DESTINATIONS)";

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("the destination URL is not valid")]
    BadUrl,
    #[error("the destination host {host} cannot be resolved: {reason}")]
    Unresolvable { host: String, reason: String },
    #[error(
        "the destination {ip} is not a globally routable address ({why}); streams reach private, loopback and reserved addresses only when the server runs with {ALLOW_FLAG}"
    )]
    Private { ip: IpAddr, why: NotGlobal },
}

fn host_of(url: &str) -> Result<(String, u16), DestinationError> {
    let url = reqwest::Url::parse(url).map_err(|_| DestinationError::BadUrl)?;
    let host = url
        .host_str()
        .ok_or(DestinationError::BadUrl)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok((host, url.port_or_known_default().unwrap_or(443)))
}

/// The guard's refusal of `ip`, which it refuses.
pub(crate) fn refusal(ip: IpAddr) -> DestinationError {
    refuse_if_private(ip)
        .err()
        .unwrap_or(DestinationError::BadUrl)
}

fn refuse_if_private(ip: IpAddr) -> Result<(), DestinationError> {
    check_global(ip).map_err(|why| DestinationError::Private { ip, why })
}

/// Checks that `url`'s host is, or resolves only to, globally routable addresses.
///
/// # Errors
///
/// [`DestinationError`] saying why the destination is refused: a name that does not resolve
/// ([`DestinationError::Unresolvable`]) or an address that is not global.
pub async fn check_destination(url: &str, allow_private: bool) -> Result<(), DestinationError> {
    if allow_private {
        return Ok(());
    }
    let (host, port) = host_of(url)?;
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| DestinationError::Unresolvable {
                host: host.clone(),
                reason: e.to_string(),
            })?
            .map(|address| address.ip())
            .collect(),
    };
    if addresses.is_empty() {
        return Err(DestinationError::Unresolvable {
            host,
            reason: "no addresses".into(),
        });
    }
    addresses.into_iter().try_for_each(refuse_if_private)
}

/// Refuses a destination whose host is written as a non-global IP address; names are left to
/// the resolver.
///
/// # Errors
///
/// [`DestinationError::Private`] or [`DestinationError::BadUrl`].
pub fn check_literal(url: &str, allow_private: bool) -> Result<(), DestinationError> {
    if allow_private {
        return Ok(());
    }
    let (host, _) = host_of(url)?;
    match host.parse::<IpAddr>() {
        Ok(ip) => refuse_if_private(ip),
        Err(_) => Ok(()),
    }
}

/// A resolver that drops addresses that are not globally routable, so a name that changed to point inward after the
/// stream was saved is still refused.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_private(a.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(format!(
                    "{host} resolves only to addresses that are not globally routable, which streams reach only with {ALLOW_FLAG}"
                )
                .into());
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The certificates of a PEM text, if it holds at least one and nothing unreadable.
pub fn certificates(pem: &str) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certificates = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    (!certificates.is_empty()).then_some(certificates)
}

/// The `User-Agent` of every delivery request.
pub const USER_AGENT: &str = concat!("trailmark/", env!("CARGO_PKG_VERSION"));

/// The client deliveries use, trusting Mozilla's roots and `trusted` (`--stream-ca-file`).
///
/// # Errors
///
/// If the TLS backend cannot be initialized.
pub fn client(
    allow_private: bool,
    trusted: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none());
    for certificate in trusted {
        builder = builder.add_root_certificate(reqwest::Certificate::from_der(certificate)?);
    }
    let builder = if allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(PublicOnly))
    };
    builder.build()
}

/// The outcome of a sent request (after [`check_destination`] for IP literals, which bypass the
/// resolver). Follows the usual HTTP retry rules (Vector's `retry_action`): 2xx delivered; 408,
/// 429 and 5xx (but 501) retried, honouring `Retry-After` in seconds; every other status means
/// the destination rejects the credentials or configuration.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str, delivered: usize) -> Outcome {
    let snippet: String = body.chars().take(300).collect();
    let reason = format!("{status}: {snippet}");
    if status.is_success() {
        Outcome::Delivered(delivered)
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
    {
        let after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Outcome::Retry { reason, after }
    } else {
        Outcome::Invalid(reason)
    }
}

/// A network failure (connection refused, timeout, TLS): always worth retrying.
pub fn network_failure(error: &reqwest::Error) -> Outcome {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    Outcome::Retry {
        reason,
        after: None,
    }
}

/// Why a TCP connection for a destination was not made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The guard refused it: the name resolves to no address a stream may reach.
    #[error(transparent)]
    Refused(DestinationError),
    #[error(transparent)]
    Io(std::io::Error),
}

/// How long a TCP connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection to `host:port` for a destination the HTTP client does not carry (syslog),
/// under the same guard as the client's resolver: unless `allow_private`, only globally
/// routable addresses are tried. The addresses are tried in the order the resolver gives them.
///
/// # Errors
///
/// [`ConnectError::Refused`] if every address is refused, [`ConnectError::Io`] if the name
/// does not resolve or no address answers.
pub async fn connect_tcp(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<tokio::net::TcpStream, ConnectError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(ConnectError::Io)?
        .collect();
    let allowed: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|address| allow_private || !is_private(address.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(match resolved.first() {
            Some(address) => ConnectError::Refused(refusal(address.ip())),
            None => ConnectError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host} resolves to no address"),
            )),
        });
    }
    let mut last = None;
    for address in allowed {
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => last = Some(error),
            Err(_) => {
                last = Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{address} did not answer within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                ));
            }
        }
    }
    Err(ConnectError::Io(last.unwrap_or_else(|| {
        std::io::Error::other("no address to connect to")
    })))
}

/// How a destination reads an answer: status, headers, body and the events the request held.
pub type Classify = fn(StatusCode, &HeaderMap, &str, usize) -> Outcome;

/// Sends `request`, holding `events` events, the way `cx` sends ([`Context::send`]: through
/// the stream's egress proxy, if any), and reads the answer with `classify`; a request that
/// gets no answer is retried unless the guard or the proxy refused it
/// ([`crate::egress::SendError::outcome`]).
pub async fn exchange(
    cx: &Context<'_>,
    request: reqwest::RequestBuilder,
    events: usize,
    classify: Classify,
) -> Outcome {
    match cx.send(request).await {
        Ok(response) => {
            let (status, headers) = (response.status(), response.headers().clone());
            let body = response.text().await.unwrap_or_default();
            classify(status, &headers, &body, events)
        }
        Err(error) => error.outcome(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each registry range at its edges (first and last address refused, the neighbours outside
    /// it allowed unless another range takes them), written out by hand rather than derived
    /// from the tables, so a wrong table entry fails here.
    #[test]
    fn ipv4_ranges_are_refused_exactly_to_their_edges() {
        let refused = [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.0",
            "10.255.255.255",
            "100.64.0.0",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.0.0",
            "169.254.169.254",
            "169.254.255.255",
            "172.16.0.0",
            "172.31.255.255",
            "192.0.0.0",
            "192.0.0.8",
            "192.0.0.11",
            "192.0.0.170",
            "192.0.0.255",
            "192.0.2.0",
            "192.0.2.255",
            "192.88.99.1",
            "192.168.0.0",
            "192.168.255.255",
            "198.18.0.0",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.7",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.0",
            "250.1.2.3",
            "255.255.255.254",
            "255.255.255.255",
        ];
        for ip in refused {
            assert!(is_private(ip.parse().expect("ip")), "{ip} must be refused");
        }
        let allowed = [
            "1.0.0.0",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "191.255.255.255",
            "192.0.0.9",
            "192.0.0.10",
            "192.0.1.0",
            "192.0.3.0",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "192.175.48.1",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
        ];
        for ip in allowed {
            assert!(!is_private(ip.parse().expect("ip")), "{ip} must be allowed");
        }
    }

    #[test]
    fn ipv6_ranges_and_embedded_ipv4_forms_are_decoded_and_refused() {
        let refused = [
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::2",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:7f00:1",
            "::ffff:0:808:808",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b::c0a8:101",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "100:0:0:1::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:1::4",
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db8::1",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "2002:7f00:1::",
            "2002:808:808::1",
            "3fff::1",
            "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            "feff::1",
            "ff02::1",
            "ff0e::1",
            "1000::1",
            "4000::1",
            "8000::1",
            "e000::1",
        ];
        for ip in refused {
            assert!(is_private(ip.parse().expect("ip")), "{ip} must be refused");
        }
        let allowed = [
            "2000::1",
            "2001:200::1",
            "2001:1::1",
            "2001:1::2",
            "2001:1::3",
            "2001:3::1",
            "2001:4:112::1",
            "2001:20::1",
            "2001:30::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2003::1",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "3ffe::1",
            "3fff:1000::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ];
        for ip in allowed {
            assert!(!is_private(ip.parse().expect("ip")), "{ip} must be allowed");
        }
    }

    #[test]
    fn refusals_name_the_range_and_the_carried_address() {
        let why = |ip: &str| {
            check_global(ip.parse().expect("ip"))
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(why("127.0.0.1"), "127.0.0.0/8 (loopback)");
        assert_eq!(
            why("::ffff:10.1.2.3"),
            "the IPv4-mapped form of 10.1.2.3, in 10.0.0.0/8 (private use)"
        );
        assert_eq!(
            why("64:ff9b::7f00:1"),
            "the NAT64 (64:ff9b::/96) form of 127.0.0.1, in 127.0.0.0/8 (loopback)"
        );
        assert_eq!(
            why("::127.0.0.1"),
            "::/96 (IPv4-compatible, deprecated), carrying 127.0.0.1"
        );
        assert_eq!(
            why("2002:c0a8:101::1"),
            "2002::/16 (6to4), carrying 192.168.1.1"
        );
        // Teredo inverts the client address: 0x3fff_fdd2 is !192.0.2.45.
        assert_eq!(
            why("2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            "2001::/32 (Teredo), carrying 192.0.2.45"
        );
    }

    #[tokio::test]
    async fn literal_and_resolved_private_destinations_are_refused_naming_the_flag() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://[::1]/x",
            "http://localhost/x",
            "http://[::ffff:7f00:1]/x",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
            "http://198.18.0.1/x",
            "http://0.0.0.0/x",
        ] {
            let error = check_destination(url, false).await.expect_err(url);
            assert!(
                matches!(error, DestinationError::Private { .. }),
                "{url}: {error}"
            );
            assert!(
                error.to_string().contains("--allow-private-destinations"),
                "{error}"
            );
            assert!(check_literal(url, false).is_err() || url.contains("localhost"));
        }
        assert!(check_destination("http://127.0.0.1/x", true).await.is_ok());
        assert!(matches!(
            check_destination("not a url", false).await,
            Err(DestinationError::BadUrl)
        ));
    }

    /// Raw TCP connections (syslog) pass the same guard: a name or address that reaches only
    /// private addresses is refused before any connection, unless the operator allowed them;
    /// a syslog target written as a URL is checked when saved like any other.
    #[tokio::test]
    async fn tcp_connections_refuse_private_addresses_unless_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        for host in ["127.0.0.1", "localhost", "[::ffff:7f00:1]"] {
            let refused = connect_tcp(host, port, false).await;
            assert!(
                matches!(
                    &refused,
                    Err(ConnectError::Refused(DestinationError::Private { .. }))
                ),
                "{host}: {refused:?}"
            );
        }
        assert!(connect_tcp("127.0.0.1", port, true).await.is_ok());
        assert!(matches!(
            check_destination(&format!("syslog-tls://127.0.0.1:{port}"), false).await,
            Err(DestinationError::Private { .. })
        ));
        assert!(check_literal("syslog-tls://[::1]:6514", false).is_err());
    }

    #[test]
    fn answers_are_classified_like_http_retry_rules() {
        let headers = HeaderMap::new();
        assert_eq!(
            classify(StatusCode::ACCEPTED, &headers, "", 3),
            Outcome::Delivered(3)
        );
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &headers, "", 3),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, "", 3),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &headers, "", 3),
            Outcome::Invalid(_)
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, &headers, "", 3),
            Outcome::Invalid(_)
        ));
        let mut retry_after = HeaderMap::new();
        retry_after.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &retry_after, "slow down", 1),
            Outcome::Retry {
                reason: "429 Too Many Requests: slow down".into(),
                after: Some(Duration::from_secs(7))
            }
        );
    }
}
