//! Optional OpenID Connect sign-in to the console, with any standard provider: discovery
//! (`{issuer}/.well-known/openid-configuration`, OpenID Connect Discovery 1.0 §4), the
//! authorization code flow with PKCE (RFC 7636, `S256`), `state` (checked by the adapter
//! against its cookie) and `nonce`, and the ID token's RS256 signature checked against the
//! provider's JWKS (RFC 7517) before any claim is believed (OpenID Connect Core 1.0 §3.1.3.7:
//! `iss`, `aud`, `azp`, `exp`, `nonce`).
//!
//! The provider says who someone is; Trailmark still says who may operate it: the ID token's
//! `email` (with `email_verified` true) must be an operator's made with `trailmark operators
//! create`. The session and the record are then those of a password sign-in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use trailmark_domain::Timestamp;
use trailmark_store::NewOperatorSession;

use crate::audit::Origin;
use crate::console::{SignIn, normalize_email};
use crate::{AppError, Trailmark};

/// How far a provider's clock may run ahead of ours for `iat`/`exp`.
const CLOCK_SKEW_SECONDS: i64 = 60;

/// The console's OpenID Connect client, as configured (`--console-oidc-*`).
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer's URL, exactly as its ID tokens' `iss` says it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// `{public_url}/console/oidc/callback`, registered with the provider.
    pub redirect_uri: String,
}

