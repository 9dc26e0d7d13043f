//! Local receivers that stand in for destinations with no installable real peer. Each checks the
//! wire format its vendor documents, strictly, and records what it accepted:
//! - `http`: verifies the Standard Webhooks signature (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature: v1,<base64 HMAC-SHA256>`, one of several space-separated signatures),
//!   independently of Trailmark's signing code; it records each request's `webhook-id` and, when
//!   told to, de-duplicates on it as the README tells receivers they may (a repeated id is
//!   acknowledged and dropped);
//! - `datadog`: `POST /api/v2/logs`, `DD-API-KEY`, a JSON array of at most 1,000 items of at most
//!   1 MB, 5 MB in all, each with a string `message`; answers 202 (Datadog "Send logs" API);
//! - `splunk`: `POST /services/collector/event`, `Authorization: Splunk <token>`, concatenated
//!   JSON event objects each with `event` and a numeric `time`; answers `{"text":"Success","code":0}`;
//! - `splunk` with indexer acknowledgement (`Kind::SplunkAck`), as a HEC token with it on:
//!   requests without `X-Splunk-Request-Channel` are refused (400, code 10), each batch is answered
//!   with an `ackId`, and `POST /services/collector/ack` (`{"acks": [ids]}`, same token and
//!   channel) answers `{"acks": {"<id>": <indexed?>}}`, `false` while the test withholds them;
//! - `sentinel` (`Kind::Sentinel`), Microsoft Entra ID and the Azure Monitor Logs Ingestion API on
//!   one port: `POST /{tenant}/oauth2/v2.0/token` takes exactly the client-credentials form
//!   (`grant_type=client_credentials`, `client_id`, `client_secret`, `scope=https://monitor.azure.com//.default`,
//!   form-encoded) and answers `{"token_type":"Bearer","expires_in":…,"access_token":…}`, or 401
//!   `invalid_client` (AADSTS7000215) for a wrong secret; `POST /dataCollectionRules/<dcr>/streams/
//!   <stream>?api-version=2023-01-01` needs `Authorization: Bearer <a token it issued, unexpired>`
//!   (401 otherwise), `Content-Type: application/json`, at most 1 MB (gzip, if
//!   `Content-Encoding: gzip`, unpacked first; 413 otherwise), a JSON array of records each with a
//!   string `TimeGenerated` and an object `Event`, and answers 204. It records each record's
//!   `Event` and each call's size.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// What a receiver saw and how it answers.
#[derive(Default)]
pub struct Log {
    /// Accepted event objects, in arrival order.
    pub events: Vec<Value>,
    /// Every request's rejection reason, if it was rejected for its format.
    pub violations: Vec<String>,
    /// Requests answered so far.
    pub requests: usize,
    /// Answer this many requests with 503 before accepting any.
    pub fail_first: usize,
    /// The credential the receiver accepts (API key, HEC token or signing secret).
    pub credential: String,
    /// `webhook-id`s of the HTTP requests accepted, in arrival order.
    pub webhook_ids: Vec<String>,
    /// Drop a request whose `webhook-id` was accepted before (acknowledging it).
    pub deduplicate: bool,
    /// Splunk with acknowledgement: answer every acknowledgement query with `false`.
    pub withhold_acks: bool,
    /// Splunk with acknowledgement: the channel of each batch, and the acknowledgement queries.
    pub channels: Vec<String>,
    pub ack_queries: usize,
    /// Sentinel: tokens issued (each with when it expires), and each call's JSON size in bytes.
    pub tokens: Vec<(String, std::time::Instant)>,
    pub call_sizes: Vec<usize>,
    /// Sentinel: every record accepted, whole.
    pub records: Vec<Value>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub log: Arc<Mutex<Log>>,
}

impl Receiver {
    pub fn events(&self) -> Vec<Value> {
        self.log
            .lock()
            .map(|log| log.events.clone())
            .unwrap_or_default()
    }

    pub fn sequences(&self) -> Vec<u64> {
        self.events()
            .iter()
            .filter_map(|e| e["sequence"].as_u64())
            .collect()
    }

