//! AWS Security Token Service, the two calls a stream needs: `AssumeRole` (a customer's role,
//! signed with the base credentials) and `AssumeRoleWithWebIdentity` (the default chain's web
//! identity token, unsigned). Both are Query API requests (`Action=…&Version=2011-06-15`,
//! form-encoded in a POST body); the answer is a small XML document read here by hand
//! ([`parse_credentials`], [`parse_error`]), and classified like a delivery's answer: STS
//! refusing (`AccessDenied`, a malformed role) makes the stream `invalid`, throttling and
//! failures are retried.

use trailmark_domain::Timestamp;

use super::credentials::Credentials;
use super::sigv4::{self, Request};
use crate::destination::Context;
use crate::{Outcome, net};

/// The Query API version both calls use.
const VERSION: &str = "2011-06-15";
/// How long assumed credentials last: AWS's default, and what every role allows.
pub const DURATION_SECONDS: u32 = 3600;
/// Error codes STS answers when it is busy rather than refusing (retried).
const RETRIED_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "IDPCommunicationError",
    "ServiceUnavailable",
    "InternalFailure",
];

/// The form body of an `AssumeRole` call.
pub fn assume_role_body(role_arn: &str, session_name: &str, external_id: Option<&str>) -> String {
    let duration = DURATION_SECONDS.to_string();
    let mut params = vec![
        ("Action", "AssumeRole"),
        ("DurationSeconds", duration.as_str()),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("Version", VERSION),
    ];
    if let Some(id) = external_id {
        params.push(("ExternalId", id));
    }
    form(&params)
}

/// The form body of an `AssumeRoleWithWebIdentity` call.
pub fn web_identity_body(role_arn: &str, session_name: &str, token: &str) -> String {
    let duration = DURATION_SECONDS.to_string();
    form(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("DurationSeconds", duration.as_str()),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("Version", VERSION),
        ("WebIdentityToken", token),
    ])
}

/// `name=value&…`, every byte but the unreserved ones percent-encoded.
fn form(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(name, value)| format!("{name}={}", percent(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A session name STS accepts (`[\w+=,.@-]`, at most 64 characters) for `name`.
pub fn session_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect()
}

/// The region an STS endpoint signs for: the one in a regional AWS host, `us-east-1` for the
/// global endpoint, else `fallback` (an emulator, a VPC endpoint).
pub fn signing_region(endpoint: &str, fallback: &str) -> String {
    let host = host_of(endpoint);
    if host == "sts.amazonaws.com" {
        return "us-east-1".into();
    }
    match host
        .strip_prefix("sts.")
        .and_then(|rest| rest.strip_suffix(".amazonaws.com"))
    {
        Some(region) if !region.contains('.') => region.to_owned(),
        _ => fallback.to_owned(),
    }
}

/// The `host[:port]` of `url`.
pub fn host_of(url: &str) -> &str {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default()
}

/// Why an STS answer holds no credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer holds no {0}")]
    Missing(&'static str),
    #[error("the answer's Expiration '{0}' is not a date-time")]
    Expiration(String),
}

/// The temporary credentials in a successful answer (`<Credentials>` of either call).
///
/// # Errors
///
/// An [`AnswerError`] naming what is missing.
pub fn parse_credentials(xml: &str) -> Result<Credentials, AnswerError> {
    let credentials = element(xml, "Credentials").ok_or(AnswerError::Missing("Credentials"))?;
    let field = |name: &'static str| {
        element(credentials, name)
            .map(unescape)
            .filter(|v| !v.trim().is_empty())
            .ok_or(AnswerError::Missing(name))
    };
    let expiration = field("Expiration")?;
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
        expiration: Some(
            Timestamp::parse(expiration.trim())
                .map_err(|_| AnswerError::Expiration(expiration.clone()))?,
        ),
    })
}

/// The `Code` and `Message` of an error answer (`<ErrorResponse><Error>…`).
pub fn parse_error(xml: &str) -> Option<(String, String)> {
    let error = element(xml, "Error")?;
    let code = element(error, "Code").map(unescape)?;
    let message = element(error, "Message").map(unescape).unwrap_or_default();
    Some((code, message))
}

/// The text between `<name>` (or `<name attr…>`) and `</name>`.
fn element<'x>(xml: &'x str, name: &str) -> Option<&'x str> {
    let mut from = 0;
    loop {
        let at = from + xml[from..].find(&format!("<{name}"))?;
        let after = &xml[at + 1 + name.len()..];
        let open_end = after.find('>')?;
        if matches!(
            after.as_bytes().first(),
            Some(b'>' | b' ' | b'\t' | b'\n' | b'\r')
        ) {
            let content = &after[open_end + 1..];
            let close = content.find(&format!("</{name}>"))?;
            return Some(&content[..close]);
        }
        from = at + 1;
    }
}

/// XML's five predefined entities and numeric references.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// What to record when STS answered `status` with `body` to `action`.
pub fn classify(action: &str, status: reqwest::StatusCode, body: &str) -> Outcome {
    let (code, message) =
        parse_error(body).unwrap_or_else(|| (status.to_string(), body.chars().take(300).collect()));
    let retried = status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || RETRIED_CODES.contains(&code.as_str());
    if retried {
        Outcome::Retry {
            reason: format!("{action} failed: {code}: {message}"),
            after: None,
        }
    } else {
        Outcome::Invalid(format!("{action} refused: {code}: {message}"))
    }
}