impl std::fmt::Debug for OidcSettings {
    /// The client secret never appears.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// What one sign-in attempt carries from its start to the callback (in the adapter's cookie).
pub struct OidcAttempt {
    pub state: String,
    pub nonce: String,
    /// The PKCE code verifier; the provider sees only its S256 challenge.
    pub verifier: String,
}

/// The endpoints discovery gave.
struct Provider {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    /// Where the e-mail is when the ID token does not carry it (Core §5.3).
    userinfo_endpoint: Option<String>,
}

fn refused(reason: impl Into<String>) -> AppError {
    AppError::field("invalid_value", "id_token", reason.into())
}

fn text(value: &Value, name: &str) -> Result<String, AppError> {
    value[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| refused(format!("the provider's answer has no '{name}'")))
}

/// The PKCE S256 challenge of `verifier`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Trailmark {
    async fn discover(&self, settings: &OidcSettings) -> Result<Provider, AppError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            settings.issuer.trim_end_matches('/')
        );
        let document: Value = self.oidc_get(&url).await?;
        let provider = Provider {
            issuer: text(&document, "issuer")?,
            authorization_endpoint: text(&document, "authorization_endpoint")?,
            token_endpoint: text(&document, "token_endpoint")?,
            jwks_uri: text(&document, "jwks_uri")?,
            userinfo_endpoint: document["userinfo_endpoint"].as_str().map(str::to_owned),
        };
        // Discovery §4.3: the document must be the configured issuer's own.
        if provider.issuer != settings.issuer {
            return Err(refused(format!(
                "the discovery document names the issuer '{}', not '{}'",
                provider.issuer, settings.issuer
            )));
        }
        Ok(provider)
    }

    async fn oidc_get(&self, url: &str) -> Result<Value, AppError> {
        let response = self
            .oidc_http()
            .get(url)
            .send()
            .await
            .map_err(|e| AppError::Unavailable(format!("the OpenID provider: {e}")))?;
        if !response.status().is_success() {
            return Err(AppError::Unavailable(format!(
                "the OpenID provider answered {} for {url}",
                response.status()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| AppError::Unavailable(format!("the OpenID provider's answer: {e}")))
    }

    fn oidc_http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    }

    /// Where to send the browser to sign in: the provider's authorization endpoint with the
    /// client, the redirect URI, `openid email`, `state`, `nonce` and the PKCE challenge.
    ///
    /// # Errors
    ///
    /// [`AppError::Unavailable`] if discovery fails.
    pub async fn oidc_authorization_url(
        &self,
        settings: &OidcSettings,
        attempt: &OidcAttempt,
    ) -> Result<String, AppError> {
        let provider = self.discover(settings).await?;
        let query = [
            ("response_type", "code"),
            ("client_id", settings.client_id.as_str()),
            ("redirect_uri", settings.redirect_uri.as_str()),
            ("scope", "openid email"),
            ("state", attempt.state.as_str()),
            ("nonce", attempt.nonce.as_str()),
            ("code_challenge", &pkce_challenge(&attempt.verifier)),
            ("code_challenge_method", "S256"),
        ];
        let mut url = reqwest::Url::parse(&provider.authorization_endpoint)
            .map_err(|e| refused(format!("the authorization endpoint is not a URL: {e}")))?;
        url.query_pairs_mut().extend_pairs(query);
        Ok(url.into())
    }

    /// Finishes a sign-in: exchanges `code` (with the PKCE verifier) for an ID token, checks
    /// it, and signs in the operator whose e-mail it carries, as [`Trailmark::sign_in`] does
    /// for a password (`Refused` when no operator has that e-mail).
    ///
    /// # Errors
    ///
    /// A problem naming `id_token` when the token fails a check, [`AppError::Unavailable`] when
    /// the provider cannot be reached, storage errors.
    pub async fn sign_in_with_oidc(
        &self,
        settings: &OidcSettings,
        attempt: &OidcAttempt,
        code: &str,
        (address, user_agent): (String, Option<String>),
        mut session: NewOperatorSession,
    ) -> Result<SignIn, AppError> {
        let provider = self.discover(settings).await?;
        let response = self
            .oidc_http()
            .post(&provider.token_endpoint)
            .basic_auth(&settings.client_id, Some(&settings.client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", settings.redirect_uri.as_str()),
                ("code_verifier", attempt.verifier.as_str()),
            ])
            .send()
            .await
            .map_err(|e| AppError::Unavailable(format!("the OpenID provider: {e}")))?;
        if !response.status().is_success() {
            return Err(refused(format!(
                "the provider refused the code ({})",
                response.status()
            )));
        }
        let tokens: Value = response
            .json()
            .await
            .map_err(|e| refused(format!("the token answer is not JSON: {e}")))?;
        let id_token = text(&tokens, "id_token")?;
        let jwks = self.oidc_get(&provider.jwks_uri).await?;
        let claims = verify_id_token(&id_token, &jwks)?;
        check_claims(
            &claims,
            &provider.issuer,
            &settings.client_id,
            &attempt.nonce,
        )?;
        // Providers may keep scope claims for the UserInfo endpoint (Core §5.4): ask it, and
        // believe it only about the ID token's own subject (§5.3.2).
        let claims = match (&provider.userinfo_endpoint, claims.get("email")) {
            (Some(userinfo), None) => {
                let access_token = text(&tokens, "access_token")?;
                let response = self
                    .oidc_http()
                    .get(userinfo)
                    .bearer_auth(access_token)
                    .send()
                    .await
                    .map_err(|e| AppError::Unavailable(format!("the OpenID provider: {e}")))?;
                let info: Value = response
                    .json()
                    .await
                    .map_err(|e| refused(format!("the UserInfo answer is not JSON: {e}")))?;
                if info["sub"] != claims["sub"] {
                    return Err(refused("the UserInfo answer is about another subject"));
                }
                info
            }
            _ => claims,
        };
        let email = match (claims["email"].as_str(), claims["email_verified"].as_bool()) {
            (Some(email), Some(true)) => normalize_email(email).ok(),
            _ => None,
        };
        let operator = match &email {
            Some(email) => self.store().find_operator(email).await?,
            None => None,
        };
        let tried = email.clone().unwrap_or_else(|| "unknown".into());
        let Some(operator) = operator else {
            let origin = Origin::Operator {
                operator_id: "unknown".into(),
                email: tried.clone(),
                address,
                user_agent,
            };
            self.record_operator_action(
                &origin,
                "trailmark.console.sign_in_failed",
                json!({"id": "console", "type": "console"}),
                json!({"email": tried, "method": "oidc", "issuer": provider.issuer}),
            )
            .await?;
            return Ok(SignIn::Refused);
        };
        session.operator_id = operator.id.clone();
        self.store()
            .insert_operator_session(session.clone())
            .await?;
        let origin = Origin::Operator {
            operator_id: operator.id.clone(),
            email: operator.email.clone(),
            address,
            user_agent,
        };
        self.record_operator_action(
            &origin,
            "trailmark.console.signed_in",
            json!({"id": session.id, "type": "console_session"}),
            json!({"method": "oidc", "issuer": provider.issuer}),
        )
        .await?;
        Ok(SignIn::Opened(trailmark_store::OperatorSession {
            id: session.id,
            operator_id: operator.id,
            email: operator.email,
            csrf_token: session.csrf_token,
            created_at: session.created_at,
            expires_at: session.expires_at,
        }))
    }
}

fn decode_json(part: &str, what: &str) -> Result<Value, AppError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| refused(format!("the ID token's {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| refused(format!("the ID token's {what} is not JSON")))
}

/// The ID token's claims, once its RS256 signature checked out against a key of `jwks`.
fn verify_id_token(token: &str, jwks: &Value) -> Result<Value, AppError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused("the ID token is not a signed JWT"));
    };
    let header_json = decode_json(header, "header")?;
    if header_json["alg"] != "RS256" {
        return Err(refused(format!(
            "the ID token is signed with {}, not RS256",
            header_json["alg"]
        )));
    }
    let kid = header_json["kid"].as_str();
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    let key = keys
        .iter()
        .filter(|key| key["kty"] == "RSA")
        .find(|key| kid.is_none_or(|kid| key["kid"] == kid))
        .ok_or_else(|| refused("no key of the provider's JWKS matches the ID token's"))?;
    let component = |name: &str| {
        key[name]
            .as_str()
            .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())
            .ok_or_else(|| refused(format!("the provider's key has no usable '{name}'")))
    };
    let public_key = RsaPublicKeyComponents {
        n: component("n")?,
        e: component("e")?,
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| refused("the ID token's signature is not base64url"))?;
    let signed = &token[..header.len() + 1 + payload.len()];
    public_key
        .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature)
        .map_err(|_| refused("the ID token's signature does not check out"))?;
    decode_json(payload, "payload")
}