    /// The actions of the events accepted, in order.
    pub fn actions(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| e["action"].as_str().map(str::to_owned))
            .collect()
    }

    /// The events accepted that a test ingested: without Trailmark's own records (`trailmark.*`,
    /// such as the creation of the stream itself), which a stream from the beginning delivers too.
    pub fn ingested(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| {
                e["action"]
                    .as_str()
                    .is_some_and(|action| !action.starts_with("trailmark."))
            })
            .collect()
    }

    /// Waits until `count` ingested events (see [`Receiver::ingested`]) arrived, or 10 s.
    pub async fn wait_for_ingested(&self, count: usize) -> Vec<Value> {
        for _ in 0..400 {
            if self.ingested().len() >= count {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        self.ingested()
    }

    pub fn violations(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|log| log.violations.clone())
            .unwrap_or_default()
    }

    pub fn webhook_ids(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|log| log.webhook_ids.clone())
            .unwrap_or_default()
    }

    pub fn deduplicate(&self) {
        if let Ok(mut log) = self.log.lock() {
            log.deduplicate = true;
        }
    }

    /// Splunk with acknowledgement: whether queries are answered `false` (batches not indexed).
    pub fn withhold_acks(&self, withhold: bool) {
        if let Ok(mut log) = self.log.lock() {
            log.withhold_acks = withhold;
        }
    }

    pub fn channels(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|log| log.channels.clone())
            .unwrap_or_default()
    }

    pub fn ack_queries(&self) -> usize {
        self.log.lock().map(|log| log.ack_queries).unwrap_or(0)
    }

    pub fn set_credential(&self, credential: &str) {
        if let Ok(mut log) = self.log.lock() {
            log.credential = credential.to_owned();
        }
    }

    /// Waits (up to 10 s) until `count` events arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        for _ in 0..400 {
            if self.events().len() >= count {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        self.events()
    }
}

pub enum Kind {
    Http,
    Datadog,
    Splunk,
    /// Splunk HEC with indexer acknowledgement on.
    SplunkAck,
    /// Entra ID and the Logs Ingestion API (`credential`: the client secret).
    Sentinel,
}

/// The Sentinel stand-in's tenant, client id, rule and stream.
pub const SENTINEL_TENANT: &str = "6a1f2b3c-0000-4000-8000-00000000aaaa";
pub const SENTINEL_CLIENT: &str = "9b8c7d6e-0000-4000-8000-00000000bbbb";
pub const SENTINEL_DCR: &str = "dcr-00112233445566778899aabbccddeeff";
pub const SENTINEL_STREAM: &str = "Custom-TrailmarkAudit";
/// How long the stand-in's tokens last (Entra's usual lifetime).
const SENTINEL_TOKEN_SECONDS: u64 = 3599;

pub async fn start(kind: Kind, credential: &str, fail_first: usize) -> Receiver {
    let log = Arc::new(Mutex::new(Log {
        credential: credential.to_owned(),
        fail_first,
        ..Log::default()
    }));
    let app = match kind {
        Kind::Http => axum::Router::new().route("/hook", post(http)),
        Kind::Datadog => axum::Router::new().route("/api/v2/logs", post(datadog)),
        Kind::Splunk => axum::Router::new().route("/services/collector/event", post(splunk)),
        Kind::SplunkAck => axum::Router::new()
            .route("/services/collector/event", post(splunk_with_ack))
            .route("/services/collector/ack", post(splunk_ack)),
        Kind::Sentinel => axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(entra_token))
            .route(
                "/dataCollectionRules/{dcr}/streams/{stream}",
                post(sentinel_ingest),
            ),
    }
    .with_state(Arc::clone(&log));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = match kind {
        Kind::Http => format!("http://{address}/hook"),
        Kind::Datadog => format!("http://{address}/api/v2/logs"),
        Kind::Splunk | Kind::SplunkAck | Kind::Sentinel => format!("http://{address}"),
    };
    Receiver { url, log }
}

/// Counts the request and decides whether to fail it on purpose.
fn admit(log: &Mutex<Log>) -> Option<(StatusCode, String)> {
    let mut log = log.lock().ok()?;
    log.requests += 1;
    (log.requests <= log.fail_first).then(|| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "down for maintenance".to_owned(),
        )
    })
}

fn violation(log: &Mutex<Log>, status: StatusCode, reason: String) -> (StatusCode, String) {
    if let Ok(mut log) = log.lock() {
        log.violations.push(reason.clone());
    }
    (status, json!({"error": reason}).to_string())
}

async fn http(
    State(log): State<Arc<Mutex<Log>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if let Some(failure) = admit(&log) {
        return failure;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let secret = log.lock().map(|l| l.credential.clone()).unwrap_or_default();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap_or_default();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    mac.update(&body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    if !header("webhook-signature")
        .split(' ')
        .any(|signature| signature == expected)
    {
        return violation(
            &log,
            StatusCode::UNAUTHORIZED,
            "bad webhook-signature".into(),
        );
    }
    let content_type = header("content-type");
    let items: Vec<Value> = if content_type == "application/x-ndjson" {
        match body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(serde_json::from_slice)
            .collect()
        {
            Ok(items) => items,
            Err(e) => return violation(&log, StatusCode::BAD_REQUEST, format!("bad ndjson: {e}")),
        }
    } else if content_type == "application/json" {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(items)) => items,
            _ => {
                return violation(
                    &log,
                    StatusCode::BAD_REQUEST,
                    "the JSON body is not an array".into(),
                );
            }
        }
    } else {
        return violation(
            &log,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content-type {content_type}"),
        );
    };
    for item in &items {
        let complete = item["event"].is_object()
            && item["keySuffix"].is_string()
            && item["timestamp"].is_string()
            && item["source"].is_string();
        if !complete {
            return violation(
                &log,
                StatusCode::BAD_REQUEST,
                format!("not a WorkOS envelope: {item}"),
            );
        }
    }
    if let Ok(mut log) = log.lock() {
        let id = header("webhook-id");
        if !(log.deduplicate && log.webhook_ids.contains(&id)) {
            log.webhook_ids.push(id);
            log.events
                .extend(items.into_iter().map(|item| item["event"].clone()));
        }
    }
    (StatusCode::OK, "{}".into())
}

