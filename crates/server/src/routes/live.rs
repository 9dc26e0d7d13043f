//! Live events (Trailmark): `GET /audit_logs/events/stream?organization_id=…[&after=N]` answers
//! Server-Sent Events (WHATWG HTML, "Server-sent events"), one organization's events as they are
//! appended, in log order, through the search filters (`actions`, `actor_ids`, `target_ids`,
//! `q`, `range_start`, …, parsed by [`filter_from_query`]):
//!
//! ```text
//! id: 42
//! data: {"object":"audit_log_event","id":"event_…",…}
//!
//! : heartbeat
//!
//! event: resume
//! id: 42
//! data: {"last_event_id":"42"}
//! ```
//!
//! Each event is the object the search returns, its `id:` its sequence. The stream starts after
//! `after`, or after the `Last-Event-ID` a reconnecting client sends (which wins), or at the log's
//! head. A comment is sent after 15 s without an event. A client that reads too slowly is sent
//! `event: resume` with the last id it was given, and the stream ends: it reconnects from there
//! (an `EventSource` does so by itself). Read keys may follow their organization; a revoked or
//! expired key's stream ends within seconds. The portal's events page uses the same stream for
//! its session's organization (`/portal/events/stream`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use trailmark_app::live::{LiveEvents, LiveItem, LiveRequest};
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::routes::readable_organization;
use crate::routes::search::filter_from_query;
use crate::state::AppState;

/// Every parameter the stream takes: the search's filters, without its paging.
pub(crate) const STREAM_PARAMETERS: [&str; 10] = [
    "organization_id",
    "range_start",
    "range_end",
    "actions",
    "actor_ids",
    "actor_names",
    "target_ids",
    "target_types",
    "q",
    "after",
];

/// `GET /audit_logs/events/stream`.
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    caller.require(Scope::Read)?;
    query.refuse_unknown(&STREAM_PARAMETERS)?;
    let filter = filter_from_query(&query)?;
    let after = start_after(&headers, &query)?;
    let organization_id = readable_organization(&state, &caller, &query).await?;
    let key = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.get(7..))
        .map(|key| key.trim().to_owned());
    let live = state
        .app
        .live_events(LiveRequest {
            organization_id,
            filter,
            after,
            from_start: false,
            key,
            session: None,
            holder: caller.key_id.clone(),
            ends_within: None,
        })
        .await?;
    Ok(sse(live))
}

/// Where a stream starts: after `Last-Event-ID` (a reconnecting client's), else `after`.
///
/// # Errors
///
/// 422 naming the one that is not a sequence number.
pub(crate) fn start_after(
    headers: &HeaderMap,
    query: &QueryPairs,
) -> Result<Option<u64>, ApiError> {
    let sequence = |name: &'static str, value: &str| {
        value.trim().parse::<u64>().map(Some).map_err(|_| {
            ApiError::field(
                "invalid_value",
                name,
                format!("{name} must be a sequence number (an integer ≥ 0), got '{value}'"),
            )
        })
    };
    if let Some(last) = headers.get("last-event-id") {
        let last = last.to_str().unwrap_or("?");
        if !last.is_empty() {
            return sequence("Last-Event-ID", last);
        }
    }
    match query.get("after").filter(|after| !after.is_empty()) {
        Some(after) => sequence("after", after),
        None => Ok(None),
    }
}

/// What is left at `now` of a browser session that expires at `expires_at` (nothing once it
/// passed): how long its live stream may run before the page must reconnect through the
/// session check.
pub(crate) fn left_of(expires_at: Timestamp, now: Timestamp) -> Duration {
    Duration::from_millis(
        u64::try_from(expires_at.unix_millis() - now.unix_millis()).unwrap_or_default(),
    )
}

/// The live events as a `text/event-stream` answer.
pub(crate) fn sse(live: LiveEvents) -> Response {
    let events = futures_util::stream::unfold(live, |mut live| async move {
        let event = match live.next().await? {
            LiveItem::Event(event) => Event::default()
                .id(event.sequence.to_string())
                .data(event.to_object().to_string()),
            LiveItem::Heartbeat => Event::default().comment("heartbeat"),
            LiveItem::Behind { resume_after } => {
                let last = resume_after.map(|sequence| sequence.to_string());
                let resume = Event::default()
                    .event("resume")
                    .data(json!({"last_event_id": last}).to_string());
                match last {
                    Some(last) => resume.id(last),
                    None => resume,
                }
            }
        };
        Some((Ok::<_, Infallible>(event), live))
    });
    let mut response = Sse::new(events).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer answers (nginx) would hold events back.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use http_body_util::BodyExt;
    use trailmark_app::live::HEARTBEAT_EVERY;
    use trailmark_domain::Timestamp;
    use trailmark_domain::id::IdKind;
    use trailmark_domain::organization::Organization;
    use trailmark_domain::query::EventFilter;
    use trailmark_store::{SqliteStore, Store};

    use super::*;

    /// The wire text of a quiet stream, on a paused clock: nothing for 15 s, then a comment.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_sends_a_heartbeat_comment_every_15_s() {
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("t.db")).expect("store"));
        let now = Timestamp::now();
        let organization = store
            .insert_organization(Organization {
                id: IdKind::Organization.generate().into_string(),
                name: "Acme".into(),
                domains: Vec::new(),
                metadata: BTreeMap::new(),
                external_id: None,
                allow_profiles_outside_organization: false,
                retention_period_in_days: None,
                created_at: now,
                updated_at: now,
            })
            .await
            .expect("organization");
        let config = trailmark_app::AppConfig {
            data_dir: dir.path().to_owned(),
            secrets_key: [1; 32],
            ledger_name: "trailmark.test".into(),
            signing_key: [2; 32],
            checkpoint_interval: Duration::from_secs(1),
            retention_interval: Duration::from_secs(3600),
            streams: trailmark_streams::worker::WorkerConfig::default(),
            require_schemas: false,
            export_max_range_days: None,
            export_max_pending: 4,
            export_max_disk_bytes: 1 << 30,
            export_file_ttl: Duration::from_secs(3600),
            bootstrap_key_hash: None,
            witnesses: Vec::new(),
            alerts: Default::default(),
        };
        let app = trailmark_app::Trailmark::new(store, config).expect("app");
        let live = app
            .live_events(LiveRequest {
                organization_id: organization.id,
                filter: EventFilter::default(),
                after: None,
                from_start: false,
                key: None,
                session: None,
                holder: "key_test".into(),
                ends_within: None,
            })
            .await
            .expect("live");
        let response = sse(live);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let mut body = response.into_body();
        let start = tokio::time::Instant::now();
        for beat in 1..=2u32 {
            let frame = body.frame().await.expect("a frame").expect("no error");
            let text = frame.into_data().expect("data");
            assert_eq!(&text[..], b": heartbeat\n\n");
            assert_eq!(start.elapsed(), HEARTBEAT_EVERY * beat);
        }
    }
}
