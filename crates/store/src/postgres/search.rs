//! Event search on PostgreSQL: the same filters as the embedded store, as one SQL query.

use tokio_postgres::types::ToSql;
use trailmark_domain::query::{ActionPattern, EventFilter};

use super::text_blocks::{self, FilterCache};
use super::{EVENT_COLUMNS, event_columns};
use crate::StoreError;
use crate::model::{Order, SearchPage, SearchRequest};
use crate::rows::EventColumns;

type Param = Box<dyn ToSql + Sync + Send>;

/// Runs a search, turning each row's columns into an `E` with `decode`.
///
/// Free text is matched row by row, in the ranges of the log its trigram filters leave
/// ([`text_blocks::candidate_ranges`]).
pub(super) async fn search<E>(
    client: &tokio_postgres::Client,
    filters: &FilterCache,
    organization_id: &str,
    request: &SearchRequest,
    decode: fn(EventColumns) -> Result<E, StoreError>,
) -> Result<SearchPage<E>, StoreError> {
    let mut sql = SearchSql::new(organization_id);
    sql.add_filter(request);
    if let Some(text) = &request.filter.text {
        // As the text is stored (`appender::text`).
        let text = text.to_lowercase().replace('\0', "");
        sql.add_text(&text);
        if let Some(ranges) =
            text_blocks::candidate_ranges(client, filters, organization_id, &text).await?
        {
            sql.add_ranges(&ranges);
        }
    }
    let conditions = sql.conditions.join(" AND ");
    let direction = if request.order == Order::Asc {
        "ASC"
    } else {
        "DESC"
    };
    let fetch = request.limit + 1;
    let filter = &request.filter;
    // With an actor and a time range, the (actor, time) index holds exactly the candidates,
    // but the planner, which expects matches spread evenly through the log, would rather walk
    // the primary key from the end until it has a page: across most of the log when the range
    // lies far back. Ordering by an expression no index yields makes it choose by selectivity;
    // the page's sequences are then picked from that index alone (an index-only scan) before
    // only those rows are read.
    let query = if !filter.actor_ids.is_empty()
        && (filter.range_start.is_some() || filter.range_end.is_some())
    {
        format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.organization_id = $1 AND e.sequence IN (
               SELECT e.sequence FROM events e WHERE {conditions}
               ORDER BY e.sequence + 0 {direction} LIMIT {fetch})
             ORDER BY e.sequence {direction}"
        )
    } else {
        format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE {conditions} ORDER BY e.sequence {direction} LIMIT {fetch}"
        )
    };
    let params: Vec<&(dyn ToSql + Sync)> = sql
        .values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client.query(&query, &params).await?;
    let mut events = rows
        .iter()
        .map(|row| decode(event_columns(row)?))
        .collect::<Result<Vec<_>, _>>()?;
    let more = events.len() > request.limit;
    events.truncate(request.limit);
    Ok(SearchPage { events, more })
}

/// The WHERE clause of a search, built up with numbered parameters.
struct SearchSql {
    conditions: Vec<String>,
    values: Vec<Param>,
}

impl SearchSql {
    fn new(organization_id: &str) -> Self {
        SearchSql {
            conditions: vec!["e.organization_id = $1".into()],
            values: vec![Box::new(organization_id.to_owned())],
        }
    }

    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    /// Keeps the sequences in `ranges` (`[start, end)` each) only.
    fn add_ranges(&mut self, ranges: &[(i64, i64)]) {
        let mut alternatives = Vec::with_capacity(ranges.len());
        for &(start, end) in ranges {
            let start = self.bind(start);
            alternatives.push(if end == i64::MAX {
                format!("e.sequence >= {start}")
            } else {
                let end = self.bind(end);
                format!("(e.sequence >= {start} AND e.sequence < {end})")
            });
        }
        self.conditions
            .push(format!("({})", alternatives.join(" OR ")));
    }

    fn add_filter(&mut self, request: &SearchRequest) {
        let filter = &request.filter;
        // A purged stub has no content left to match; unfiltered reads (cursors) still list it.
        if *filter != EventFilter::default() {
            self.conditions.push("e.purged_at IS NULL".into());
        }
        if let Some(after) = request.after {
            let p = self.bind(i64::try_from(after).unwrap_or(i64::MAX));
            self.conditions.push(format!("e.sequence > {p}"));
        }
        if let Some(before) = request.before {
            let p = self.bind(i64::try_from(before).unwrap_or(i64::MAX));
            self.conditions.push(format!("e.sequence < {p}"));
        }
        if let Some(start) = filter.range_start {
            let p = self.bind(start.unix_millis());
            self.conditions.push(format!("e.occurred_at >= {p}"));
        }
        if let Some(end) = filter.range_end {
            let p = self.bind(end.unix_millis());
            self.conditions.push(format!("e.occurred_at <= {p}"));
        }
        if !filter.actions.is_empty() {
            let mut alternatives = Vec::new();
            let exact: Vec<String> = filter
                .actions
                .iter()
                .filter_map(|pattern| match pattern {
                    ActionPattern::Exact(action) => Some(action.clone()),
                    ActionPattern::Prefix(_) => None,
                })
                .collect();
            if !exact.is_empty() {
                let p = self.bind(exact);
                alternatives.push(format!("e.action = ANY({p})"));
            }
            for pattern in &filter.actions {
                // A byte-order range on the prefix uses the (organization_id, action) index
                // (the column is COLLATE "C"), and is case-sensitive where LIKE may not be.
                if let ActionPattern::Prefix(prefix) = pattern {
                    let low = self.bind(prefix.clone());
                    let high = self.bind(format!("{prefix}\u{10FFFF}"));
                    alternatives.push(format!("(e.action >= {low} AND e.action < {high})"));
                }
            }
            self.conditions
                .push(format!("({})", alternatives.join(" OR ")));
        }
        if !filter.actor_ids.is_empty() {
            let p = self.bind(filter.actor_ids.clone());
            self.conditions.push(format!("e.actor_id = ANY({p})"));
        }
        if !filter.actor_names.is_empty() {
            let p = self.bind(filter.actor_names.clone());
            self.conditions.push(format!("e.actor_name = ANY({p})"));
        }
        for (column, values) in [
            ("target_id", &filter.target_ids),
            ("target_type", &filter.target_types),
        ] {
            if !values.is_empty() {
                let p = self.bind(values.clone());
                self.conditions.push(format!(
                    "e.sequence IN (SELECT t.sequence FROM event_targets t
                       WHERE t.organization_id = $1 AND t.{column} = ANY({p}))"
                ));
            }
        }
    }

    /// Free text: `text` (lower-cased, as stored) as a substring of each row's search text.
    fn add_text(&mut self, text: &str) {
        let escaped = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let p = self.bind(format!("%{escaped}%"));
        self.conditions.push(format!("e.search_text LIKE {p}"));
    }
}
