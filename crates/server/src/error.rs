//! `ApiError`: the one place that knows HTTP statuses and WorkOS error bodies (wire doc §5).
//!
//! Handlers return `Result<_, ApiError>`; every failure leaves the server through
//! [`ApiError::into_response`], which writes the WorkOS-shaped JSON body. Unexpected failures
//! (storage, bugs) are logged with their cause and answered with a generic body, never the cause.
//!
//! Shapes, chosen so each SDK raises the right exception:
//! - 400 invalid event: `{message, code: "invalid_audit_log_event", errors: [{instancePath, message}]}`
//!   (`code` *and* `errors` make Node raise `BadRequestException`);
//! - 422 validation: `{message: "Validation failed.", errors: [{code, field, message}]}`;
//! - 401 `{message, code: "unauthorized"}`, 403 `{message, code: "forbidden"}`, 404 `{message}`;
//! - 429 `{message, code: "rate_limit_exceeded"}` with `Retry-After` in whole seconds;
//! - never an `error` key: Node would turn the response into an `OauthException`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use trailmark_app::{AppError, NotFoundKind};
use trailmark_domain::{FieldProblem, PathProblem, Problems};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("request validation failed")]
    Malformed(Vec<FieldProblem>),
    #[error("invalid audit log event")]
    InvalidEvent(Vec<PathProblem>),
    /// A 400 with a message and a machine-readable code (unparseable JSON, for example).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body must be JSON")]
    UnsupportedMediaType,
    /// Over a rate limit: `by` names it ("address", "API key").
    #[error("too many requests by {by}")]
    RateLimited {
        by: &'static str,
        per_minute: u32,
        retry_after: std::time::Duration,
    },
    /// The body did not arrive within the listener's body timeout.
    #[error("the request body did not arrive within {seconds} s")]
    RequestTimeout { seconds: u64 },
    #[error("{0} is already in use")]
    Conflict(&'static str),
    /// Too much work piled up (429 with `Retry-After`); `code` and the message name the limit.
    #[error("{message}")]
    TooMuchWork { code: &'static str, message: String },
    /// Refused for a moment (503 with `Retry-After`); `code` says why.
    #[error("{message}")]
    Busy { code: &'static str, message: String },
    /// Under a legal hold (its reason), which the request did not force.
    #[error("the organization is under a legal hold")]
    LegalHold(String),
    /// Revoking this key (its id) would leave no unrestricted admin key; `force=true` does it.
    #[error("the last unrestricted admin key")]
    LastAdminKey(String),
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 422 naming one field.
    pub fn field(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Malformed(vec![FieldProblem {
            code,
            field: field.into(),
            message: message.into(),
        }])
    }

    /// WorkOS's 404 for an unknown organization.
    pub fn organization_not_found(id: &str) -> Self {
        ApiError::NotFound(format!("Organization not found: '{id}'."))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Malformed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidEvent(_) | ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } | ApiError::TooMuchWork { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Conflict(_) | ApiError::LegalHold(_) | ApiError::LastAdminKey(_) => {
                StatusCode::CONFLICT
            }
            ApiError::Busy { .. } | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Why the request was refused, as `trailmark_rejections_total` counts it.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Malformed(_) => "validation",
            ApiError::InvalidEvent(_) => "invalid_event",
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::Conflict(_) => "conflict",
            ApiError::Busy { .. } => "busy",
            ApiError::TooMuchWork { .. } => "too_much_work",
            ApiError::LegalHold(_) => "legal_hold",
            ApiError::LastAdminKey(_) => "last_admin_key",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON body for this error.
    pub fn body(&self) -> Value {
        match self {
            ApiError::Unauthorized => json!({
                "message": "Unauthorized: send a valid API key as 'Authorization: Bearer sk_…'.",
                "code": "unauthorized",
            }),
            ApiError::Forbidden(message) => json!({"message": message, "code": "forbidden"}),
            ApiError::NotFound(message) => json!({"message": message}),
            ApiError::Malformed(problems) => json!({
                "message": "Validation failed.",
                "errors": problems.iter().map(field_problem_json).collect::<Vec<_>>(),
            }),
            ApiError::InvalidEvent(problems) => json!({
                "message": "Invalid Audit Log event.",
                "code": "invalid_audit_log_event",
                "errors": problems.iter().map(path_problem_json).collect::<Vec<_>>(),
            }),
            ApiError::BadRequest { code, message } => json!({"message": message, "code": code}),
            ApiError::PayloadTooLarge { .. } => {
                json!({"message": self.to_string(), "code": "payload_too_large"})
            }
            ApiError::UnsupportedMediaType => json!({
                "message": "The request body must be JSON: send 'Content-Type: application/json'.",
                "code": "unsupported_media_type",
            }),
            ApiError::RateLimited {
                by,
                per_minute,
                retry_after,
            } => json!({
                "message": format!(
                    "Too many requests from this {by}: at most {per_minute} a minute. Retry after {} s.",
                    retry_after_seconds(*retry_after)
                ),
                "code": "rate_limit_exceeded",
            }),
            ApiError::RequestTimeout { seconds } => json!({
                "message": format!("The request body did not arrive within {seconds} s; send it faster or in smaller requests."),
                "code": "request_timeout",
            }),
            ApiError::Conflict(field) => json!({
                "message": format!("{field} is already in use."),
                "code": "conflict",
                "errors": [{"code": "conflict", "field": field}],
            }),
            ApiError::Busy { code, message } | ApiError::TooMuchWork { code, message } => {
                json!({"message": message, "code": code})
            }
            ApiError::LegalHold(reason) => json!({
                "message": format!(
                    "The organization is under a legal hold ({reason}). To erase anyway, send \"force\": true with a \"reason\"."
                ),
                "code": "legal_hold",
                "errors": [{"code": "legal_hold", "field": "force", "message": "the organization is under a legal hold"}],
            }),
            ApiError::LastAdminKey(id) => json!({
                "message": format!(
                    "'{id}' is the last unrestricted admin key: without it no key could manage keys. Create another admin key first, or send force=true to revoke it anyway."
                ),
                "code": "last_admin_key",
                "errors": [{"code": "last_admin_key", "field": "force", "message": "revoking the last unrestricted admin key needs force=true"}],
            }),
            ApiError::Unavailable(_) => json!({
                "message": "Storage is temporarily unavailable; retry shortly.",
                "code": "service_unavailable",
            }),
            ApiError::Internal(_) => {
                json!({"message": "Internal server error.", "code": "internal_error"})
            }
        }
    }
}

pub fn field_problem_json(problem: &FieldProblem) -> Value {
    json!({"code": problem.code, "field": problem.field, "message": problem.message})
}

pub fn path_problem_json(problem: &PathProblem) -> Value {
    json!({"instancePath": problem.instance_path, "message": problem.message})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        response.extensions_mut().insert(Rejection(self.reason()));
        if let ApiError::RateLimited { retry_after, .. } = &self
            && let Ok(value) = HeaderValue::from_str(&retry_after_seconds(*retry_after).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if let ApiError::TooMuchWork { .. } = &self {
            // About the time an export takes to be written.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still be on its way; the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Small, so SDKs that honour Retry-After without a cap (Python) retry promptly.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A refused response's reason, left on it for the middleware's count.
#[derive(Clone, Copy)]
pub(crate) struct Rejection(pub(crate) &'static str);
/// `Retry-After` in whole seconds, rounded up and at least 1 (WorkOS sends integers; a 0 would
/// have SDKs retry at once).
fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

impl From<Problems> for ApiError {
    fn from(problems: Problems) -> Self {
        match problems {
            Problems::Malformed(list) => ApiError::Malformed(list),
            Problems::Invalid(list) => ApiError::InvalidEvent(list),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Problems(problems) => ApiError::from(problems),
            AppError::OrganizationNotFound(id) => ApiError::organization_not_found(&id),
            // WorkOS's wording for each kind.
            AppError::NotFound { kind, id } => ApiError::NotFound(match kind {
                NotFoundKind::Event => format!("Audit Log Event not found: '{id}'."),
                NotFoundKind::Export => format!("Audit Log Export not found: '{id}'."),
                NotFoundKind::LogStream => format!("Log stream not found: '{id}'."),
                NotFoundKind::ApiKey => format!("API key not found: '{id}'."),
                NotFoundKind::Tile => format!("Tile not found: '{id}'."),
            }),
            AppError::Conflict(field) => ApiError::Conflict(field),
            AppError::Busy { code, message } => ApiError::Busy { code, message },
            AppError::TooMuchWork { code, message } => ApiError::TooMuchWork { code, message },
            AppError::LegalHold(reason) => ApiError::LegalHold(reason),
            AppError::LastAdminKey(id) => ApiError::LastAdminKey(id),
            AppError::Unavailable(reason) => ApiError::Unavailable(reason),
            AppError::Internal(reason) => ApiError::Internal(reason),
        }
    }
}
