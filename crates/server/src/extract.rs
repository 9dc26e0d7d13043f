//! Extractors that turn bad input into 4xx JSON errors naming the problem, where axum's own
//! would answer in plain text.
//!
//! - [`JsonBody`]: `Content-Type` must be JSON (415), the body must fit the limit (413) and be
//!   valid UTF-8 JSON (400, with line and column). Nesting deeper than 128 levels is refused by
//!   the parser before it can exhaust the stack.
//! - [`QueryPairs`]: the raw `key=value` pairs, so list parameters can be checked one by one and
//!   repeated keys (`actions=a&actions=b`) are kept.
//! - [`QueryPairs::page`]: WorkOS pagination (`limit` 1–100, default 10; `order` `asc`, `desc` or
//!   `normal`; `before`/`after`), with out-of-range values refused (422), never clamped.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde_json::Value;
use trailmark_store::{Order, PageRequest};

use crate::error::ApiError;
use crate::state::AppState;

/// A request body that parsed as JSON.
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
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
                    ApiError::PayloadTooLarge {
                        limit: state.config.max_body_bytes,
                    }
                } else {
                    ApiError::BadRequest {
                        code: "invalid_body",
                        message: format!("The request body could not be read: {rejection}"),
                    }
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| ApiError::BadRequest {
                code: "invalid_json",
                message: format!("The request body is not valid JSON: {error}."),
            })
    }
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

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte).
pub(crate) fn decode_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(key)?, percent_decode(value)?))
        })
        .collect()
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
