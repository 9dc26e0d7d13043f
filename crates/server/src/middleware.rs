//! What happens around every request, whatever its route:
//!
//! 1. **Request id.** A sane incoming `X-Request-ID` (at most 128 visible ASCII characters) is
//!    kept, otherwise a new `req_<ULID>` is made; it goes on the response and into the log span.
//! 2. **JSON errors.** An error response that is not JSON already (nor a portal page in HTML) (axum's 405 for a wrong method,
//!    a panic caught below, a body-limit rejection) gets a WorkOS-shaped `{"message": …}` body, so
//!    SDKs never see a non-JSON error (Node would raise `ParseError`).
//! 3. **Panics.** A panicking handler becomes a 500 JSON answer; the server keeps running.
//! 4. **Metrics.** Each request is counted by method, route template and status, and timed.
//! 5. **Access log.** One `info` line per request, whatever its status (401, 403, 429 and the
//!    errors axum answers itself included), with target `trailmark::access`: `request_id`,
//!    `method`, `route` (the route template), `status` and `latency_ms`. Never a header, a query
//!    string or a body, so no key or token reaches the log.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use serde_json::json;
use tracing::Instrument;
use trailmark_domain::id::IdKind;

use crate::error::{ApiError, Rejection};
use crate::state::AppState;

pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub(crate) async fn around_every_request(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| IdKind::Request.generate().into_string(), str::to_owned);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        %method,
        route = %route,
        status = tracing::field::Empty,
    );

    let handled = std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let mut response = match handled {
        Ok(response) => response,
        Err(_) => {
            span.in_scope(|| tracing::error!("handler panicked"));
            ApiError::Internal("handler panicked".into()).into_response()
        }
    };
    if response.status().is_client_error() || response.status().is_server_error() {
        let reason = response
            .extensions()
            .get::<Rejection>()
            .map_or_else(|| reason_for(response.status()), |rejection| rejection.0);
        state.metrics.rejection(&route, reason);
        response = ensure_json_error(response);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    let status = response.status();
    span.record("status", status.as_u16());
    state
        .metrics
        .record_request(method.as_str(), &route, status.as_u16(), started.elapsed());
    // Outside the request's span, with its fields of its own: the line is whole even when a
    // filter (`warn,trailmark::access=info`) disables the span, and says each field once.
    tracing::info!(
        target: "trailmark::access",
        request_id = %request_id,
        %method,
        route = %route,
        status = status.as_u16(),
        latency_ms = started.elapsed().as_micros() as f64 / 1000.0,
        "answered"
    );
    response
}

/// The reason of a refusal that did not come from an [`ApiError`] (axum's own answers, or a
/// layer's), from its status.
fn reason_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        status if status.is_server_error() => "internal",
        _ => "other",
    }
}

fn ensure_json_error(response: Response) -> Response {
    // The portal's error pages are HTML for people, and stay so.
    let is_json_or_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("text/html")
        });
    if is_json_or_page {
        return response;
    }
    let status = response.status();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "This method is not allowed on this path.".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.".to_owned(),
        other => other
            .canonical_reason()
            .unwrap_or("Request failed.")
            .to_owned(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(
        parts,
        axum::body::Body::from(json!({"message": message}).to_string()),
    )
}