async fn datadog(
    State(log): State<Arc<Mutex<Log>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if let Some(failure) = admit(&log) {
        return failure;
    }
    let key = log.lock().map(|l| l.credential.clone()).unwrap_or_default();
    if headers.get("dd-api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str()) {
        return (
            StatusCode::FORBIDDEN,
            json!({"errors": [{"status": "403", "title": "Forbidden"}]}).to_string(),
        );
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return violation(&log, StatusCode::BAD_REQUEST, "content-type".into());
    }
    if body.len() > 5_000_000 {
        return violation(
            &log,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload over 5 MB".into(),
        );
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
        return violation(&log, StatusCode::BAD_REQUEST, "not a JSON array".into());
    };
    if items.len() > 1_000 {
        return violation(
            &log,
            StatusCode::BAD_REQUEST,
            "more than 1,000 items".into(),
        );
    }
    let mut events = Vec::new();
    for item in &items {
        let parsed = item["message"]
            .as_str()
            .and_then(|m| serde_json::from_str::<Value>(m).ok());
        match parsed {
            Some(event)
                if item["ddsource"].is_string()
                    && item["service"].is_string()
                    && item.to_string().len() <= 1_000_000 =>
            {
                events.push(event)
            }
            _ => {
                return violation(
                    &log,
                    StatusCode::BAD_REQUEST,
                    format!("bad log item: {item}"),
                );
            }
        }
    }
    if let Ok(mut log) = log.lock() {
        log.events.extend(events);
    }
    (StatusCode::ACCEPTED, "{}".into())
}

async fn splunk(
    State(log): State<Arc<Mutex<Log>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if let Some(failure) = admit(&log) {
        return failure;
    }
    let token = log.lock().map(|l| l.credential.clone()).unwrap_or_default();
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(format!("Splunk {token}").as_str())
    {
        return (
            StatusCode::FORBIDDEN,
            json!({"text": "Invalid token", "code": 4}).to_string(),
        );
    }
    let mut events = Vec::new();
    for item in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
        match item {
            Ok(item) if item["event"].is_object() && item["time"].is_number() => {
                events.push(item["event"].clone())
            }
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"text": "Invalid data format", "code": 6}).to_string(),
                );
            }
        }
    }
    if events.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            json!({"text": "No data", "code": 5}).to_string(),
        );
    }
    if let Ok(mut log) = log.lock() {
        log.events.extend(events);
    }
    (
        StatusCode::OK,
        json!({"text": "Success", "code": 0}).to_string(),
    )
}

/// HEC's refusal of a request without a channel when acknowledgement is on.
fn channel_missing(log: &Mutex<Log>) -> (StatusCode, String) {
    if let Ok(mut log) = log.lock() {
        log.violations
            .push("no X-Splunk-Request-Channel".to_owned());
    }
    (
        StatusCode::BAD_REQUEST,
        json!({"text": "Data channel is missing", "code": 10}).to_string(),
    )
}

async fn splunk_with_ack(
    State(log): State<Arc<Mutex<Log>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let Some(channel) = headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return channel_missing(&log);
    };
    let response = splunk(State(Arc::clone(&log)), headers, body)
        .await
        .into_response();
    let status = response.status();
    let answer = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    if status != StatusCode::OK {
        return (status, String::from_utf8_lossy(&answer).into_owned());
    }
    let ack = log
        .lock()
        .map(|mut log| {
            log.channels.push(channel);
            log.channels.len() - 1
        })
        .unwrap_or(0);
    (
        StatusCode::OK,
        json!({"text": "Success", "code": 0, "ackId": ack}).to_string(),
    )
}

