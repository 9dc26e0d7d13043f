//! The credentials an `s3` stream signs with: its static keys, or the credentials Trailmark
//! itself runs with (the default chain, only if the operator lends them to streams:
//! `--aws-default-credentials`), either of which may assume the stream's `role_arn`.
//!
//! The default chain is AWS's usual order: the environment's keys, a web identity token file
//! (`AssumeRoleWithWebIdentity`, as EKS's IAM roles for service accounts provide it), the
//! container credentials endpoint (ECS, EKS Pod Identity), then the instance metadata service
//! with IMDSv2 (a session token from `PUT /latest/api/token`, then the role's credentials).
//! What the chain is made of is read from the environment by the CLI
//! ([`DefaultChain::from_environment`] takes the lookup), so this crate reads no variables.
//!
//! Temporary credentials are cached process-wide ([`Cache`], in [`crate::destination::Shared`])
//! per source: per (role, external id, STS endpoint, base credentials) for `AssumeRole`, and
//! once for the chain; they are replaced [`REFRESH_MARGIN_MILLIS`] before they expire, on the
//! workers' clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use trailmark_domain::Timestamp;

use super::config::{Config, Role};
use super::sts;
use crate::Outcome;
use crate::destination::Context;

/// Temporary credentials are replaced this long before they expire, so no request carries
/// credentials that run out on the way, and a slow STS has minutes to answer.
pub const REFRESH_MARGIN_MILLIS: i64 = 5 * 60 * 1000;
/// The IMDSv2 session token's lifetime asked for (the most IMDS grants).
const IMDS_TOKEN_TTL_SECONDS: &str = "21600";
/// How long a metadata or container endpoint may take: both are local to the host.
const LOCAL_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(5);
/// The ECS container credentials host (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is a path on it).
pub const CONTAINER_HOST: &str = "http://169.254.170.2";
/// The instance metadata service.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// AWS credentials; temporary ones carry a session token and an expiry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub expiration: Option<Timestamp>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Long-lived keys.
    pub fn fixed(access_key_id: &str, secret_access_key: &str) -> Self {
        Credentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: None,
            expiration: None,
        }
    }

    /// Identifies them in a cache key without keeping the secret in clear.
    fn fingerprint(&self) -> String {
        let digest = Sha256::digest(
            format!(
                "{}\0{}\0{}",
                self.access_key_id,
                self.secret_access_key,
                self.session_token.as_deref().unwrap_or_default()
            )
            .as_bytes(),
        );
        super::sigv4::hex(&digest)
    }
}

/// What the default credential chain is made of, as the CLI read it from the environment. A
/// source left `None` is skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefaultChain {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub environment: Option<Credentials>,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`.
    pub web_identity: Option<WebIdentity>,
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `…_FULL_URI`.
    pub container: Option<Container>,
    /// The metadata service's address: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else
    /// [`IMDS_ENDPOINT`]; `None` when `AWS_EC2_METADATA_DISABLED` is `true`.
    pub instance_metadata: Option<String>,
}

/// A web identity token file and the role it is exchanged for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebIdentity {
    pub token_file: PathBuf,
    pub role_arn: String,
    /// `AWS_ROLE_SESSION_NAME`, else `trailmark`.
    pub session_name: String,
    /// `AWS_ENDPOINT_URL_STS`, else the regional endpoint of `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`), else the global one.
    pub sts_endpoint: String,
    /// The region the STS call is signed for (it is unsigned, but the endpoint's region).
    pub region: String,
}

/// The container credentials endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub url: String,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    pub authorization: Option<String>,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read at each fetch: EKS rotates it).
    pub authorization_file: Option<PathBuf>,
}

