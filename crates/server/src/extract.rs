//! Extractors that turn bad input into 4xx JSON errors naming the problem, where axum's own
//! would answer in plain text. They are where text enters the API, so they also refuse the NUL
//! character (U+0000) in any string, key or parameter (422 naming the field): no backend can
//! store it faithfully, and refusing it here answers the same on SQLite and PostgreSQL.
//!
//! - [`JsonBody`]: `Content-Type` must be JSON (415), the body must fit the limit (413, naming
//!   it) and be valid UTF-8 JSON (400, with line and column) without NUL (422). Nesting deeper
//!   than 128 levels is refused by the parser before it can exhaust the stack.
//! - [`EventBody`]: the same for an ingested event, kept as the body's text and read by the
//!   handler as a [`JsonText`] that borrows from it; its JSON syntax and NUL are checked when the
//!   handler reads it, after the caller's key (so a key without the ingest scope gets 403
//!   whatever it sent).
//! - [`BatchBody`]: the same for batch ingest, under the batch limit, leaving each event's NUL
//!   check to the event's own validation, so one bad event does not sink its batch.
//! - [`QueryPairs`]: the raw `key=value` pairs, so list parameters can be checked one by one and
//!   repeated keys (`actions=a&actions=b`) are kept.
//! - [`QueryPairs::page`]: WorkOS pagination (`limit` 1–100, default 10; `order` `asc`, `desc` or
//!   `normal`; `before`/`after`), with out-of-range values refused (422), never clamped.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use trailmark_domain::json::{Json, JsonText, text_may_hold_nul};
use trailmark_domain::problem::{nul_problem, nul_problems};
use trailmark_store::{Order, PageRequest};

use crate::error::ApiError;
use crate::state::{AppState, BATCH_BODY_FACTOR};

/// A request body that parsed as JSON.
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_json(request, state, state.config.max_body_bytes).await?;
        let body = serde_json::from_slice(&bytes).map_err(invalid_json)?;
        if text_may_hold_nul(&bytes) {
            refuse_nul(nul_problems(&Json::from(&body), ""))?;
        }
        Ok(JsonBody(body))
    }
}

/// A JSON body under the normal limit, kept as its text for the handler to read as a [`Json`]
/// that borrows from it ([`EventBody::parse`]): an ingested event is read without building a
/// [`Value`] of it.
pub struct EventBody(Bytes);

impl FromRequest<AppState> for EventBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(EventBody(
            read_json(request, state, state.config.max_body_bytes).await?,
        ))
    }
}

impl EventBody {
    /// The body as JSON, checked as [`JsonBody`] checks it.
    pub fn parse(&self) -> Result<JsonText<'_>, ApiError> {
        let body = JsonText::parse(&self.0).map_err(invalid_json)?;
        refuse_nul(body.nul_problems(body.json(), ""))?;
        Ok(body)
    }
}

/// The body of `POST /audit_logs/events/batch`: JSON under the batch limit
/// ([`BATCH_BODY_FACTOR`] times the normal one), kept as its text like [`EventBody`]. NUL is
/// refused outside `events`; inside, each event's validation refuses it for that event alone.
pub struct BatchBody(Bytes);

impl FromRequest<AppState> for BatchBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state
            .config
            .max_body_bytes
            .saturating_mul(BATCH_BODY_FACTOR);
        Ok(BatchBody(read_json(request, state, limit).await?))
    }
}

impl BatchBody {
    /// The body as JSON, with NUL refused everywhere but inside `events`.
    pub fn parse(&self) -> Result<JsonText<'_>, ApiError> {
        let body = JsonText::parse(&self.0).map_err(invalid_json)?;
        // Each event's own are its problems alone (`events[2].actor.id`): they are left to it.
        let problems = body
            .nul_problems(body.json(), "")
            .into_iter()
            .filter(|problem| !problem.field.starts_with("events["))
            .collect();
        refuse_nul(problems)?;
        Ok(body)
    }
}

fn refuse_nul(problems: Vec<trailmark_domain::FieldProblem>) -> Result<(), ApiError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Malformed(problems))
    }
}

/// Reads the text of a JSON body of at most `limit` bytes (the route's `DefaultBodyLimit`,
/// which this reports when it is exceeded).
async fn read_json(request: Request, state: &AppState, limit: usize) -> Result<Bytes, ApiError> {
    let is_json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else if caused_by::<crate::connections::BodyTimeout>(&rejection) {
                ApiError::RequestTimeout {
                    seconds: state.config.connections.body_timeout.as_secs(),
                }
            } else {
                ApiError::BadRequest {
                    code: "invalid_body",
                    message: format!("The request body could not be read: {rejection}"),
                }
            }
        })?;
    Ok(bytes)
}

fn invalid_json(error: serde_json::Error) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_json",
        message: format!("The request body is not valid JSON: {error}."),
    }
}

/// Whether `error` or one of its causes is an `E`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<E>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Refuses a request whose path parameters hold NUL (`/audit_logs/events/event_%00`) with a 422
/// naming the parameter, before any handler looks the value up. A route layer, so the matched
/// route's template names the parameters.
pub(crate) async fn refuse_nul_in_path(request: Request, next: Next) -> Response {
    let raw = request.uri().path();
    if raw.contains('%') {
        let template = request
            .extensions()
            .get::<MatchedPath>()
            .map(|matched| matched.as_str().to_owned())
            .unwrap_or_default();
        for (segment, pattern) in raw.split('/').zip(template.split('/')) {
            let decoded = percent_decode(segment).unwrap_or_default();
            let name = pattern
                .trim_start_matches('{')
                .trim_start_matches('*')
                .trim_end_matches('}');
            if let Some(problem) = nul_problem(&decoded, name) {
                return ApiError::Malformed(vec![problem]).into_response();
            }
        }
    }
    next.run(request).await
}

