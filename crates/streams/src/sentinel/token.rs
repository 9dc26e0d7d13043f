//! Access tokens for the Logs Ingestion API: Microsoft Entra ID's OAuth 2.0 client-credentials
//! grant ("Microsoft identity platform and the OAuth 2.0 client credentials flow"):
//! `POST {authority}/{tenant_id}/oauth2/v2.0/token`, form-encoded
//! `grant_type=client_credentials`, `client_id`, `client_secret` and `scope` = [`SCOPE`]. The
//! answer's `access_token` is cached per application ([`Tokens`], a [`TokenCache`] as `gcs`'s
//! service-account tokens are) until [`crate::oauth::REFRESH_MARGIN`] before its `expires_in`,
//! and dropped early when the ingestion endpoint refuses it.

use sha2::{Digest, Sha256};

use super::Config;
use crate::Outcome;
use crate::destination::Context;
use crate::oauth::{Fingerprint, Issuer, TokenCache};

/// The Azure Monitor audience's default scope (the double slash is Azure's: the resource URI
/// `https://monitor.azure.com/` followed by `/.default`).
pub const SCOPE: &str = "https://monitor.azure.com//.default";

/// Access tokens per Entra application (authority, tenant, client id and secret), shared by
/// every stream of this process.
#[derive(Default)]
pub struct Tokens(TokenCache);

/// Identifies an application's tokens in the cache without keeping its secret.
fn fingerprint(config: &Config) -> Fingerprint {
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
        let issuer = Issuer {
            endpoint: "the Entra token endpoint",
            refused: format!(
                "Entra ID refused client_id {} of tenant {} (check client_secret)",
                config.client_id, config.tenant_id
            ),
        };
        self.0
            .get(cx, fingerprint(config), &issuer, || {
                Ok(cx.client.post(config.token_url()).form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", config.client_id.as_str()),
                    ("client_secret", config.client_secret.as_str()),
                    ("scope", SCOPE),
                ]))
            })
            .await
    }

    /// Drops the application's token (the ingestion endpoint refused it: revoked, or its role
    /// assignment changed).
    pub fn forget(&self, config: &Config) {
        self.0.forget(&fingerprint(config));
    }
}
