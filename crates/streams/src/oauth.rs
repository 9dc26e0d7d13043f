//! OAuth 2.0 access tokens from a token endpoint (RFC 6749 §5), as the destinations that
//! authenticate with one need them: `gcs` (a service account's JWT-bearer grant) and `sentinel`
//! (Entra ID's client-credentials grant). Each builds its own token request; this module sends
//! it, reads the answer's `access_token` and `expires_in`, and keeps the token in a
//! [`TokenCache`] until [`REFRESH_MARGIN`] before it expires. Lifetimes are measured on tokio's
//! clock, so tests can run them out on a paused one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::destination::Context;
use crate::{Outcome, net};

/// A token is replaced this long before it expires, so a request never carries one that runs
/// out on the way.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime assumed when the token endpoint does not say (Google's and Entra's tokens last an
/// hour or more).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Identifies one set of credentials in a [`TokenCache`] (a hash of them, so the cache keeps no
/// secret).
pub type Fingerprint = [u8; 32];

/// How failures name the token endpoint and the credentials it was asked about.
pub struct Issuer<'a> {
    /// The endpoint as messages name it, e.g. "the token endpoint".
    pub endpoint: &'a str,
    /// What a refusal says before its reason, e.g. "the token endpoint refused the service
    /// account a@b" (so the operator knows which credential to fix).
    pub refused: String,
}

/// Access tokens per credentials, shared by every stream of this process.
#[derive(Default)]
pub struct TokenCache {
    cache: Mutex<HashMap<Fingerprint, CachedToken>>,
}

struct CachedToken {
    access_token: String,
    refresh_at: Instant,
}

impl TokenCache {
    /// A valid access token for the credentials `key`: the cached one, or a new one asked for
    /// with the request `build` makes (built only then: a JWT assertion is signed per request).
    ///
    /// # Errors
    ///
    /// `build`'s outcome, or [`fetch_token`]'s.
    pub async fn get(
        &self,
        cx: &Context<'_>,
        key: Fingerprint,
        issuer: &Issuer<'_>,
        build: impl FnOnce() -> Result<reqwest::RequestBuilder, Outcome>,
    ) -> Result<String, Outcome> {
        if let Some(token) = self.cached(&key) {
            return Ok(token);
        }
        let (access_token, lifetime) = fetch_token(cx, build()?, issuer).await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                key,
                CachedToken {
                    access_token: access_token.clone(),
                    refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN),
                },
            );
        }
        Ok(access_token)
    }

    fn cached(&self, key: &Fingerprint) -> Option<String> {
        let cache = self.cache.lock().ok()?;
        let token = cache.get(key)?;
        (Instant::now() < token.refresh_at).then(|| token.access_token.clone())
    }

    /// Drops the token of the credentials `key` (the destination refused it: it may have been
    /// revoked).
    pub fn forget(&self, key: &Fingerprint) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(key);
        }
    }
}