/// Core §3.1.3.7: the token is this issuer's, for this client, current, and answers this
/// attempt's nonce.
fn check_claims(
    claims: &Value,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<(), AppError> {
    if claims["iss"] != issuer {
        return Err(refused("the ID token is another issuer's"));
    }
    let audience_ok = match &claims["aud"] {
        Value::String(aud) => aud == client_id,
        Value::Array(auds) => {
            auds.iter().any(|aud| aud == client_id)
                && (auds.len() == 1 || claims["azp"] == client_id)
        }
        _ => false,
    };
    if !audience_ok {
        return Err(refused("the ID token is for another client"));
    }
    let now = Timestamp::now().unix_millis() / 1000;
    if claims["exp"]
        .as_i64()
        .is_none_or(|exp| exp + CLOCK_SKEW_SECONDS <= now)
    {
        return Err(refused("the ID token has expired"));
    }
    if claims["nonce"] != nonce {
        return Err(refused("the ID token does not answer this sign-in (nonce)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s_example() {
        // RFC 7636, Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn claims_must_name_the_issuer_the_client_a_live_expiry_and_the_nonce() {
        let now = Timestamp::now().unix_millis() / 1000;
        let good = json!({"iss": "http://idp", "aud": "c", "exp": now + 60, "nonce": "n"});
        assert!(check_claims(&good, "http://idp", "c", "n").is_ok());
        for (field, value) in [
            ("iss", json!("http://other")),
            ("aud", json!("d")),
            ("aud", json!(["c", "d"])),
            ("exp", json!(now - 120)),
            ("nonce", json!("m")),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            assert!(check_claims(&bad, "http://idp", "c", "n").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_that_is_not_a_signed_jwt_is_refused_before_any_claim_is_read() {
        let jwks = json!({"keys": []});
        for token in ["", "a.b", "a.b.c.d", "e30.e30.c2ln"] {
            assert!(verify_id_token(token, &jwks).is_err(), "{token}");
        }
    }

    /// An RS256 token signed with a 2048-bit key made for this test (`openssl genrsa`), and
    /// that key's public half as a JWK.
    const SIGNED: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QtMSJ9.eyJpc3MiOiJodHRwOi8vaWRwLnRlc3QiLCJzdWIiOiJvcHMiLCJhdWQiOiJ0cmFpbG1hcmstY29uc29sZSIsImV4cCI6NDEwMjQ0NDgwMCwibm9uY2UiOiJuMSIsImVtYWlsIjoib3BzQGV4YW1wbGUudGVzdCIsImVtYWlsX3ZlcmlmaWVkIjp0cnVlfQ.ughVT0_J7zba_cQmpPP65Xtdv2luEaKEzOlBKm2SmcYcfte5W6zumqSpiPjMA83WTaWegYD-NTkxsvpv0mTcq4NAXHwex-p0uWxMD0D04eB5gkFhAzl2DQEogaylLx8l6Sh32GW_ZH6vEc9kdqO3gTNMS9EVVhxbOOvTfWutqJ1IekEtQ8HACmgZJkb2O7lNJHUZsc4RDm6sEPYT8n01YNiji3ygPlzdyItwCJFQYotMhYnzHmDDYGTVb1JJsj9H8wPkFxe3ql-FzXB49F_m_3aUXUE-9d7Ix2wU5us9wWpxH5_Ol7TWGbBURUiTO0_zY5e_AhieFHQwZs75lMXzhw";
    const MODULUS: &str = "0mig39ufYIo8JNvk2OR5gLTJAGPMQ0LHp7H8SoWLYZEBsQxxuvYUTcolrEfnUVp_FkXZS8Kjql-LZPBPXUYQaaNHcPE4goyaU3LihwhYtW3sGhddmc6pxmfHUXWpQ3QnkWboLozLiZflIkGqyLR3_ftXCqFhAkzocJJT-qPZO9uGVbrQ6MV-DaPf5iltJ644L7ofrwsJEBiwlDm2Lncdk7Fxc8-crGG3eqU8RloErcgbr8pdbVPW6DC6EIeyy-Zyf52faWbGxqpshV027P0ONR7LK0zlvvOZjNZQcy1uTNAGEklTZiCPZAACdWhZA6qvGfctNKfJKkjfG1MljFiQVw";

    fn jwks(kid: &str, n: &str) -> Value {
        json!({"keys": [{"kty": "RSA", "kid": kid, "e": "AQAB", "n": n}]})
    }

    #[test]
    fn an_id_token_is_believed_only_with_a_signature_from_the_providers_key() {
        let claims = verify_id_token(SIGNED, &jwks("test-1", MODULUS)).expect("a good signature");
        assert_eq!(claims["email"], "ops@example.test");
        assert!(check_claims(&claims, "http://idp.test", "trailmark-console", "n1").is_ok());
        // Another key id, another key, or one changed character of the payload: refused.
        assert!(verify_id_token(SIGNED, &jwks("test-2", MODULUS)).is_err());
        let mut other = MODULUS.to_owned();
        other.replace_range(10..11, if &MODULUS[10..11] == "A" { "B" } else { "A" });
        assert!(verify_id_token(SIGNED, &jwks("test-1", &other)).is_err());
        let (head, rest) = SIGNED.split_once('.').expect("parts");
        let forged_payload = URL_SAFE_NO_PAD.encode(
            br#"{"iss":"http://idp.test","sub":"root","aud":"trailmark-console","exp":4102444800,"nonce":"n1","email":"root@example.test","email_verified":true}"#,
        );
        let signature = rest.rsplit_once('.').expect("signature").1;
        let forged = format!("{head}.{forged_payload}.{signature}");
        assert!(verify_id_token(&forged, &jwks("test-1", MODULUS)).is_err());
    }
}
