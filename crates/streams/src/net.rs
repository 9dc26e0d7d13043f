//! The network side of delivery: one HTTP client (TLS verified against the system's roots),
//! the guard that keeps streams off private networks, and the reading of a destination's answer.
//!
//! **Private destinations.** Unless the operator allowed them (`--allow-private-destinations`),
//! a destination whose host is, or resolves to, a loopback, private, link-local, unique-local,
//! carrier-grade-NAT or unspecified address is refused: when the stream is saved
//! ([`check_destination`]) and again at every connection (the client's resolver drops such
//! addresses), because DNS can change between the two.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::Outcome;

/// How long one delivery request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `ip` is an address a stream must not reach unless the operator allowed it.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b)) // 100.64.0.0/10, carrier-grade NAT
                || a == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // fc00::/7, unique local
                || (first & 0xffc0) == 0xfe80 // fe80::/10, link local
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("the destination URL is not valid")]
    BadUrl,
    #[error("the destination host cannot be resolved: {0}")]
    Unresolvable(String),
    #[error(
        "the destination {0} is a private, loopback or link-local address; the operator has not allowed private destinations"
    )]
    Private(IpAddr),
}

/// Checks that `url`'s host is not a private address (resolving it if it is a name).
///
/// # Errors
///
/// [`DestinationError`] saying why the destination is refused.
pub async fn check_destination(url: &str, allow_private: bool) -> Result<(), DestinationError> {
    if allow_private {
        return Ok(());
    }
    let url = reqwest::Url::parse(url).map_err(|_| DestinationError::BadUrl)?;
    let host = url
        .host_str()
        .ok_or(DestinationError::BadUrl)?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| DestinationError::Unresolvable(e.to_string()))?
            .map(|address| address.ip())
            .collect(),
    };
    match addresses.into_iter().find(|ip| is_private(*ip)) {
        Some(ip) => Err(DestinationError::Private(ip)),
        None => Ok(()),
    }
}

/// Refuses a destination whose host is written as a private IP address; names are left to the
/// resolver.
///
/// # Errors
///
/// [`DestinationError::Private`] or [`DestinationError::BadUrl`].
pub fn check_literal(url: &str, allow_private: bool) -> Result<(), DestinationError> {
    if allow_private {
        return Ok(());
    }
    let url = reqwest::Url::parse(url).map_err(|_| DestinationError::BadUrl)?;
    let host = url
        .host_str()
        .ok_or(DestinationError::BadUrl)?
        .trim_start_matches('[')
        .trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if is_private(ip) => Err(DestinationError::Private(ip)),
        _ => Ok(()),
    }
}

/// A resolver that drops private addresses, so a name that changed to point inward after the
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
                    "{host} resolves only to private addresses, which streams may not reach"
                )
                .into());
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The client deliveries use.
///
/// # Errors
///
/// If the TLS backend cannot be initialized.
pub fn client(allow_private: bool) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("trailmark/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_recognized() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(private.parse().expect("ip")), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private(public.parse().expect("ip")), "{public}");
        }
    }

    #[tokio::test]
    async fn literal_and_resolved_private_destinations_are_refused() {
        assert!(matches!(
            check_destination("http://127.0.0.1:9/x", false).await,
            Err(DestinationError::Private(_))
        ));
        assert!(matches!(
            check_destination("http://[::1]/x", false).await,
            Err(DestinationError::Private(_))
        ));
        assert!(matches!(
            check_destination("http://localhost/x", false).await,
            Err(DestinationError::Private(_))
        ));
        assert!(check_destination("http://127.0.0.1/x", true).await.is_ok());
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
