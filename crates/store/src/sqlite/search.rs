//! How a search becomes SQL.
//!
//! A page is the `limit + 1` first matches in sequence order, and the log is large, so the
//! question is always how few rows SQLite must look at to find them. Two plans bound that:
//!
//! - **Newest first**: walk the log in the page's order and test each event. Cheap when the
//!   filter matches often (`actions=user.*`: half the log), hopeless when it matches rarely.
//! - **Index first**: read the matching sequences from an index, keep the first `limit + 1` by
//!   sequence, and only then read those events. Cheap when the filter matches rarely, costly
//!   when it matches often (every match is looked at, then sorted).
//!
//! SQLite has no statistics to choose between them, so a filtered search runs both, one after
//! the other, over disjoint ranges of the log: first newest-first over the [`WINDOW`] sequences
//! where the page starts, then, only if those held too few matches, index-first over the rest.
//! Either way no search looks at more than about `WINDOW` events plus the matches of its most
//! selective index, whatever the filter's selectivity.
//!
//! A free-text search is driven by the FTS index instead, in rowid order: events are inserted
//! in sequence order and never deleted, so within one organization rowid order is sequence
//! order, and FTS5 yields matches lazily in that order (the page needs only the first few).
//!
//! Retention's purged stubs are left out of filtered searches; the indexes on the filtered
//! columns are partial (`WHERE purged_at IS NULL`, migration 0002), so they only hold live
//! events and index-first reads never touch the table to check.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};
use trailmark_domain::query::{ActionPattern, EventFilter};

use crate::StoreError;
use crate::model::{Order, SearchRequest};

/// Sequences a filtered search tests one by one before it turns to the indexes. Past this, an
/// index read costs less: a filter that found fewer than `limit + 1` matches here matches at
/// most about one event in `WINDOW / (limit + 1)`.
const WINDOW: i64 = 2_048;

/// The columns every search statement returns, in the order `event_from_row` reads them.
pub(crate) const EVENT_COLUMNS: &str =
    "e.id, e.organization_id, e.sequence, e.received_at, e.leaf_hash, e.body, e.purged_at";

/// One statement of a search and its parameters.
#[derive(Debug, Clone)]
pub struct SearchStatement {
    pub sql: String,
    pub values: Vec<Value>,
}

/// The statements that answer `request`, in order. Each returns up to `limit + 1` rows of
/// [`EVENT_COLUMNS`] in the requested order, over a range of sequences that follows the
/// previous statement's; the page is their rows concatenated, stopping once `limit + 1` rows are
/// in hand. Run them in one read transaction: the plan depends on the log's size.
///
/// Public (hidden) so the read benchmark runs exactly this SQL as its raw ceiling.
///
/// # Errors
///
/// A database error reading the log's size.
#[doc(hidden)]
pub fn search_statements(
    connection: &Connection,
    organization_id: &str,
    request: &SearchRequest,
) -> Result<Vec<SearchStatement>, StoreError> {
    let filter = &request.filter;
    let descending = request.order == Order::Desc;
    // [low, high): the sequences the request allows.
    let low = request.after.map(|a| to_sql(a).saturating_add(1));
    let high = request.before.map(to_sql);
    let fetch = request.limit + 1;
    let direction = if descending { "DESC" } else { "ASC" };

    if *filter == EventFilter::default() {
        let mut s = Builder::new(organization_id);
        let bounds = s.bounds("e", low, high);
        return Ok(vec![s.finish(format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.organization_id = ?1{bounds}
             ORDER BY e.sequence {direction} LIMIT {fetch}"
        ))]);
    }
    if let Some(text) = &filter.text {
        return Ok(vec![text_statement(
            organization_id,
            filter,
            text,
            low,
            high,
            direction,
            fetch,
        )]);
    }

    // The window: WINDOW sequences from where the page starts.
    let size: i64 = connection
        .prepare_cached("SELECT size FROM log_heads WHERE organization_id = ?1")?
        .query_row([organization_id], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let (window, rest) = if descending {
        let start = high.map_or(size, |high| high.min(size));
        let edge = start.saturating_sub(WINDOW);
        if low.is_some_and(|low| low >= edge) || edge <= 0 {
            ((low, high), None)
        } else {
            ((Some(edge), high), Some((low, Some(edge))))
        }
    } else {
        let start = low.unwrap_or(0);
        let edge = start.saturating_add(WINDOW);
        if high.is_some_and(|high| high <= edge) || edge >= size {
            ((low, high), None)
        } else {
            ((low, Some(edge)), Some((Some(edge), high)))
        }
    };
    let mut statements = vec![window_statement(
        organization_id,
        filter,
        window,
        direction,
        fetch,
    )];
    if let Some(rest) = rest {
        statements.push(indexed_statement(
            organization_id,
            filter,
            rest,
            direction,
            fetch,
        ));
    }
    Ok(statements)
}