/// Sends a token request and reads the answer: the access token and how long it lasts.
///
/// # Errors
///
/// The outcome to record: [`Outcome::Invalid`] when the endpoint refuses the credentials
/// (400/401/403…) or answers without a token, [`Outcome::Retry`] when it fails (429, 5xx,
/// network).
pub async fn fetch_token(
    cx: &Context<'_>,
    request: reqwest::RequestBuilder,
    issuer: &Issuer<'_>,
) -> Result<(String, Duration), Outcome> {
    let endpoint = issuer.endpoint;
    let response = cx
        .send(request)
        .await
        .map_err(|error| match error.outcome() {
            Outcome::Retry { reason, after } => Outcome::Retry {
                reason: format!("{endpoint} cannot be reached: {reason}"),
                after,
            },
            other => other,
        })?;
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(match net::classify(status, &headers, &body, 0) {
            Outcome::Invalid(reason) => Outcome::Invalid(format!("{}: {reason}", issuer.refused)),
            Outcome::Retry { reason, after } => Outcome::Retry {
                reason: format!("{endpoint} failed: {reason}"),
                after,
            },
            delivered => delivered,
        });
    }
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(access_token) = answer["access_token"].as_str().filter(|t| !t.is_empty()) else {
        return Err(Outcome::Invalid(format!(
            "{endpoint}'s answer holds no access_token"
        )));
    };
    // RFC 6749 makes `expires_in` a number; some proxies of Entra send it as a string.
    let lifetime = answer["expires_in"]
        .as_u64()
        .or_else(|| answer["expires_in"].as_str()?.parse().ok())
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok((access_token.to_owned(), lifetime))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::StatusCode;
    use serde_json::json;

    use super::*;
    use crate::destination::Shared;
    use crate::format::EventFormat;

    /// What the stand-in token endpoint answers next, and how many tokens it issued.
    struct StandIn {
        answer: (StatusCode, String),
        grants: usize,
    }

    /// A token endpoint on loopback answering whatever the test set (stand-in: the parsing of
    /// its answer, not a grant, is under test here).
    async fn stand_in(state: Arc<Mutex<StandIn>>) -> String {
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move || async move {
                let mut state = state.lock().expect("state");
                state.grants += 1;
                let (status, body) = state.answer.clone();
                (status, body.replace("{n}", &state.grants.to_string()))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/token")
    }

    /// Tokens last their `expires_in` (here a string) less the margin on tokio's clock, are
    /// dropped by `forget`, and refusals and failures name the endpoint and the credentials.
    #[tokio::test(start_paused = true)]
    async fn tokens_are_cached_until_the_margin_and_failures_name_the_endpoint() {
        let answer = json!({"access_token": "token-{n}", "expires_in": "120"}).to_string();
        let state = Arc::new(Mutex::new(StandIn {
            answer: (StatusCode::OK, answer),
            grants: 0,
        }));
        let url = stand_in(Arc::clone(&state)).await;
        let (client, shared) = (
            crate::net::client(true, &[]).expect("client"),
            Shared::default(),
        );
        let cx = Context {
            stream_id: "log_stream_01TEST",
            client: &client,
            allow_private: true,
            proxy: None,
            shared: &shared,
            clock: &crate::worker::Clock::default(),
            aws_default_chain: None,
            format: EventFormat::Workos,
        };
        let issuer = Issuer {
            endpoint: "the test token endpoint",
            refused: "the test token endpoint refused key k".into(),
        };
        let cache = TokenCache::default();
        let get = |key: u8| cache.get(&cx, [key; 32], &issuer, || Ok(client.post(&url)));

        assert_eq!(get(1).await, Ok("token-1".into()));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(get(1).await, Ok("token-1".into()), "cached");
        assert_eq!(get(2).await, Ok("token-2".into()), "per credentials");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            get(1).await,
            Ok("token-3".into()),
            "refreshed a minute early"
        );
        cache.forget(&[1; 32]);
        assert_eq!(get(1).await, Ok("token-4".into()), "forgotten");

        cache.forget(&[1; 32]);
        let refusal = json!({"error": "invalid_client"}).to_string();
        state.lock().expect("state").answer = (StatusCode::UNAUTHORIZED, refusal);
        match get(1).await {
            Err(Outcome::Invalid(reason)) => assert!(
                reason.starts_with("the test token endpoint refused key k: ")
                    && reason.contains("401"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        state.lock().expect("state").answer = (StatusCode::SERVICE_UNAVAILABLE, String::new());
        match get(1).await {
            Err(Outcome::Retry { reason, .. }) => {
                assert!(
                    reason.starts_with("the test token endpoint failed: "),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        state.lock().expect("state").answer = (StatusCode::OK, json!({}).to_string());
        assert_eq!(
            get(1).await,
            Err(Outcome::Invalid(
                "the test token endpoint's answer holds no access_token".into()
            ))
        );
    }
}