impl DefaultChain {
    /// The chain the environment describes, `var` looking a variable up (the CLI passes
    /// `std::env::var`).
    pub fn from_environment(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let environment = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: var("AWS_SESSION_TOKEN"),
                expiration: None,
            }),
            _ => None,
        };
        let region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
        let web_identity = match (var("AWS_WEB_IDENTITY_TOKEN_FILE"), var("AWS_ROLE_ARN")) {
            (Some(token_file), Some(role_arn)) => Some(WebIdentity {
                token_file: token_file.into(),
                role_arn,
                session_name: var("AWS_ROLE_SESSION_NAME")
                    .map_or_else(|| "trailmark".to_owned(), |name| sts::session_name(&name)),
                sts_endpoint: var("AWS_ENDPOINT_URL_STS")
                    .or_else(|| var("AWS_ENDPOINT_URL"))
                    .or_else(|| {
                        region
                            .as_ref()
                            .map(|r| format!("https://sts.{r}.amazonaws.com"))
                    })
                    .unwrap_or_else(|| "https://sts.amazonaws.com".to_owned()),
                region: region.clone().unwrap_or_else(|| "us-east-1".to_owned()),
            }),
            _ => None,
        };
        let container = var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .map(|path| format!("{CONTAINER_HOST}{path}"))
            .or_else(|| var("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
            .map(|url| Container {
                url,
                authorization: var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
                authorization_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(Into::into),
            });
        let disabled =
            var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let instance_metadata = (!disabled).then(|| {
            var("AWS_EC2_METADATA_SERVICE_ENDPOINT").map_or_else(
                || IMDS_ENDPOINT.to_owned(),
                |e| e.trim_end_matches('/').to_owned(),
            )
        });
        DefaultChain {
            environment,
            web_identity,
            container,
            instance_metadata,
        }
    }

    /// The chain's first source's credentials.
    async fn fetch(&self, now: Timestamp) -> Result<Credentials, Outcome> {
        if let Some(keys) = &self.environment {
            return Ok(keys.clone());
        }
        // The chain's endpoints are the operator's (link-local metadata services, the host's
        // STS), not a stream's: they pass no private-destination guard and no proxy.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(LOCAL_ENDPOINT_TIMEOUT)
            .build()
            .map_err(|e| retry(format!("cannot build an HTTP client: {e}")))?;
        if let Some(web) = &self.web_identity {
            let token = tokio::fs::read_to_string(&web.token_file)
                .await
                .map_err(|e| {
                    Outcome::Invalid(format!(
                        "cannot read the web identity token file {}: {e}",
                        web.token_file.display()
                    ))
                })?;
            let body = sts::web_identity_body(&web.role_arn, &web.session_name, token.trim());
            return sts::call(
                sts::Caller::Operator(&client),
                &web.sts_endpoint,
                &web.region,
                "AssumeRoleWithWebIdentity",
                body,
                None,
                now,
            )
            .await;
        }
        if let Some(container) = &self.container {
            let mut request = client.get(&container.url);
            let authorization = match &container.authorization_file {
                Some(file) => Some(tokio::fs::read_to_string(file).await.map_err(|e| {
                    Outcome::Invalid(format!(
                        "cannot read the container authorization token file {}: {e}",
                        file.display()
                    ))
                })?),
                None => container.authorization.clone(),
            };
            if let Some(token) = authorization {
                request = request.header("authorization", token.trim());
            }
            let body = local_get(request, "the container credentials endpoint").await?;
            return parse_local_credentials(&body)
                .map_err(|e| retry(format!("the container credentials endpoint: {e}")));
        }
        if let Some(endpoint) = &self.instance_metadata {
            return instance_metadata(&client, endpoint).await;
        }
        Err(Outcome::Invalid(
            "no AWS credentials: no access keys are set and Trailmark's environment gives none \
             (keys, web identity, container or instance metadata)"
                .into(),
        ))
    }
}

/// IMDSv2: a session token, the instance role's name, then its credentials.
async fn instance_metadata(
    client: &reqwest::Client,
    endpoint: &str,
) -> Result<Credentials, Outcome> {
    let token = local_get(
        client.put(format!("{endpoint}/latest/api/token")).header(
            "x-aws-ec2-metadata-token-ttl-seconds",
            IMDS_TOKEN_TTL_SECONDS,
        ),
        "the instance metadata service (token)",
    )
    .await?;
    let roles_url = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
    let roles = local_get(
        client
            .get(&roles_url)
            .header("x-aws-ec2-metadata-token", token.trim()),
        "the instance metadata service",
    )
    .await?;
    let Some(role) = roles.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Err(Outcome::Invalid(
            "the instance has no IAM role (instance metadata lists none)".into(),
        ));
    };
    let body = local_get(
        client
            .get(format!("{roles_url}{role}"))
            .header("x-aws-ec2-metadata-token", token.trim()),
        "the instance metadata service",
    )
    .await?;
    parse_local_credentials(&body).map_err(|e| retry(format!("the instance metadata service: {e}")))
}

/// The body of a successful answer from a metadata endpoint.
async fn local_get(request: reqwest::RequestBuilder, what: &str) -> Result<String, Outcome> {
    let response = request
        .send()
        .await
        .map_err(|e| retry(format!("{what} cannot be reached: {e}")))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(body)
    } else {
        let snippet: String = body.chars().take(200).collect();
        Err(retry(format!("{what} answered {status}: {snippet}")))
    }
}