/// A body that may be left out: no body at all (no `Content-Type`, no length) is `None`; anything
/// else must be JSON, as for [`JsonBody`].
impl axum::extract::OptionalFromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        let headers = request.headers();
        let empty = headers.get(CONTENT_TYPE).is_none()
            && headers
                .get(axum::http::header::CONTENT_LENGTH)
                .is_none_or(|length| length.as_bytes() == b"0")
            && headers.get(axum::http::header::TRANSFER_ENCODING).is_none();
        if empty {
            return Ok(None);
        }
        <JsonBody as FromRequest<AppState>>::from_request(request, state)
            .await
            .map(Some)
    }
}

/// The query string as decoded pairs, in order.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        decode_query(query).map(QueryPairs)
    }
}

impl QueryPairs {
    /// The last value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of `name`, with comma-separated values split (`domains=a.com,b.com`).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name || key == &format!("{name}[]"))
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Every value of `name` like [`QueryPairs::list`], but an empty value (`actions=`,
    /// `actions=a,,b`) is refused rather than dropped, so it never silently means "everything".
    ///
    /// # Errors
    ///
    /// 422 naming `name`.
    pub fn strict_list(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let mut values = Vec::new();
        for (_, value) in self
            .0
            .iter()
            .filter(|(key, _)| key == name || key == &format!("{name}[]"))
        {
            for item in value.split(',').map(str::trim) {
                if item.is_empty() {
                    return Err(ApiError::field(
                        "empty",
                        name,
                        format!(
                            "{name} holds an empty value; leave the parameter out to filter nothing"
                        ),
                    ));
                }
                values.push(item.to_owned());
            }
        }
        Ok(values)
    }

    /// The value of `name` if given; given empty (`q=`) is refused rather than ignored.
    ///
    /// # Errors
    ///
    /// 422 naming `name`.
    pub fn non_empty(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            Some("") => Err(ApiError::field(
                "empty",
                name,
                format!("{name} is empty; leave the parameter out to filter nothing"),
            )),
            other => Ok(other),
        }
    }

    /// Refuses a parameter not in `known` (or its `name[]` list form): a misspelt filter would
    /// otherwise do nothing and the answer would look filtered.
    ///
    /// # Errors
    ///
    /// 422 naming the first unknown parameter.
    pub fn refuse_unknown(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().map(|(key, _)| key).find(|key| {
            let base = key.strip_suffix("[]").unwrap_or(key);
            !known.contains(&base)
        }) {
            Some(unknown) => Err(ApiError::field(
                "unknown_parameter",
                unknown.clone(),
                format!(
                    "unknown parameter '{unknown}'; this endpoint takes {}",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// The pairs without those whose value is empty: an HTML form sends every field, filled in or
    /// not, and an empty field means "no filter" there.
    pub fn without_empty(&self) -> QueryPairs {
        QueryPairs(
            self.0
                .iter()
                .filter(|(_, value)| !value.trim().is_empty())
                .cloned()
                .collect(),
        )
    }

    /// WorkOS pagination parameters.
    ///
    /// # Errors
    ///
    /// 422 naming `limit`, `order` or `before` when a value is out of range or malformed, or
    /// both cursors are given.
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let cursor = |name| {
            self.get(name)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let (before, after) = (cursor("before"), cursor("after"));
        if before.is_some() && after.is_some() {
            return Err(ApiError::field(
                "invalid_value",
                "before",
                "give either before or after, not both",
            ));
        }
        Ok(PageRequest {
            limit: self.limit()?,
            order: self.order()?,
            before,
            after,
        })
    }

    /// `limit`: 1 to 100, default 10.
    ///
    /// # Errors
    ///
    /// 422 naming `limit`.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None | Some("") => Ok(10),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=100).contains(limit))
                .ok_or_else(|| {
                    ApiError::field(
                        "invalid_value",
                        "limit",
                        format!("limit must be an integer from 1 to 100, got '{text}'"),
                    )
                }),
        }
    }

    /// `order`: `asc`, or `desc` (also spelled `normal`), the default.
    ///
    /// # Errors
    ///
    /// 422 naming `order`.
    pub fn order(&self) -> Result<Order, ApiError> {
        match self.get("order") {
            None | Some("" | "desc" | "normal") => Ok(Order::Desc),
            Some("asc") => Ok(Order::Asc),
            Some(other) => Err(ApiError::field(
                "invalid_value",
                "order",
                format!("order must be 'asc', 'desc' or 'normal', got '{other}'"),
            )),
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte). Query
/// strings and portal forms both come through here, so a NUL in any key or value is refused
/// (422 naming the parameter).
pub(crate) fn decode_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(key)?, percent_decode(value)?))
        })
        .collect::<Result<Vec<(String, String)>, ApiError>>()?;
    let problems: Vec<_> = pairs
        .iter()
        .filter_map(|(key, value)| {
            let name = key.replace('\0', "\\u0000");
            nul_problem(key, &name).or_else(|| nul_problem(value, &name))
        })
        .collect();
    refuse_nul(problems)?;
    Ok(pairs)
}

fn percent_decode(text: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadRequest {
        code: "invalid_query",
        message: format!("The query string has a malformed escape in '{text}'."),
    };
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [input.next().ok_or_else(bad)?, input.next().ok_or_else(bad)?];
                let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
                bytes.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| ApiError::BadRequest {
        code: "invalid_query",
        message: "The query string is not valid UTF-8.".into(),
    })
}
