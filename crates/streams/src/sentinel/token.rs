//! Access tokens for the Logs Ingestion API: Microsoft Entra ID's OAuth 2.0 client-credentials
//! grant ("Microsoft identity platform and the OAuth 2.0 client credentials flow"):
//! `POST {authority}/{tenant_id}/oauth2/v2.0/token`, form-encoded
//! `grant_type=client_credentials`, `client_id`, `client_secret` and `scope` = [`SCOPE`]. The
//! answer's `access_token` is cached per application ([`Tokens`], as `gcs`'s service-account
//! tokens are) until [`REFRESH_MARGIN`] before its `expires_in`, and dropped early when the
//! ingestion endpoint refuses it. Lifetimes are measured on tokio's clock, so tests can run
//! them out on a paused one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::Config;
use crate::destination::Context;
use crate::{Outcome, net};

/// The Azure Monitor audience's default scope (the double slash is Azure's: the resource URI
/// `https://monitor.azure.com/` followed by `/.default`).
pub const SCOPE: &str = "https://monitor.azure.com//.default";
/// A token is replaced this long before it expires, so a request never carries one that runs
/// out on the way.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime assumed when the token endpoint does not say (Entra's tokens last an hour or more).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Access tokens per Entra application (authority, tenant, client id and secret), shared by
/// every stream of this process.
#[derive(Default)]
pub struct Tokens {
    cache: Mutex<HashMap<[u8; 32], CachedToken>>,
}

struct CachedToken {
    access_token: String,
    refresh_at: Instant,
}

/// Identifies an application's tokens in the cache without keeping its secret.
fn fingerprint(config: &Config) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [
        &config.authority,
        &config.tenant_id,
        &config.client_id,
        &config.client_secret,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().into()
}

impl Tokens {
    /// A valid access token for the stream's application: the cached one, or a new one.
    ///
    /// # Errors
    ///
    /// The outcome to record: [`Outcome::Invalid`] when Entra refuses the credentials
    /// (400/401: wrong secret, unknown client or tenant) or answers without a token,
    /// [`Outcome::Retry`] when it fails (429, 5xx, network).
    pub async fn get(&self, cx: &Context<'_>, config: &Config) -> Result<String, Outcome> {
        let key = fingerprint(config);
        if let Ok(cache) = self.cache.lock()
            && let Some(token) = cache.get(&key)
            && Instant::now() < token.refresh_at
        {
            return Ok(token.access_token.clone());
        }
        let request = cx.client.post(config.token_url()).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.as_str()),
            ("scope", SCOPE),
        ]);
        let response = cx
            .send(request)
            .await
            .map_err(|error| match error.outcome() {
                Outcome::Retry { reason, after } => Outcome::Retry {
                    reason: format!("the Entra token endpoint cannot be reached: {reason}"),
                    after,
                },
                other => other,
            })?;
        let (status, headers) = (response.status(), response.headers().clone());
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(match net::classify(status, &headers, &body, 0) {
                Outcome::Invalid(reason) => Outcome::Invalid(format!(
                    "Entra ID refused client_id {} of tenant {} (check client_secret): {reason}",
                    config.client_id, config.tenant_id
                )),
                Outcome::Retry { reason, after } => Outcome::Retry {
                    reason: format!("the Entra token endpoint failed: {reason}"),
                    after,
                },
                delivered => delivered,
            });
        }
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let Some(access_token) = answer["access_token"].as_str().filter(|t| !t.is_empty()) else {
            return Err(Outcome::Invalid(
                "the Entra token endpoint's answer holds no access_token".into(),
            ));
        };
        // Entra sends `expires_in` as a number; some proxies of it as a string.
        let lifetime = answer["expires_in"]
            .as_u64()
            .or_else(|| answer["expires_in"].as_str()?.parse().ok())
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                key,
                CachedToken {
                    access_token: access_token.to_owned(),
                    refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN),
                },
            );
        }
        Ok(access_token.to_owned())
    }

    /// Drops the application's token (the ingestion endpoint refused it: revoked, or its role
    /// assignment changed).
    pub fn forget(&self, config: &Config) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&fingerprint(config));
        }
    }
}