fn retry(reason: String) -> Outcome {
    Outcome::Retry {
        reason,
        after: None,
    }
}

/// The JSON the container endpoint and instance metadata answer:
/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "Code"?}`.
///
/// # Errors
///
/// What is missing or malformed.
pub fn parse_local_credentials(body: &str) -> Result<Credentials, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|_| "the answer is not JSON".to_owned())?;
    if let Some(code) = value["Code"].as_str()
        && code != "Success"
    {
        return Err(format!(
            "the answer's Code is {code}: {}",
            value["Message"].as_str().unwrap_or_default()
        ));
    }
    let field = |name: &str| {
        value[name]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("the answer holds no {name}"))
    };
    let expiration = match value["Expiration"].as_str() {
        Some(text) => Some(
            Timestamp::parse(text)
                .map_err(|_| format!("the answer's Expiration '{text}' is not a date-time"))?,
        ),
        None => None,
    };
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: value["Token"].as_str().map(str::to_owned),
        expiration,
    })
}

/// When credentials that expire at `expiration`, received when the wall clock read `real_now`
/// and the workers' clock `clock_now`, are to be replaced, on the workers' clock: their
/// remaining lifetime less [`REFRESH_MARGIN_MILLIS`]. Measured from the wall clock because
/// `expiration` is AWS's time; scheduled on the workers' clock so tests can move it.
pub fn refresh_at(expiration: Timestamp, real_now: Timestamp, clock_now: Timestamp) -> Timestamp {
    clock_now.plus_millis(expiration.unix_millis() - real_now.unix_millis() - REFRESH_MARGIN_MILLIS)
}

/// Temporary credentials, shared by every stream of this process.
#[derive(Default)]
pub struct Cache(Mutex<HashMap<String, Cached>>);

struct Cached {
    credentials: Credentials,
    refresh_at: Timestamp,
}

impl Cache {
    fn fresh(&self, key: &str, now: Timestamp) -> Option<Credentials> {
        let cache = self.0.lock().ok()?;
        cache
            .get(key)
            .filter(|cached| now < cached.refresh_at)
            .map(|cached| cached.credentials.clone())
    }

    /// Keeps `credentials` if they expire; long-lived ones are not worth a cache entry.
    fn keep(&self, key: String, credentials: &Credentials, now: Timestamp) {
        let Some(expiration) = credentials.expiration else {
            return;
        };
        if let Ok(mut cache) = self.0.lock() {
            cache.insert(
                key,
                Cached {
                    credentials: credentials.clone(),
                    refresh_at: refresh_at(expiration, Timestamp::now(), now),
                },
            );
        }
    }

    /// Drops the credentials kept under `key` (S3 refused them: revoked, or expired early).
    pub fn forget(&self, key: &str) {
        if let Ok(mut cache) = self.0.lock() {
            cache.remove(key);
        }
    }
}

/// The key the chain's credentials are cached under.
const CHAIN_KEY: &str = "default-chain";

/// The credentials a stream signs with, and the cache key they came from (temporary ones).
///
/// # Errors
///
/// The outcome to record: [`Outcome::Invalid`] when no credentials may be used or STS refuses
/// the role, [`Outcome::Retry`] when a source cannot be reached or is busy.
pub async fn for_stream(
    cx: &Context<'_>,
    config: &Config,
) -> Result<(Credentials, Option<String>), Outcome> {
    let cache = cx.shared.get::<Cache>();
    let now = cx.clock.now();
    let (base, base_key) = match (&config.keys, cx.aws_default_chain) {
        (Some(keys), _) => (
            Credentials::fixed(&keys.access_key_id, &keys.secret_access_key),
            None,
        ),
        (None, Some(chain)) => match cache.fresh(CHAIN_KEY, now) {
            Some(credentials) => (credentials, Some(CHAIN_KEY.to_owned())),
            None => {
                let credentials = chain.fetch(Timestamp::now()).await?;
                cache.keep(CHAIN_KEY.into(), &credentials, now);
                (credentials, Some(CHAIN_KEY.to_owned()))
            }
        },
        (None, None) => {
            return Err(Outcome::Invalid(
                "config.access_key_id: no access keys are set, and this Trailmark does not lend \
                 its own AWS credentials to streams (the operator's --aws-default-credentials)"
                    .into(),
            ));
        }
    };
    let Some(role) = &config.role else {
        return Ok((base, base_key));
    };
    let key = role_key(role, &base);
    if let Some(credentials) = cache.fresh(&key, now) {
        return Ok((credentials, Some(key)));
    }
    let body = sts::assume_role_body(
        &role.arn,
        &sts::session_name(&format!("trailmark-{}", cx.stream_id)),
        role.external_id.as_deref(),
    );
    let assumed = sts::call(
        sts::Caller::Stream(cx),
        &role.sts_endpoint,
        &config.bucket.region,
        "AssumeRole",
        body,
        Some(&base),
        // Signatures carry the real time (AWS allows 15 minutes of skew), whatever the
        // workers' clock says about expiry.
        Timestamp::now(),
    )
    .await
    .map_err(|outcome| match outcome {
        Outcome::Invalid(reason) => Outcome::Invalid(format!("{reason} (role_arn {})", role.arn)),
        other => other,
    })?;
    cache.keep(key.clone(), &assumed, now);
    Ok((assumed, Some(key)))
}

/// The cache key of a role assumed with `base`.
fn role_key(role: &Role, base: &Credentials) -> String {
    format!(
        "role\0{}\0{}\0{}\0{}",
        role.arn,
        role.external_id.as_deref().unwrap_or_default(),
        role.sts_endpoint,
        base.fingerprint()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_replaced_five_minutes_before_they_expire() {
        let real = Timestamp::parse("2026-12-06T10:00:00Z").expect("time");
        let hour_later = real.plus_millis(3_600_000);
        assert_eq!(
            refresh_at(hour_later, real, real).to_string(),
            "2026-12-06T10:55:00.000Z"
        );
        // The workers' clock may read otherwise (a test moved it): the lifetime left counts.
        let clock = Timestamp::parse("2030-01-01T00:00:00Z").expect("time");
        assert_eq!(
            refresh_at(hour_later, real, clock).to_string(),
            "2030-01-01T00:55:00.000Z"
        );
        let cache = Cache::default();
        let temporary = Credentials {
            expiration: Some(Timestamp::now().plus_millis(3_600_000)),
            ..Credentials::fixed("ASIAEXAMPLE", "secret")
        };
        cache.keep("role".into(), &temporary, clock);
        assert!(
            cache
                .fresh("role", clock.plus_millis(54 * 60_000))
                .is_some()
        );
        assert!(
            cache
                .fresh("role", clock.plus_millis(56 * 60_000))
                .is_none()
        );
        cache.keep(
            "keys".into(),
            &Credentials::fixed("AKIAEXAMPLE", "secret"),
            clock,
        );
        assert!(
            cache.fresh("keys", clock).is_none(),
            "long-lived keys are not cached"
        );
    }

    #[test]
    fn the_chain_is_read_from_the_variables_given() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let chain = DefaultChain::from_environment(vars(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/trailmark"),
            ("AWS_REGION", "eu-west-1"),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/abc",
            ),
        ]));
        assert_eq!(chain.environment, None);
        let web = chain.web_identity.expect("web identity");
        assert_eq!(web.sts_endpoint, "https://sts.eu-west-1.amazonaws.com");
        assert_eq!(web.session_name, "trailmark");
        assert_eq!(
            chain.container.map(|c| c.url),
            Some("http://169.254.170.2/v2/credentials/abc".to_owned())
        );
        assert_eq!(chain.instance_metadata.as_deref(), Some(IMDS_ENDPOINT));
        let chain = DefaultChain::from_environment(vars(&[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]));
        assert_eq!(
            chain.environment,
            Some(Credentials::fixed("AKIAEXAMPLE", "secret"))
        );
        assert_eq!(chain.instance_metadata, None);
        let chain = DefaultChain::from_environment(vars(&[(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            "http://127.0.0.1:8111/",
        )]));
        assert_eq!(
            chain.instance_metadata.as_deref(),
            Some("http://127.0.0.1:8111")
        );
    }

    #[test]
    fn metadata_answers_are_read_and_failures_named() {
        let credentials = parse_local_credentials(
            r#"{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"secret","Token":"token","Expiration":"2026-12-06T16:00:00Z"}"#,
        )
        .expect("credentials");
        assert_eq!(credentials.session_token.as_deref(), Some("token"));
        assert_eq!(
            credentials.expiration.map(|t| t.to_string()),
            Some("2026-12-06T16:00:00.000Z".into())
        );
        assert_eq!(
            parse_local_credentials(r#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"no"}"#),
            Err("the answer's Code is AssumeRoleUnauthorizedAccess: no".into())
        );
        assert_eq!(
            parse_local_credentials(r#"{"AccessKeyId":"a"}"#),
            Err("the answer holds no SecretAccessKey".into())
        );
    }
}
