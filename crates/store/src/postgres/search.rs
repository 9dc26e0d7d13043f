//! Event search on PostgreSQL: the same filters as the embedded store, in SQL over the rows the
//! search blocks leave (`search_blocks`).

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use trailmark_domain::query::EventFilter;

use super::search_blocks::{self, Candidates, FilterCache};
use super::{EVENT_COLUMNS, event_columns};
use crate::StoreError;
use crate::model::{Order, SearchPage, SearchRequest};
use crate::rows::EventColumns;

type Param = Box<dyn ToSql + Sync + Send>;

/// Candidates read by the first query of a page beyond what it needs: the blocks' postings are
/// exact for the fields they cover, so only a time range or free text leaves some out.
const FIRST_CHUNK: usize = 64;

/// Runs a search, turning each row's columns into an `E` with `decode`.
///
/// Every row read is checked against every condition in SQL; the search blocks only choose
/// which rows are read ([`search_blocks::candidates`]).
pub(super) async fn search<E>(
    client: &tokio_postgres::Client,
    filters: &FilterCache,
    organization_id: &str,
    request: &SearchRequest,
    decode: fn(EventColumns) -> Result<E, StoreError>,
) -> Result<SearchPage<E>, StoreError> {
    let mut sql = SearchSql::new(organization_id);
    sql.add_filter(request);
    // As the text is stored (`appender::text`).
    let text = request
        .filter
        .text
        .as_ref()
        .map(|text| text.to_lowercase().replace('\0', ""));
    if let Some(text) = &text {
        sql.add_text(text);
    }
    let fetch = request.limit + 1;
    let order = request.order;
    let candidates = search_blocks::candidates(
        client,
        filters,
        organization_id,
        &request.filter,
        text.as_deref(),
    )
    .await?;
    let rows = match candidates {
        Candidates::Everything => sql.rows(client, Within::All, order, fetch).await?,
        Candidates::Ranges(ranges) => {
            sql.add_ranges(&ranges);
            sql.rows(client, Within::All, order, fetch).await?
        }
        Candidates::Sequences { sequences, tail } => {
            // Only the candidates the cursors allow (the rows are checked against them again).
            let mut sequences: Vec<i64> = sequences
                .into_iter()
                .filter(|s| request.after.is_none_or(|after| *s > after as i64))
                .filter(|s| request.before.is_none_or(|before| *s < before as i64))
                .collect();
            if order == Order::Desc {
                sequences.reverse();
            }
            sql.rows_of(client, &sequences, tail, order, fetch).await?
        }
    };
    let mut events = rows
        .iter()
        .map(|row| decode(event_columns(row)?))
        .collect::<Result<Vec<_>, _>>()?;
    let more = events.len() > request.limit;
    events.truncate(request.limit);
    Ok(SearchPage { events, more })
}

/// Which rows a query reads, beside the search's conditions.
enum Within<'a> {
    All,
    /// Events from this sequence on: those past the last block.
    From(i64),
    /// These events.
    Among(&'a [i64]),
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

    /// Up to `limit` matching rows in `within`, in `order`.
    async fn rows(
        &self,
        client: &tokio_postgres::Client,
        within: Within<'_>,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let mut params: Vec<&(dyn ToSql + Sync)> = self
            .values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let mut conditions = self.conditions.clone();
        let (from, among);
        match within {
            Within::All => {}
            Within::From(sequence) => {
                from = sequence;
                params.push(&from);
                conditions.push(format!("e.sequence >= ${}", params.len()));
            }
            Within::Among(sequences) => {
                among = sequences;
                params.push(&among);
                conditions.push(format!("e.sequence = ANY(${})", params.len()));
            }
        }
        let direction = if order == Order::Asc { "ASC" } else { "DESC" };
        let query = format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE {} ORDER BY e.sequence {direction} LIMIT {limit}",
            conditions.join(" AND ")
        );
        Ok(client.query(&query, &params).await?)
    }

    /// Up to `limit` matching rows among `candidates` (in `order`) and the events from `tail`
    /// on, in `order`: the candidates a chunk at a time, each chunk twice the last, until the
    /// page is full.
    async fn rows_of(
        &self,
        client: &tokio_postgres::Client,
        candidates: &[i64],
        tail: i64,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        if order == Order::Desc {
            rows = self.rows(client, Within::From(tail), order, limit).await?;
        }
        let mut chunk = limit + FIRST_CHUNK;
        let mut rest = candidates;
        while rows.len() < limit && !rest.is_empty() {
            let (now, later) = rest.split_at(chunk.min(rest.len()));
            let wanted = limit - rows.len();
            rows.extend(self.rows(client, Within::Among(now), order, wanted).await?);
            rest = later;
            chunk *= 2;
        }
        if order == Order::Asc && rows.len() < limit {
            let wanted = limit - rows.len();
            rows.extend(self.rows(client, Within::From(tail), order, wanted).await?);
        }
        Ok(rows)
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
            // Written so that it does not match the retention index's predicate (`WHERE
            // purged_at IS NULL`): before the table has statistics (a new database, the minute
            // after a bulk load), the planner takes that partial index for a small one and reads
            // the organization's every row through it (measured: 135 ms at 300,000 events)
            // rather than the few the primary key finds.
            self.conditions.push("(e.purged_at + 0) IS NULL".into());
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
                .exact_actions()
                .into_iter()
                .map(str::to_owned)
                .collect();
            if !exact.is_empty() {
                let p = self.bind(exact);
                alternatives.push(format!("e.action = ANY({p})"));
            }
            // A byte-order range on the prefix (the column is COLLATE "C"): case-sensitive
            // where LIKE may not be.
            for prefix in filter.action_prefixes() {
                let low = self.bind(prefix.to_owned());
                let high = self.bind(format!("{prefix}\u{10FFFF}"));
                alternatives.push(format!("(e.action >= {low} AND e.action < {high})"));
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
            ("target_ids", &filter.target_ids),
            ("target_types", &filter.target_types),
        ] {
            if !values.is_empty() {
                let p = self.bind(values.clone());
                self.conditions.push(format!("e.{column} && {p}::TEXT[]"));
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