/// Newest first (in the page's order) over `range`, testing every event. The filtered columns
/// are written `+e.column` so SQLite cannot choose their indexes and walks the range instead.
fn window_statement(
    organization_id: &str,
    filter: &EventFilter,
    (low, high): (Option<i64>, Option<i64>),
    direction: &str,
    fetch: usize,
) -> SearchStatement {
    let mut s = Builder::new(organization_id);
    let bounds = s.bounds("e", low, high);
    let mut conditions = s.column_conditions(filter, "e", Indexes::None);
    for (column, values) in target_filters(filter) {
        // Bounded by the window, the list of matching sequences is short.
        let list = s.list(values);
        let inner_bounds = s.bounds("t", low, high);
        conditions.push(format!(
            "e.sequence IN (SELECT t.sequence FROM event_targets t WHERE t.organization_id = ?1
               AND t.{column} IN ({list}){inner_bounds})"
        ));
    }
    s.finish(format!(
        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.organization_id = ?1 AND e.purged_at IS NULL{bounds}{}
         ORDER BY e.sequence {direction} LIMIT {fetch}",
        and_all(&conditions)
    ))
}

/// Index first over `range`: the page's sequences are picked from the indexes alone, then only
/// those events are read.
fn indexed_statement(
    organization_id: &str,
    filter: &EventFilter,
    (low, high): (Option<i64>, Option<i64>),
    direction: &str,
    fetch: usize,
) -> SearchStatement {
    let mut s = Builder::new(organization_id);
    // SQLite has no statistics to choose an index with, and left alone it walks the sequence
    // index because that one needs no sort. A time range leaves only a few weeks of a long log:
    // with an actor, the (actor, time) index holds exactly the actor's events in the range, and
    // drives; otherwise, unless an equality (an actor name, an exact action) names fewer events,
    // the time index must drive. The other indexes are then hidden from the planner (an action
    // prefix's index would look as good to it) and the order comes from a sort.
    let ranged = filter.range_start.is_some() || filter.range_end.is_some();
    let indexes = if ranged && !filter.actor_ids.is_empty() {
        Indexes::ActorTime
    } else if ranged
        && filter.actor_names.is_empty()
        && !filter
            .actions
            .iter()
            .any(|pattern| matches!(pattern, ActionPattern::Exact(_)))
    {
        Indexes::Time
    } else {
        Indexes::All
    };
    let order = match indexes {
        Indexes::All => "i.sequence",
        _ => "+i.sequence",
    };
    let columns = s.column_conditions(filter, "i", indexes);
    let targets = target_filters(filter);
    let inner = if columns.is_empty() {
        // Only target filters: the first one's index yields sequences in order; an event with
        // several matching targets is listed once.
        let ((column, values), others) = match targets.split_first() {
            Some((first, others)) => (*first, others),
            None => (("target_id", &[][..]), &[][..]),
        };
        let list = s.list(values);
        let bounds = s.bounds("t", low, high);
        let mut conditions = Vec::new();
        for (other, values) in others {
            let list = s.list(values);
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM event_targets u WHERE u.organization_id = ?1
                   AND u.sequence = t.sequence AND u.{other} IN ({list}))"
            ));
        }
        format!(
            "SELECT DISTINCT t.sequence FROM event_targets t WHERE t.organization_id = ?1
               AND t.{column} IN ({list}){bounds}{}
             ORDER BY t.sequence {direction} LIMIT {fetch}",
            and_all(&conditions)
        )
    } else {
        let bounds = s.bounds("i", low, high);
        let mut conditions = columns;
        for (column, values) in targets {
            let list = s.list(values);
            conditions.push(if column == "target_id" {
                // A target id names one object: few events, a short list to look up in.
                format!(
                    "i.sequence IN (SELECT t.sequence FROM event_targets t WHERE t.organization_id = ?1
                       AND t.target_id IN ({list}))"
                )
            } else {
                // A target type may cover most of the log: tested event by event instead.
                format!(
                    "EXISTS (SELECT 1 FROM event_targets t WHERE t.organization_id = ?1
                       AND t.sequence = i.sequence AND t.{column} IN ({list}))"
                )
            });
        }
        format!(
            "SELECT i.sequence FROM events i WHERE i.organization_id = ?1 AND i.purged_at IS NULL{bounds}{}
             ORDER BY {order} {direction} LIMIT {fetch}",
            and_all(&conditions)
        )
    };
    s.finish(format!(
        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.organization_id = ?1 AND e.purged_at IS NULL
           AND e.sequence IN ({inner})
         ORDER BY e.sequence {direction}"
    ))
}

