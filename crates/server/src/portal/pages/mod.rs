//! One file per section of the portal, plus its embedded assets.

pub(crate) mod assets;
pub(crate) mod events;
pub(crate) mod exports;
pub(crate) mod streams;

use super::html::esc;
use super::session::CSRF_FIELD;
use trailmark_domain::FieldProblem;
use trailmark_store::PortalSession;

/// The hidden field every form carries.
fn csrf_input(session: &PortalSession) -> String {
    format!(
        r#"<input type="hidden" name="{CSRF_FIELD}" value="{}">"#,
        esc(&session.csrf_token)
    )
}

/// A list of problems as a notice.
fn problems_notice(problems: &[FieldProblem]) -> String {
    if problems.is_empty() {
        return String::new();
    }
    let items: String = problems
        .iter()
        .map(|p| format!("<li>{}</li>", esc(&p.message)))
        .collect();
    format!(r#"<div class="notice error" role="alert"><ul>{items}</ul></div>"#)
}
