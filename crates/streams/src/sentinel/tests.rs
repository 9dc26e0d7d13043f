//! The token flow and the answers a sink acts on, against a stand-in for Entra ID and the Logs
//! Ingestion API on loopback (no real peer can be installed), on the paused clock. The stand-in
//! checks the documented wire format: the client-credentials form (its four fields and the
//! scope), a bearer token it issued and that has not expired, the path, `api-version`, the
//! content type and encoding, a JSON array of records of at most 1 MB.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;
use crate::destination::{Context, Destination, Shared};
use crate::format::EventFormat;

const SECRET: &str = "s3cret~value";
const DCR: &str = "dcr-0123456789abcdef0123456789abcdef";

/// What the stand-in saw, and how it answers.
#[derive(Default)]
struct StandIn {
    /// Tokens issued and not revoked, with when they expire.
    issued: Vec<(String, Instant)>,
    /// Tokens issued in all.
    grants: usize,
    /// Sequences of the records accepted, in order, and the token each call carried.
    accepted: Vec<u64>,
    tokens_used: Vec<String>,
    /// Every refusal, with its reason.
    refused: Vec<String>,
    /// How long tokens last, in seconds.
    lifetime: u64,
    /// Calls whose uncompressed body is larger are answered 413.
    limit: usize,
    /// Answer every ingestion call with this status instead.
    forced: Option<StatusCode>,
}

type Shared_ = Arc<Mutex<StandIn>>;

fn refuse(state: &Shared_, status: StatusCode, reason: String) -> (StatusCode, HeaderMap, String) {
    state.lock().expect("state").refused.push(reason.clone());
    (
        status,
        HeaderMap::new(),
        json!({"error": {"code": "Refused", "message": reason}}).to_string(),
    )
}

async fn token(
    State(state): State<Shared_>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, HeaderMap, String) {
    if tenant != "tenant-1" {
        return refuse(&state, StatusCode::BAD_REQUEST, format!("tenant {tenant}"));
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        return refuse(&state, StatusCode::BAD_REQUEST, "content type".into());
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
        || value("client_id") != Some("client-1")
        || value("scope") != Some("https://monitor.azure.com//.default")
    {
        return refuse(&state, StatusCode::BAD_REQUEST, format!("form {body}"));
    }
    if value("client_secret") != Some(SECRET) {
        return refuse(
            &state,
            StatusCode::UNAUTHORIZED,
            "AADSTS7000215: Invalid client secret provided.".into(),
        );
    }
    let mut state = state.lock().expect("state");
    let access_token = format!("token-{}", state.grants);
    state.grants += 1;
    let lifetime = state.lifetime;
    state.issued.push((
        access_token.clone(),
        Instant::now() + Duration::from_secs(lifetime),
    ));
    (
        StatusCode::OK,
        HeaderMap::new(),
        json!({"token_type": "Bearer", "expires_in": lifetime, "access_token": access_token})
            .to_string(),
    )
}

async fn ingest(
    State(state): State<Shared_>,
    Path((dcr, stream)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, HeaderMap, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let bearer = header("authorization")
        .strip_prefix("Bearer ")
        .unwrap_or("");
    let valid = state
        .lock()
        .expect("state")
        .issued
        .iter()
        .any(|(token, expires)| token == bearer && Instant::now() < *expires);
    if !valid {
        return refuse(&state, StatusCode::UNAUTHORIZED, format!("token {bearer}"));
    }
    if let Some(status) = state.lock().expect("state").forced {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().expect("header"));
        return (status, headers, "{}".into());
    }
    if dcr != DCR || stream != "Custom-TrailmarkAudit" {
        return refuse(&state, StatusCode::NOT_FOUND, format!("{dcr}/{stream}"));
    }
    if query.get("api-version").map(String::as_str) != Some("2023-01-01")
        || header("content-type") != "application/json"
        || header("content-encoding") != "gzip"
    {
        return refuse(&state, StatusCode::BAD_REQUEST, "query or headers".into());
    }
    let mut json = Vec::new();
    if flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut json)
        .is_err()
        || json.len() > 1_000_000
    {
        return refuse(&state, StatusCode::PAYLOAD_TOO_LARGE, "over 1 MB".into());
    }
    if json.len() > state.lock().expect("state").limit {
        return (StatusCode::PAYLOAD_TOO_LARGE, HeaderMap::new(), "{}".into());
    }
    let Ok(Value::Array(records)) = serde_json::from_slice::<Value>(&json) else {
        return refuse(&state, StatusCode::BAD_REQUEST, "not an array".into());
    };
    if records
        .iter()
        .any(|r| !r["TimeGenerated"].is_string() || !r["Event"].is_object())
    {
        return refuse(&state, StatusCode::BAD_REQUEST, "record".into());
    }
    let mut state = state.lock().expect("state");
    state
        .accepted
        .extend(records.iter().filter_map(|r| r["Sequence"].as_u64()));
    state.tokens_used.push(bearer.to_owned());
    (StatusCode::NO_CONTENT, HeaderMap::new(), String::new())
}