async fn splunk_ack(
    State(log): State<Arc<Mutex<Log>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if headers.get("x-splunk-request-channel").is_none() {
        return channel_missing(&log);
    }
    let token = log.lock().map(|l| l.credential.clone()).unwrap_or_default();
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(format!("Splunk {token}").as_str())
    {
        return (
            StatusCode::FORBIDDEN,
            json!({"text": "Invalid token", "code": 4}).to_string(),
        );
    }
    let Ok(asked) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            json!({"text": "Invalid data format", "code": 6}).to_string(),
        );
    };
    let Ok(mut log) = log.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
    };
    log.ack_queries += 1;
    let indexed = !log.withhold_acks;
    let known = log.channels.len() as u64;
    let acks: serde_json::Map<String, Value> = asked["acks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .map(|id| (id.to_string(), Value::Bool(indexed && id < known)))
        .collect();
    (StatusCode::OK, json!({"acks": acks}).to_string())
}

async fn entra_token(
    State(log): State<Arc<Mutex<Log>>>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    if tenant != SENTINEL_TENANT {
        return violation(&log, StatusCode::BAD_REQUEST, format!("tenant {tenant}"));
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        return violation(&log, StatusCode::BAD_REQUEST, "token content-type".into());
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut names: Vec<&str> = form.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    let value = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if names != ["client_id", "client_secret", "grant_type", "scope"]
        || value("grant_type") != Some("client_credentials")
        || value("scope") != Some("https://monitor.azure.com//.default")
    {
        return violation(&log, StatusCode::BAD_REQUEST, format!("token form {body}"));
    }
    let Ok(mut log) = log.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
    };
    if value("client_id") != Some(SENTINEL_CLIENT)
        || value("client_secret") != Some(log.credential.as_str())
    {
        return (
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client",
                   "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID."})
            .to_string(),
        );
    }
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("random bytes");
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let expires =
        std::time::Instant::now() + std::time::Duration::from_secs(SENTINEL_TOKEN_SECONDS);
    log.tokens.push((token.clone(), expires));
    (
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": SENTINEL_TOKEN_SECONDS, "ext_expires_in": SENTINEL_TOKEN_SECONDS, "access_token": token})
            .to_string(),
    )
}

async fn sentinel_ingest(
    State(log): State<Arc<Mutex<Log>>>,
    axum::extract::Path((dcr, stream)): axum::extract::Path<(String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if let Some(failure) = admit(&log) {
        return failure;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let bearer = header("authorization");
    let known = log
        .lock()
        .map(|log| {
            log.tokens.iter().any(|(token, expires)| {
                bearer == format!("Bearer {token}") && std::time::Instant::now() < *expires
            })
        })
        .unwrap_or(false);
    if !known {
        return violation(
            &log,
            StatusCode::UNAUTHORIZED,
            "no valid bearer token".into(),
        );
    }
    if dcr != SENTINEL_DCR || stream != SENTINEL_STREAM {
        return violation(
            &log,
            StatusCode::NOT_FOUND,
            format!("rule {dcr} stream {stream}"),
        );
    }
    if query.as_deref() != Some("api-version=2023-01-01") {
        return violation(&log, StatusCode::BAD_REQUEST, format!("query {query:?}"));
    }
    if header("content-type") != "application/json" {
        return violation(
            &log,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type".into(),
        );
    }
    if body.len() > 1_000_000 {
        return violation(&log, StatusCode::PAYLOAD_TOO_LARGE, "over 1 MB".into());
    }
    let json = match header("content-encoding").as_str() {
        "" => body.to_vec(),
        "gzip" => {
            let mut unpacked = Vec::new();
            let reader = flate2::read::GzDecoder::new(&body[..]);
            if std::io::Read::read_to_end(
                &mut std::io::Read::take(reader, 1_000_001),
                &mut unpacked,
            )
            .is_err()
            {
                return violation(&log, StatusCode::BAD_REQUEST, "bad gzip".into());
            }
            unpacked
        }
        other => {
            return violation(
                &log,
                StatusCode::BAD_REQUEST,
                format!("content-encoding {other}"),
            );
        }
    };
    if json.len() > 1_000_000 {
        return violation(
            &log,
            StatusCode::PAYLOAD_TOO_LARGE,
            "over 1 MB unpacked".into(),
        );
    }
    let Ok(Value::Array(records)) = serde_json::from_slice::<Value>(&json) else {
        return violation(&log, StatusCode::BAD_REQUEST, "not a JSON array".into());
    };
    if records.is_empty()
        || records
            .iter()
            .any(|r| !r["TimeGenerated"].is_string() || !r["Event"].is_object())
    {
        return violation(
            &log,
            StatusCode::BAD_REQUEST,
            "a record without TimeGenerated or Event".into(),
        );
    }
    if let Ok(mut log) = log.lock() {
        log.call_sizes.push(json.len());
        log.events
            .extend(records.iter().map(|r| r["Event"].clone()));
        log.records.extend(records);
    }
    (StatusCode::NO_CONTENT, String::new())
}
