//! One file per section of the portal, plus its embedded assets.

pub(crate) mod assets;
pub(crate) mod events;
pub(crate) mod exports;
pub(crate) mod streams;

use crate::web::CSRF_FIELD;
use maud::{Markup, html};
use trailmark_domain::FieldProblem;
use trailmark_store::PortalSession;

/// The hidden field every form carries.
fn csrf_input(session: &PortalSession) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf_token); }
}

/// A table's head row: one column heading per name.
fn column_heads(names: &[&str]) -> Markup {
    html! {
        thead {
            tr {
                @for name in names { th scope="col" { (name) } }
            }
        }
    }
}

/// A list of problems as a notice.
fn problems_notice(problems: &[FieldProblem]) -> Markup {
    html! {
        @if !problems.is_empty() {
            div class="notice error" role="alert" {
                ul {
                    @for problem in problems { li { (problem.message) } }
                }
            }
        }
    }
}