/// Starts the stand-in; returns its base URL.
async fn stand_in(state: Shared_) -> String {
    let app = axum::Router::new()
        .route("/{tenant}/oauth2/v2.0/token", axum::routing::post(token))
        .route(
            "/dataCollectionRules/{dcr}/streams/{stream}",
            axum::routing::post(ingest),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn sink(url: &str, secret: &str) -> Box<dyn Sink> {
    let config = json!({"endpoint": url, "dcr_immutable_id": DCR, "stream_name": "Custom-TrailmarkAudit",
                        "tenant_id": "tenant-1", "client_id": "client-1", "authority": url});
    let mut public = config.as_object().cloned().unwrap_or_default();
    let mut secrets = json!({"client_secret": secret})
        .as_object()
        .cloned()
        .unwrap_or_default();
    Sentinel
        .configure(&mut public, &mut secrets, &mut String::new)
        .expect("valid")
}

fn events(from: u64, count: u64, padding: usize) -> Vec<Value> {
    (from..from + count)
        .map(|n| {
            json!({"object": "audit_log_event", "id": format!("event_{n}"), "organization_id": "org_1",
                   "sequence": n, "action": "user.created", "occurred_at": "2026-08-01T10:00:00.000Z",
                   "actor": {"id": "user_1", "type": "user"}, "targets": [],
                   "context": {"location": "192.0.2.8"}, "metadata": {"pad": "x".repeat(padding)}})
        })
        .collect()
}

async fn send(sink: &dyn Sink, shared: &Shared, events: &[Value]) -> Outcome {
    let client = crate::net::client(true, &[]).expect("client");
    let cx = Context {
        stream_id: "log_stream_01TEST",
        client: &client,
        allow_private: true,
        proxy: None,
        shared,
        clock: &crate::worker::Clock::default(),
        aws_default_chain: None,
        format: EventFormat::Workos,
    };
    sink.send(&cx, events).await
}

/// A token is used until a minute before its `expires_in`, then replaced: on the paused clock,
/// calls an hour apart carry a new token, and none is ever refused as expired.
#[tokio::test(start_paused = true)]
async fn sentinel_tokens_are_cached_and_refreshed_before_they_expire_stand_in_receiver() {
    let state = Arc::new(Mutex::new(StandIn {
        lifetime: 3600,
        limit: usize::MAX,
        ..StandIn::default()
    }));
    let url = stand_in(Arc::clone(&state)).await;
    let (sink, shared) = (sink(&url, SECRET), Shared::default());

    assert_eq!(
        send(&*sink, &shared, &events(0, 3, 10)).await,
        Outcome::Delivered(3)
    );
    tokio::time::advance(Duration::from_secs(3000)).await;
    assert_eq!(
        send(&*sink, &shared, &events(3, 3, 10)).await,
        Outcome::Delivered(3)
    );
    // 3541 s after the first token was issued: within the minute before it expires.
    tokio::time::advance(Duration::from_secs(541)).await;
    assert_eq!(
        send(&*sink, &shared, &events(6, 3, 10)).await,
        Outcome::Delivered(3)
    );

    let state = state.lock().expect("state");
    assert_eq!(state.grants, 2, "one refresh");
    assert_eq!(state.tokens_used, ["token-0", "token-0", "token-1"]);
    assert_eq!(state.accepted, (0..9).collect::<Vec<u64>>());
    assert!(state.refused.is_empty(), "{:?}", state.refused);
}

/// A token the endpoint refuses is replaced once within the attempt; an endpoint that refuses
/// the new one too makes the stream `invalid`; a wrong secret is named as the cause.
#[tokio::test(start_paused = true)]
async fn sentinel_refused_tokens_are_renewed_once_then_invalid_stand_in_receiver() {
    let state = Arc::new(Mutex::new(StandIn {
        lifetime: 3600,
        limit: usize::MAX,
        ..StandIn::default()
    }));
    let url = stand_in(Arc::clone(&state)).await;
    let (sink, shared) = (sink(&url, SECRET), Shared::default());
    assert_eq!(
        send(&*sink, &shared, &events(0, 2, 10)).await,
        Outcome::Delivered(2)
    );
    // Revoked: the stand-in no longer knows the token it issued.
    state.lock().expect("state").issued.clear();
    assert_eq!(
        send(&*sink, &shared, &events(2, 2, 10)).await,
        Outcome::Delivered(2)
    );
    assert_eq!(state.lock().expect("state").grants, 2);

    state.lock().expect("state").forced = Some(StatusCode::FORBIDDEN);
    let refused = send(&*sink, &shared, &events(4, 2, 10)).await;
    assert!(
        matches!(&refused, Outcome::Invalid(reason) if reason.contains("403") && reason.contains(DCR)),
        "{refused:?}"
    );
    assert_eq!(state.lock().expect("state").grants, 3, "renewed once");

    state.lock().expect("state").forced = Some(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        send(&*sink, &shared, &events(4, 2, 10)).await,
        Outcome::Retry {
            reason: "429 Too Many Requests: {}".into(),
            after: Some(Duration::from_secs(7))
        }
    );

    let wrong = send(
        &*super::tests::sink(&url, "wrong"),
        &Shared::default(),
        &events(4, 1, 10),
    )
    .await;
    assert!(
        matches!(&wrong, Outcome::Invalid(reason) if reason.contains("client_secret") && reason.contains("AADSTS7000215")),
        "{wrong:?}"
    );
}

/// A call the endpoint finds too large is split in halves until each half passes; the events
/// arrive once each, in order.
#[tokio::test(start_paused = true)]
async fn sentinel_calls_refused_as_too_large_are_split_stand_in_receiver() {
    let state = Arc::new(Mutex::new(StandIn {
        lifetime: 3600,
        limit: 250_000,
        ..StandIn::default()
    }));
    let url = stand_in(Arc::clone(&state)).await;
    let (sink, shared) = (sink(&url, SECRET), Shared::default());
    assert_eq!(
        send(&*sink, &shared, &events(0, 12, 60_000)).await,
        Outcome::Delivered(12)
    );
    let state = state.lock().expect("state");
    assert_eq!(state.accepted, (0..12).collect::<Vec<u64>>());
    assert!(state.tokens_used.len() >= 4, "{}", state.tokens_used.len());
}
