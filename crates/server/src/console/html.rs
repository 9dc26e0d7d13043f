//! The console's layout. Pages are `maud` templates, which escape every value spliced into
//! them (none uses `PreEscaped`), as the portal's are.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{DOCTYPE, Markup, html};
use trailmark_domain::FieldProblem;
use trailmark_store::OperatorSession;

use crate::web::CSRF_FIELD;

/// A whole page: head, the header with the sections and the sign-out button (when signed in),
/// and `body`.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    session: Option<&OperatorSession>,
    body: Markup,
) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " · Trailmark console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    a class="brand" href="/console" { "Trailmark console" }
                    @if let Some(session) = session {
                        nav aria-label="Console" {
                            a href="/console/organizations" { "Organizations" }
                            a href="/console/schemas" { "Event schemas" }
                            a href="/console/keys" { "API keys" }
                            a href="/console/log" { "Trailmark log" }
                            a href="/console/alerts" { "Alerts" }
                        }
                        form class="sign-out" method="post" action="/console/sign_out" {
                            (csrf_input(session))
                            span class="org" { (session.email) }
                            " "
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    crate::web::html_response(status, html.into_string())
}

/// The hidden field every form of a session carries.
pub(crate) fn csrf_input(session: &OperatorSession) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf_token); }
}

/// A list of problems as a notice.
pub(crate) fn problems_notice(problems: &[String]) -> Markup {
    html! {
        @if !problems.is_empty() {
            div class="notice error" role="alert" {
                ul {
                    @for problem in problems { li { (problem) } }
                }
            }
        }
    }
}

/// Field problems as lines.
pub(crate) fn field_problems(problems: &[FieldProblem]) -> Vec<String> {
    problems.iter().map(|p| p.message.clone()).collect()
}

/// A notice saying what was just done, from the `notice` query parameter's known values.
pub(crate) fn done_notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            p class="notice ok" role="status" { (text) }
        }
    }
}

/// A page that moves the browser on to `next` at once (`<meta http-equiv="refresh">`), where a
/// redirect would not do (see the OpenID Connect callback).
pub(crate) fn moving_on(title: &str, next: &str) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content={ "0; url=" (next) };
                title { (title) " · Trailmark console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body { main { p { a href=(next) { "Continue" } } } }
        }
    };
    crate::web::html_response(StatusCode::OK, html.into_string())
}