/// Who calls STS.
pub enum Caller<'a, 'b> {
    /// A stream, for its role: sent as the stream sends (its egress proxy, the guard).
    Stream(&'a Context<'b>),
    /// The operator's own credential chain (web identity): straight, with this client.
    Operator(&'a reqwest::Client),
}

/// Calls STS at `endpoint` with the form `body`, signed with `signer` when given.
///
/// # Errors
///
/// The outcome to record: [`Outcome::Invalid`] when STS refuses, [`Outcome::Retry`] when it
/// cannot be reached, is busy, or answers what cannot be read.
pub async fn call(
    caller: Caller<'_, '_>,
    endpoint: &str,
    region: &str,
    action: &str,
    body: String,
    signer: Option<&Credentials>,
    now: Timestamp,
) -> Result<Credentials, Outcome> {
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let client = match &caller {
        Caller::Stream(cx) => cx.client,
        Caller::Operator(client) => client,
    };
    let mut request = client
        .post(format!("{}/", endpoint.trim_end_matches('/')))
        .header("content-type", content_type);
    if let Some(signer) = signer {
        let headers = sigv4::sign(
            Request {
                method: "POST",
                host: host_of(endpoint),
                path: "/",
                region: &signing_region(endpoint, region),
                service: "sts",
                headers: vec![("content-type".into(), content_type.into())],
                body: body.as_bytes(),
            },
            signer,
            now,
        );
        for (name, value) in headers {
            if name != "content-type" {
                request = request.header(name, value);
            }
        }
    }
    let request = request.body(body);
    let sent = match caller {
        Caller::Stream(cx) => cx.send(request).await.map_err(|error| error.outcome()),
        Caller::Operator(_) => request
            .send()
            .await
            .map_err(|error| net::network_failure(&error)),
    };
    let response = sent.map_err(|outcome| match outcome {
        Outcome::Retry { reason, after } => Outcome::Retry {
            reason: format!("{action}: STS cannot be reached: {reason}"),
            after,
        },
        other => other,
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(classify(action, status, &text));
    }
    parse_credentials(&text).map_err(|error| Outcome::Retry {
        reason: format!("{action}: {error}"),
        after: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/demo/trailmark</Arn></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <SessionToken>AQoDYXdzEPT//////////wEXAMPLE&amp;+=</SessionToken>
      <Expiration>2026-12-06T17:15:45.428620Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
</AssumeRoleResponse>"#;

    #[test]
    fn credentials_are_read_from_the_answer() {
        let credentials = parse_credentials(ANSWER).expect("credentials");
        assert_eq!(credentials.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            credentials.secret_access_key,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
        );
        assert_eq!(
            credentials.session_token.as_deref(),
            Some("AQoDYXdzEPT//////////wEXAMPLE&+=")
        );
        assert_eq!(
            credentials.expiration.map(|t| t.to_string()),
            Some("2026-12-06T17:15:45.428Z".to_owned())
        );
        assert_eq!(
            parse_credentials("<AssumeRoleResponse/>"),
            Err(AnswerError::Missing("Credentials"))
        );
        let no_token = ANSWER
            .replace("<SessionToken>", "<Other>")
            .replace("</SessionToken>", "</Other>");
        assert_eq!(
            parse_credentials(&no_token),
            Err(AnswerError::Missing("SessionToken"))
        );
    }

    #[test]
    fn refusals_are_invalid_and_throttling_is_retried() {
        let denied = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/trailmark is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/audit</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
        assert_eq!(
            classify("AssumeRole", reqwest::StatusCode::FORBIDDEN, denied),
            Outcome::Invalid("AssumeRole refused: AccessDenied: User: arn:aws:iam::123456789012:user/trailmark is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/audit".into())
        );
        let throttled = "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";
        assert!(matches!(
            classify("AssumeRole", reqwest::StatusCode::BAD_REQUEST, throttled),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(
                "AssumeRole",
                reqwest::StatusCode::SERVICE_UNAVAILABLE,
                "busy"
            ),
            Outcome::Retry { .. }
        ));
    }

    #[test]
    fn bodies_are_form_encoded_and_names_fit_sts() {
        assert_eq!(
            assume_role_body(
                "arn:aws:iam::123456789012:role/audit",
                "trailmark-log_stream_1",
                Some("a+b=c")
            ),
            "Action=AssumeRole&DurationSeconds=3600&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Faudit&RoleSessionName=trailmark-log_stream_1&Version=2011-06-15&ExternalId=a%2Bb%3Dc"
        );
        assert_eq!(session_name("trailmark-a/b c"), "trailmark-a-b-c");
        assert_eq!(session_name(&"x".repeat(80)).len(), 64);
        assert_eq!(
            signing_region("https://sts.eu-west-1.amazonaws.com", "x"),
            "eu-west-1"
        );
        assert_eq!(
            signing_region("https://sts.amazonaws.com", "x"),
            "us-east-1"
        );
        assert_eq!(
            signing_region("http://127.0.0.1:5000", "eu-central-1"),
            "eu-central-1"
        );
    }

    #[test]
    fn an_sts_request_is_signed_with_the_session_token() {
        let signer = Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: Some("token".into()),
            expiration: None,
        };
        let now = Timestamp::parse("2026-12-06T10:00:00Z").expect("time");
        let headers = sigv4::sign(
            Request {
                method: "POST",
                host: "sts.eu-west-1.amazonaws.com",
                path: "/",
                region: "eu-west-1",
                service: "sts",
                headers: vec![(
                    "content-type".into(),
                    "application/x-www-form-urlencoded; charset=utf-8".into(),
                )],
                body: b"Action=AssumeRole",
            },
            &signer,
            now,
        );
        let authorization = headers
            .iter()
            .find(|(name, _)| name == "authorization")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        assert!(authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261206/eu-west-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
        ));
        assert!(headers.contains(&("x-amz-security-token".into(), "token".into())));
        assert!(!headers.iter().any(|(name, _)| name == "host"));
    }
}
