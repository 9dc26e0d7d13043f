//! Access tokens for a service-account key: Google's OAuth 2.0 flow for service accounts
//! ("Using OAuth 2.0 for Server to Server Applications"): a JWT assertion signed RS256 with the
//! key's `private_key`, header `{"alg":"RS256","typ":"JWT","kid":<private_key_id>}`, claims
//! `iss` = `client_email`, `scope` = [`SCOPE`], `aud` = the key's `token_uri`, `iat` = now and
//! `exp` = an hour later, POSTed form-encoded to `token_uri` as
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and `assertion=<jwt>`. The answer's
//! `access_token` is cached per key ([`Tokens`], a [`TokenCache`]) until
//! [`crate::oauth::REFRESH_MARGIN`] before its `expires_in`, and dropped early if the store
//! answers 401.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Outcome;
use crate::destination::Context;
use crate::oauth::{Fingerprint, Issuer, TokenCache};

/// Read and write objects, nothing more.
pub const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// Where Google's keys send assertions (used when a key names no `token_uri`).
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The grant type of the JWT-bearer flow (RFC 7523).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long an assertion is valid: Google accepts at most an hour.
const ASSERTION_LIFETIME_SECS: i64 = 3600;

/// Why a service-account key is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("service_account_json is not a JSON object")]
    NotJson,
    #[error("service_account_json is a '{0}' key, not a 'service_account' key")]
    WrongType(String),
    #[error("service_account_json has no {0}")]
    Missing(&'static str),
    #[error(
        "service_account_json's private_key is not an RSA private key in PEM (PKCS#8 or PKCS#1)"
    )]
    PrivateKey,
    #[error("service_account_json's token_uri must be an http(s) URL")]
    TokenUri,
}

/// A parsed service-account key.
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub token_uri: String,
    key: RsaKeyPair,
    /// Identifies the key in the token cache without keeping its text.
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Parses the JSON key file Google issues for a service account.
    ///
    /// # Errors
    ///
    /// [`KeyError`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let Ok(Value::Object(key)) = serde_json::from_str::<Value>(text) else {
            return Err(KeyError::NotJson);
        };
        let field = |name: &'static str| {
            key.get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.trim().is_empty())
        };
        if let Some(kind) = field("type")
            && kind != "service_account"
        {
            return Err(KeyError::WrongType(kind.to_owned()));
        }
        let client_email = field("client_email").ok_or(KeyError::Missing("client_email"))?;
        let pem = field("private_key").ok_or(KeyError::Missing("private_key"))?;
        let token_uri = field("token_uri").unwrap_or(DEFAULT_TOKEN_URI);
        match reqwest::Url::parse(token_uri) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => return Err(KeyError::TokenUri),
        }
        Ok(ServiceAccount {
            client_email: client_email.to_owned(),
            private_key_id: field("private_key_id").map(str::to_owned),
            token_uri: token_uri.to_owned(),
            key: rsa_key(pem).ok_or(KeyError::PrivateKey)?,
            fingerprint: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// The signed JWT assertion for a token request made at `now_secs` (Unix seconds).
    pub fn assertion(&self, now_secs: i64) -> Option<String> {
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now_secs,
            "exp": now_secs + ASSERTION_LIFETIME_SECS,
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .ok()?;
        Some(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// Decodes a PEM RSA private key: PKCS#8 (`PRIVATE KEY`, what Google issues) or PKCS#1.
fn rsa_key(pem: &str) -> Option<RsaKeyPair> {
    let pkcs8 = pem.contains("-----BEGIN PRIVATE KEY-----");
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).ok()?;
    if pkcs8 {
        RsaKeyPair::from_pkcs8(&der).ok()
    } else {
        RsaKeyPair::from_der(&der).ok()
    }
}

/// Access tokens per service-account key, shared by every stream of this process.
#[derive(Default)]
pub struct Tokens(TokenCache);

impl Tokens {
    /// A valid access token for `account`: the cached one, or a new one from its `token_uri`.
    ///
    /// # Errors
    ///
    /// The outcome to record: [`Outcome::Invalid`] when the key cannot sign, the token endpoint
    /// refuses it (400/401/403…) or answers without a token, [`Outcome::Retry`] when it fails
    /// (429, 5xx, network).
    pub async fn get(&self, cx: &Context<'_>, account: &ServiceAccount) -> Result<String, Outcome> {
        let issuer = Issuer {
            endpoint: "the token endpoint",
            refused: format!(
                "the token endpoint refused the service account {}",
                account.client_email
            ),
        };
        self.0
            .get(cx, account.fingerprint, &issuer, || {
                let now_secs = trailmark_domain::Timestamp::now().unix_millis() / 1000;
                let assertion = account.assertion(now_secs).ok_or_else(|| {
                    Outcome::Invalid(
                        "cannot sign a token request with the service account's key".into(),
                    )
                })?;
                Ok(cx
                    .client
                    .post(&account.token_uri)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(token_request_body(&assertion)))
            })
            .await
    }

    /// Drops `account`'s token (the store refused it, so it may have been revoked).
    pub fn forget(&self, account: &ServiceAccount) {
        self.0.forget(&account.fingerprint);
    }
}

/// The form body of a token request (the assertion is base64url and dots: nothing to escape).
pub fn token_request_body(assertion: &str) -> String {
    format!(
        "grant_type={}&assertion={assertion}",
        GRANT_TYPE.replace(':', "%3A")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_field_by_field() {
        assert_eq!(
            ServiceAccount::parse("not json").err(),
            Some(KeyError::NotJson)
        );
        assert_eq!(
            ServiceAccount::parse(r#"{"type": "authorized_user"}"#).err(),
            Some(KeyError::WrongType("authorized_user".into()))
        );
        assert_eq!(
            ServiceAccount::parse(r#"{"type": "service_account", "private_key": "x"}"#).err(),
            Some(KeyError::Missing("client_email"))
        );
        assert_eq!(
            ServiceAccount::parse(
                r#"{"client_email": "a@b.iam.gserviceaccount.com", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#
            )
            .err(),
            Some(KeyError::PrivateKey)
        );
    }
}
