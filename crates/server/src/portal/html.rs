//! HTML writing: escaping, URL encoding, the shared layout and the error page. Pages are built
//! with `format!`; every value that did not come from this source file goes through [`esc`] (in
//! text and in double-quoted attributes) or [`url`] (in query strings).

use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use trailmark_domain::portal::PortalIntent;
use trailmark_store::PortalSession;

/// Text made safe for HTML content and double- or single-quoted attribute values.
pub(crate) struct Esc<'a>(&'a str);

pub(crate) fn esc(text: &str) -> Esc<'_> {
    Esc(text)
}

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                other => fmt::Write::write_char(f, other)?,
            }
        }
        Ok(())
    }
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

/// What the layout needs to know about the page beyond its body.
pub(crate) struct Frame<'a> {
    pub title: &'a str,
    pub session: Option<&'a PortalSession>,
    pub organization_name: &'a str,
    /// A `<meta http-equiv="refresh">` value: `"1"` reloads after a second (a pending export),
    /// `"0; url=/portal/events"` moves on.
    pub refresh: Option<String>,
}

/// A whole page: head, header with the section's navigation and the way back to the app, and
/// `body` (already-escaped HTML).
pub(crate) fn page(status: StatusCode, frame: &Frame<'_>, body: &str) -> Response {
    let refresh = frame
        .refresh
        .as_deref()
        .map(|content| format!(r#"<meta http-equiv="refresh" content="{}">"#, esc(content)))
        .unwrap_or_default();
    let nav = frame.session.map_or_else(String::new, |session| {
        let section = match session.intent {
            PortalIntent::AuditLogs => r#"<a href="/portal/events">Audit log</a>"#,
            PortalIntent::LogStreams => r#"<a href="/portal/streams">Log streams</a>"#,
        };
        let back = session
            .return_url
            .as_deref()
            .map_or_else(String::new, |url| {
                format!(
                    r#"<a class="back" href="{}">← Back to the app</a>"#,
                    esc(url)
                )
            });
        format!(r#"<nav aria-label="Portal">{section}{back}</nav>"#)
    });
    let organization = if frame.organization_name.is_empty() {
        String::new()
    } else {
        format!(
            r#"<span class="org">{}</span>"#,
            esc(frame.organization_name)
        )
    };
    let html = format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
{refresh}<title>{title} · Audit log portal</title>
<link rel="stylesheet" href="/portal/assets/portal.css">
<script src="/portal/assets/portal.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header><span class="brand">Audit log portal</span>{organization}{nav}</header>
<main id="main">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"##,
        title = esc(frame.title),
    );
    html_response(status, html)
}

/// A page explaining why a request was refused.
pub(crate) fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let frame = Frame {
        title,
        session: None,
        organization_name: "",
        refresh: None,
    };
    page(
        status,
        &frame,
        &format!(r#"<p class="notice error">{}</p>"#, esc(detail)),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_neutralizes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x") & 'y'</script>"#).to_string(),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(esc("plain text é").to_string(), "plain text é");
    }

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
}
