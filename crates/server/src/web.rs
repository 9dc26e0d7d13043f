//! What the server's two sets of web pages — the Admin Portal (`portal/`) and the operators'
//! console (`console/`) — share: the security headers every page carries, session and CSRF
//! tokens, cookies, CSRF-checked form bodies, and small HTML helpers. Each set keeps its own
//! sessions (a portal session serves one organization's admin, a console session an
//! operator), cookie and layout.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_TYPE, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::extract::{QueryPairs, decode_query};
use crate::state::AppState;

/// The policy: this server's own stylesheet, script and images, connections (the live event
/// streams) and forms only back here, no framing, no `<base>` tricks, nothing else.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers of every page: the policy above, no framing, no referrer, no sniffing, and no
/// caching (pages show data to one session).
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The form field that carries the CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf";

/// 32 random bytes, hex-encoded: link tokens, cookie secrets, CSRF tokens.
pub(crate) fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(format!("no randomness for a session token: {e}")))?;
    Ok(hex::encode(bytes))
}

pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares secrets in time independent of where they differ (lengths are not secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A session cookie's `Set-Cookie` value: `HttpOnly; SameSite=Strict`, limited to `path`,
/// `Secure` when the public URL is `https`, and no `Max-Age` (it ends with the browser; the
/// server ends the session sooner).
pub(crate) fn session_cookie(name: &str, path: &str, secret: &str, public_url: &str) -> String {
    let secure = if public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={secret}; Path={path}; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that makes the browser forget a cookie.
pub(crate) fn cleared_cookie(name: &str, path: &str) -> String {
    format!("{name}=; Path={path}; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The value of the cookie `name`, if the request carries one that looks like a token (64 hex
/// digits); anything else is no cookie.
pub(crate) fn cookie_token(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Why a posted form was not accepted.
#[derive(Debug)]
pub(crate) enum FormRefusal {
    /// Not a form, or its CSRF token is missing or wrong.
    Csrf,
    /// Too large, or its encoding is broken.
    Api(ApiError),
}

/// The fields of a form posted with `parts`/`body`, if it is a URL-encoded form whose CSRF
/// field equals `expected`.
///
/// # Errors
///
/// [`FormRefusal::Csrf`] for anything but a form with the right token.
pub(crate) async fn csrf_checked_form(
    parts: Parts,
    body: axum::body::Body,
    state: &AppState,
    expected: &str,
) -> Result<QueryPairs, FormRefusal> {
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(FormRefusal::Csrf);
    }
    let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
        .await
        .map_err(|_| {
            FormRefusal::Api(ApiError::PayloadTooLarge {
                limit: state.config.max_body_bytes,
            })
        })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| FormRefusal::Csrf)?;
    let fields = QueryPairs(decode_query(text).map_err(FormRefusal::Api)?);
    let presented = fields.get(CSRF_FIELD).unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Err(FormRefusal::Csrf);
    }
    Ok(fields)
}

/// Percent-encodes `text` for a query string value (everything but unreserved characters).
pub(crate) fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A query string from pairs, skipping empty values.
pub(crate) fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{}={}", url(key), url(value)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A `303 See Other` to `location` (after a form post, so reloading does not post again).
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Adds a `Set-Cookie` header to `response`.
pub(crate) fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_encode_values_and_skip_empty_ones() {
        assert_eq!(
            query_string([
                ("actions", "user.*"),
                ("q", ""),
                ("actor_names", "Jon & Co")
            ]),
            "actions=user.%2A&actor_names=Jon%20%26%20Co"
        );
    }

    #[test]
    fn a_session_cookie_is_secure_only_behind_https() {
        let plain = session_cookie("trailmark_portal", "/portal", "ab", "http://127.0.0.1:8080");
        assert_eq!(
            plain,
            "trailmark_portal=ab; Path=/portal; HttpOnly; SameSite=Strict"
        );
        assert!(
            session_cookie("c", "/console", "ab", "https://audit.example.com")
                .ends_with("; Secure")
        );
    }

    #[test]
    fn a_cookie_token_is_found_among_other_cookies_and_must_look_right() {
        let secret = "a".repeat(64);
        let request = axum::http::Request::builder()
            .header(COOKIE, format!("theme=dark; trailmark_portal={secret}"))
            .body(())
            .expect("request");
        let (parts, ()) = request.into_parts();
        assert_eq!(cookie_token(&parts, "trailmark_portal"), Some(secret));
        let forged = axum::http::Request::builder()
            .header(COOKIE, "trailmark_portal=../../etc")
            .body(())
            .expect("request");
        let (parts, ()) = forged.into_parts();
        assert_eq!(cookie_token(&parts, "trailmark_portal"), None);
    }
}