/// Driven by the free-text index in rowid order (= sequence order within the organization, see
/// the module docs), every other filter tested on each match.
fn text_statement(
    organization_id: &str,
    filter: &EventFilter,
    text: &str,
    low: Option<i64>,
    high: Option<i64>,
    direction: &str,
    fetch: usize,
) -> SearchStatement {
    let mut s = Builder::new(organization_id);
    // An FTS5 phrase: the trigram tokenizer matches it as a substring.
    let phrase = s.bind(format!("\"{}\"", text.replace('"', "\"\"")));
    let bounds = s.bounds("e", low, high);
    let mut conditions = s.column_conditions(filter, "e", Indexes::All);
    for (column, values) in target_filters(filter) {
        let list = s.list(values);
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM event_targets t WHERE t.organization_id = ?1
               AND t.sequence = e.sequence AND t.{column} IN ({list}))"
        ));
    }
    s.finish(format!(
        "SELECT {EVENT_COLUMNS} FROM events_fts f CROSS JOIN events e ON e.rowid = f.rowid
         WHERE events_fts MATCH {phrase} AND e.organization_id = ?1 AND e.purged_at IS NULL{bounds}{}
         ORDER BY f.rowid {direction} LIMIT {fetch}",
        and_all(&conditions)
    ))
}

fn target_filters(filter: &EventFilter) -> Vec<(&'static str, &[String])> {
    [
        ("target_id", &filter.target_ids),
        ("target_type", &filter.target_types),
    ]
    .into_iter()
    .filter(|(_, values)| !values.is_empty())
    .map(|(column, values)| (column, values.as_slice()))
    .collect()
}

fn and_all(conditions: &[String]) -> String {
    conditions
        .iter()
        .map(|c| format!(" AND {c}"))
        .collect::<String>()
}

fn to_sql(sequence: u64) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

/// Which indexes on the events table's own columns a statement lets the planner use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Indexes {
    All,
    None,
    /// Only the time index (`events_by_time`).
    Time,
    /// Only the actor's time index (`events_by_actor_time`, migration 0005).
    ActorTime,
}

impl Indexes {
    fn allows(self, column: &str) -> bool {
        match self {
            Indexes::All => true,
            Indexes::None => false,
            Indexes::Time => column == "occurred_at",
            Indexes::ActorTime => matches!(column, "occurred_at" | "actor_id"),
        }
    }
}

/// Collects one statement's numbered parameters; `?1` is always the organization.
struct Builder {
    values: Vec<Value>,
}

impl Builder {
    fn new(organization_id: &str) -> Self {
        Builder {
            values: vec![organization_id.to_owned().into()],
        }
    }

    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        format!("?{}", self.values.len())
    }

    fn list(&mut self, values: &[String]) -> String {
        values
            .iter()
            .map(|v| self.bind(v.clone()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// ` AND alias.sequence >= low AND alias.sequence < high`, for the bounds given.
    fn bounds(&mut self, alias: &str, low: Option<i64>, high: Option<i64>) -> String {
        let mut text = String::new();
        if let Some(low) = low {
            text.push_str(&format!(" AND {alias}.sequence >= {}", self.bind(low)));
        }
        if let Some(high) = high {
            text.push_str(&format!(" AND {alias}.sequence < {}", self.bind(high)));
        }
        text
    }

    /// The conditions on the events table's own columns of the table aliased `alias`, each
    /// column written `+alias.column` when `indexes` hides its index from the planner.
    fn column_conditions(
        &mut self,
        filter: &EventFilter,
        alias: &str,
        indexes: Indexes,
    ) -> Vec<String> {
        let column = |name: &str| {
            let hidden = if indexes.allows(name) { "" } else { "+" };
            format!("{hidden}{alias}.{name}")
        };
        let (time, action_column, actor_id, actor_name) = (
            column("occurred_at"),
            column("action"),
            column("actor_id"),
            column("actor_name"),
        );
        let mut conditions = Vec::new();
        if let Some(start) = filter.range_start {
            let p = self.bind(start.unix_millis());
            conditions.push(format!("{time} >= {p}"));
        }
        if let Some(end) = filter.range_end {
            let p = self.bind(end.unix_millis());
            conditions.push(format!("{time} <= {p}"));
        }
        if !filter.actions.is_empty() {
            let mut alternatives = Vec::new();
            for pattern in &filter.actions {
                match pattern {
                    ActionPattern::Exact(action) => {
                        let p = self.bind(action.clone());
                        alternatives.push(format!("{action_column} = {p}"));
                    }
                    // A range on the prefix uses the (organization_id, action) index, and is
                    // case-sensitive where LIKE would not be.
                    ActionPattern::Prefix(start) => {
                        let low = self.bind(start.clone());
                        let high = self.bind(format!("{start}\u{10FFFF}"));
                        alternatives.push(format!(
                            "({action_column} >= {low} AND {action_column} < {high})"
                        ));
                    }
                }
            }
            conditions.push(format!("({})", alternatives.join(" OR ")));
        }
        if !filter.actor_ids.is_empty() {
            let list = self.list(&filter.actor_ids);
            conditions.push(format!("{actor_id} IN ({list})"));
        }
        if !filter.actor_names.is_empty() {
            let list = self.list(&filter.actor_names);
            conditions.push(format!("{actor_name} IN ({list})"));
        }
        conditions
    }

    fn finish(self, sql: String) -> SearchStatement {
        SearchStatement {
            sql,
            values: self.values,
        }
    }
}
