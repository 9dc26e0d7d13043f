//! Trailmark's own log: what operators did in the console (sign-ins, failed ones, every
//! change), newest first, with the search API's filters.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use trailmark_store::{Order, SearchRequest};

use crate::console::ConsoleError;
use crate::console::html::{field_problems, page, problems_notice};
use crate::console::session::Operator;
use crate::error::ApiError;
use crate::extract::QueryPairs;
use crate::portal::pages::events::{FILTER_FIELDS, event_row};
use crate::routes::search::filter_from_query;
use crate::state::AppState;
use crate::web::query_string;

/// Events a page shows.
const PAGE_SIZE: usize = 50;

/// `GET /console/log?<filters>&before=…`.
pub async fn show(
    State(state): State<AppState>,
    operator: Operator,
    query: QueryPairs,
) -> Result<Response, ConsoleError> {
    let filters: Vec<(&str, &str)> = FILTER_FIELDS
        .iter()
        .map(|(name, _, _)| (*name, query.get(name).unwrap_or_default()))
        .collect();
    let before = query.get("before").and_then(|b| b.parse::<u64>().ok());
    let (rows, older, problems) = match filter_from_query(&query.without_empty()) {
        Ok(filter) => {
            let found = state
                .app
                .trailmark_log(SearchRequest {
                    filter,
                    after: None,
                    before,
                    order: Order::Desc,
                    limit: PAGE_SIZE,
                })
                .await?;
            let older = found
                .events
                .last()
                .filter(|_| found.more)
                .map(|e| e.sequence);
            (found.events, older, Vec::new())
        }
        Err(ApiError::Malformed(problems)) => (Vec::new(), None, field_problems(&problems)),
        Err(other) => return Err(other.into()),
    };
    let older = older.map(|older| {
        let older = older.to_string();
        format!(
            "/console/log?{}",
            query_string(filters.iter().copied().chain([("before", older.as_str())]))
        )
    });
    let body = html! {
        p class="muted" { "What operators did in this console, as Trailmark recorded it in its own log." }
        form class="filters" method="get" action="/console/log" role="search" {
            details {
                summary { "Filters" }
                fieldset {
                    @for ((name, label, kind), (_, value)) in FILTER_FIELDS.iter().zip(&filters) {
                        label { (label) input type=(kind) name=(name) value=(value) step=[(*kind == "datetime-local").then_some("1")]; }
                    }
                }
                div class="actions" { button type="submit" { "Apply filters" } " " a href="/console/log" { "Clear" } }
            }
        }
        (problems_notice(&problems))
        @if rows.is_empty() {
            p class="empty" { "Nothing recorded yet." }
        } @else {
            div class="scroll" {
                table class="events" {
                    thead { tr { th { "#" } th { "Occurred (UTC)" } th { "Action" } th { "Operator" } th { "Target" } th { "From" } } }
                    tbody { @for event in &rows { (event_row(event, None)) } }
                }
            }
        }
        @if let Some(older) = &older { nav class="paging" { a rel="next" href=(older) { "Older →" } } }
    };
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(page(status, "Trailmark log", Some(&operator.session), body))
}
