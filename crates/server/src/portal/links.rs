//! Portal links (wire doc §3): `POST /portal/generate_link` issues a one-time link, and
//! `GET /portal?token=…` opens it.
//!
//! A link is `{public_url}/portal?token={64 hex}`; the token is 32 random bytes, stored only as
//! its SHA-256. It works once (marked used in the same commit that opens the session) and for
//! 5 minutes, as WorkOS's. Issuing a link for `audit_logs` needs a `read` key; for
//! `log_streams`, which can change where the organization's events go, an `admin` key.
//!
//! Opening answers with a small page that moves on to the section with a `<meta>` refresh
//! rather than a redirect: the link is usually clicked in another site (the app), and browsers
//! withhold `SameSite=Strict` cookies from a redirect chain that began cross-site, so the first
//! page would not see the session just opened.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde_json::{Value, json};
use trailmark_app::AppError;
use trailmark_domain::Timestamp;
use trailmark_domain::api_key::Scope;
use trailmark_domain::id::IdKind;
use trailmark_domain::portal::PortalIntent;
use trailmark_store::{NewPortalSession, PortalLink, PortalRedemption};

use super::html::{self, Frame};
use super::session::{Portal, renewed_expiry, session_cookie};
use super::{PortalError, record};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryPairs};
use crate::state::AppState;
use crate::web::{random_token, token_hash};

/// Longest URL accepted for `return_url` and `success_url`.
const URL_MAX_CHARS: usize = 2000;
/// Longest e-mail address (RFC 5321's path limit).
const EMAIL_MAX_CHARS: usize = 320;

/// `POST /portal/generate_link` with `{"organization", "intent", "return_url"?, "success_url"?,
/// "admin_emails"?, "it_contact_emails"?, "intent_options"?}` → 201 `{"link"}`. Other keys are
/// ignored, as WorkOS's SDKs send different sets.
pub async fn generate(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let organization_id = match body.get("organization") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => {
            return Err(ApiError::field(
                "required",
                "organization",
                "organization is required and must be an organization id",
            ));
        }
    };
    let intent = match body.get("intent") {
        Some(Value::String(text)) => PortalIntent::parse(text).ok_or_else(|| {
            ApiError::field(
                "invalid_value",
                "intent",
                format!(
                    "intent '{text}' is not served by Trailmark's portal; it serves {}",
                    PortalIntent::SERVED
                ),
            )
        })?,
        _ => {
            return Err(ApiError::field(
                "required",
                "intent",
                format!("intent is required: one of {}", PortalIntent::SERVED),
            ));
        }
    };
    caller.require(match intent {
        PortalIntent::AuditLogs => Scope::Read,
        PortalIntent::LogStreams => Scope::Admin,
    })?;
    caller.require_organization(&organization_id)?;
    let return_url = web_url(&body, "return_url")?;
    let success_url = web_url(&body, "success_url")?;
    let email = ["admin_emails", "it_contact_emails"]
        .iter()
        .filter_map(|field| body.get(*field).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .find(|email| email.contains('@') && email.chars().count() <= EMAIL_MAX_CHARS)
        .map(str::to_owned);
    let token = random_token()?;
    let now = Timestamp::now();
    state
        .app
        .issue_portal_link(
            PortalLink {
                token_hash: token_hash(&token),
                organization_id,
                intent,
                email,
                return_url,
                success_url,
                created_at: now,
                expires_at: now.plus_millis(state.portal_link_ttl.as_millis() as i64),
            },
            &caller.origin(),
        )
        .await
        .map_err(|error| match error {
            // WorkOS's wording (the Node SDK's fixture).
            AppError::OrganizationNotFound(id) => {
                ApiError::NotFound(format!("Could not find an organization with the id, {id}."))
            }
            other => ApiError::from(other),
        })?;
    let link = format!(
        "{}/portal?token={token}",
        state.config.public_url.trim_end_matches('/')
    );
    Ok((StatusCode::CREATED, Json(json!({"link": link}))))
}

/// An optional `http(s)` URL field: anything else could run script from the portal's "back"
/// link (`javascript:`), so it is refused.
fn web_url(body: &Value, field: &'static str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(url))
            if (url.starts_with("https://") || url.starts_with("http://"))
                && url.chars().count() <= URL_MAX_CHARS
                && !url.chars().any(char::is_control) =>
        {
            Ok(Some(url.clone()))
        }
        Some(_) => Err(ApiError::field(
            "invalid_value",
            field,
            format!(
                "{field} must be an http:// or https:// URL of at most {URL_MAX_CHARS} characters"
            ),
        )),
    }
}

/// `GET /portal?token=…`: opens the link (once) and sets the session cookie; without a token,
/// an open session goes to its section.
pub async fn open(
    State(state): State<AppState>,
    query: QueryPairs,
    portal: Result<Portal, PortalError>,
) -> Result<Response, PortalError> {
    let Some(token) = query.get("token").filter(|token| !token.is_empty()) else {
        return portal.map(|portal| html::see_other(home(portal.session.intent)));
    };
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PortalError::LinkInvalid);
    }
    let secret = random_token()?;
    let now = Timestamp::now();
    let session = NewPortalSession {
        id: IdKind::PortalSession.generate().into_string(),
        secret_hash: token_hash(&secret),
        csrf_token: random_token()?,
        expires_at: renewed_expiry(now),
    };
    let session = match state
        .app
        .redeem_portal_link(token_hash(token), session)
        .await
        .map_err(ApiError::from)?
    {
        PortalRedemption::Opened(session) => session,
        PortalRedemption::AlreadyUsed => return Err(PortalError::LinkUsed),
        PortalRedemption::Expired => return Err(PortalError::LinkExpired),
        PortalRedemption::Unknown => return Err(PortalError::LinkInvalid),
    };
    record(
        &state,
        &session,
        "trailmark.portal.session.opened",
        json!({"id": session.id, "type": "portal_session"}),
        json!({"intent": session.intent.as_str()}),
    )
    .await?;
    let next = home(session.intent);
    let frame = Frame {
        title: "Opening your portal",
        session: None,
        organization_name: "",
        refresh: Some(format!("0; url={next}")),
    };
    let body = html! { p { a href=(next) { "Continue to the portal" } } };
    let mut response = html::page(StatusCode::OK, &frame, body);
    let cookie = session_cookie(&secret, &state.config.public_url);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The first page of a section.
fn home(intent: PortalIntent) -> &'static str {
    match intent {
        PortalIntent::AuditLogs => "/portal/events",
        PortalIntent::LogStreams => "/portal/streams",
    }
}
