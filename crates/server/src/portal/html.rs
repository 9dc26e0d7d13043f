//! HTML writing: the shared layout, the error page and URL encoding. Pages are `maud` templates,
//! checked at compile time: every value spliced into one, in text or in an attribute, is escaped
//! by the template engine, so no value reaches a page unescaped unless a template says so with
//! `PreEscaped` (none does). URL-building helpers encode query strings ([`url`],
//! [`query_string`]); the template then escapes the URL like any other attribute value.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{DOCTYPE, Markup, html};
use trailmark_domain::portal::PortalIntent;
use trailmark_store::PortalSession;

pub(crate) use crate::web::{query_string, see_other, url};

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
/// `body`.
pub(crate) fn page(status: StatusCode, frame: &Frame<'_>, body: Markup) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                @if let Some(refresh) = &frame.refresh {
                    meta http-equiv="refresh" content=(refresh);
                }
                title { (frame.title) " · Audit log portal" }
                link rel="stylesheet" href="/portal/assets/portal.css";
                script src="/portal/assets/portal.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    span class="brand" { "Audit log portal" }
                    @if !frame.organization_name.is_empty() {
                        span class="org" { (frame.organization_name) }
                    }
                    @if let Some(session) = frame.session {
                        nav aria-label="Portal" {
                            @match session.intent {
                                PortalIntent::AuditLogs => {
                                    a href="/portal/events" { "Audit log" }
                                }
                                PortalIntent::LogStreams => {
                                    a href="/portal/streams" { "Log streams" }
                                }
                            }
                            @if let Some(url) = &session.return_url {
                                a class="back" href=(url) { "← Back to the app" }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (frame.title) }
                    (body)
                }
            }
        }
    };
    crate::web::html_response(status, html.into_string())
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
        html! { p class="notice error" { (detail) } },
    )
}
