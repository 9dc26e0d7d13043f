//! Event search on PostgreSQL. The search blocks name the events a filter can match
//! ([`search_blocks::candidates`]); SQL reads them with the conditions the events table's own
//! columns answer (organization, cursors, time, purge), and each row read for a filter on
//! anything else is checked against the whole filter from its body, by the rule the embedded
//! log uses (`log::block::IndexedEvent::matches`). The rule is written once, the table holds
//! no copies of the body's fields, and a stale or missing block makes a search slower, never
//! wrong.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use trailmark_domain::query::EventFilter;

use super::search_blocks::{self, BlockCache, BlockCandidates, Candidates};
use super::{EVENT_COLUMNS, event_columns};
use crate::StoreError;
use crate::model::{Order, SearchPage, SearchRequest};
use crate::rows::EventColumns;

type Param = Box<dyn ToSql + Sync + Send>;

/// Candidates read by the first query of a page beyond what it needs: the blocks name the
/// matching events exactly, so only a time range leaves some out.
const FIRST_CHUNK: usize = 64;
/// Events past the last block read by one query while looking for matches among them.
const TAIL_CHUNK: usize = 1_024;
/// The columns a search reads: an event's, then what its body is checked with.
const SEARCH_COLUMNS: &str = "e.occurred_at";
/// Where [`SEARCH_COLUMNS`] start in a row.
const OCCURRED_AT: usize = 7;

/// Runs a search, turning each row's columns into an `E` with `decode`.
pub(super) async fn search<E>(
    client: &tokio_postgres::Client,
    cache: &BlockCache,
    organization_id: &str,
    request: &SearchRequest,
    decode: fn(EventColumns) -> Result<E, StoreError>,
) -> Result<SearchPage<E>, StoreError> {
    let mut sql = SearchSql::new(organization_id);
    sql.add_filter(request);
    // Lower-cased, as the text it is matched against is.
    let text = request.filter.text.as_ref().map(|text| text.to_lowercase());
    let fetch = request.limit + 1;
    let order = request.order;
    let candidates = search_blocks::candidates(
        client,
        cache,
        organization_id,
        &request.filter,
        text.as_deref(),
    )
    .await?;
    let rows = match candidates {
        Candidates::Everything => sql.rows(client, Within::All, order, fetch).await?,
        Candidates::Blocks { blocks, tail } => {
            let filter = &request.filter;
            let reader = Reader {
                client,
                cache,
                sql: &sql,
                organization_id,
                request,
                text: text.as_deref(),
                // Time, cursors and purges are conditions of the SQL: only the body's fields
                // need a row's body.
                checks_bodies: text.is_some()
                    || !filter.actions.is_empty()
                    || !filter.actor_ids.is_empty()
                    || !filter.actor_names.is_empty()
                    || !filter.target_ids.is_empty()
                    || !filter.target_types.is_empty(),
            };
            reader.matching(blocks, tail, fetch).await?
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

/// Reads the rows of a search whose filter the blocks answer, checking each against it.
struct Reader<'a> {
    client: &'a tokio_postgres::Client,
    cache: &'a BlockCache,
    sql: &'a SearchSql,
    organization_id: &'a str,
    request: &'a SearchRequest,
    text: Option<&'a str>,
    /// Whether the filter names anything only a row's body holds.
    checks_bodies: bool,
}

impl Reader<'_> {
    /// Up to `wanted` matching rows in the request's order: among the candidates of `blocks`
    /// (ascending), and among the events from `tail` on, which no block covers yet. Free text
    /// narrows a few blocks at a time, each step twice the last, so a common word reads the text
    /// values of the newest (or oldest) blocks only.
    async fn matching(
        &self,
        mut blocks: Vec<BlockCandidates>,
        tail: i64,
        wanted: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let order = self.request.order;
        let mut rows = Vec::new();
        if order == Order::Desc {
            blocks.reverse();
            self.scan_tail(tail, wanted, &mut rows).await?;
        }
        let mut step = if self.text.is_some() { 1 } else { blocks.len() };
        let mut rest = &mut blocks[..];
        while rows.len() < wanted && !rest.is_empty() {
            let (now, later) = rest.split_at_mut(step.min(rest.len()));
            if let Some(text) = self.text {
                search_blocks::narrow_to_text(
                    self.client,
                    self.cache,
                    self.organization_id,
                    now,
                    text,
                )
                .await?;
            }
            let mut sequences = Vec::new();
            for block in now.iter() {
                let mut named = block.sequences();
                if order == Order::Desc {
                    named.reverse();
                }
                // Only the candidates the cursors allow (the rows are checked against them again).
                sequences.extend(named.into_iter().filter(|s| {
                    self.request.after.is_none_or(|after| *s > after as i64)
                        && self.request.before.is_none_or(|before| *s < before as i64)
                }));
            }
            self.read_among(&sequences, wanted, &mut rows).await?;
            rest = later;
            step = step.saturating_mul(2);
        }
        if order == Order::Asc && rows.len() < wanted {
            self.scan_tail(tail, wanted, &mut rows).await?;
        }
        Ok(rows)
    }

    /// Adds the matches among `candidates` (in order) to `rows` until it holds `wanted`, reading
    /// them a chunk at a time, each chunk twice the last.
    async fn read_among(
        &self,
        candidates: &[i64],
        wanted: usize,
        rows: &mut Vec<Row>,
    ) -> Result<(), StoreError> {
        let mut chunk = wanted - rows.len() + FIRST_CHUNK;
        let mut rest = candidates;
        while rows.len() < wanted && !rest.is_empty() {
            let (now, later) = rest.split_at(chunk.min(rest.len()));
            let read = self
                .sql
                .rows(
                    self.client,
                    Within::Among(now),
                    self.request.order,
                    now.len(),
                )
                .await?;
            self.keep_matches(read, wanted, rows)?;
            rest = later;
            chunk *= 2;
        }
        Ok(())
    }

    /// Adds the matches among the events from `tail` on to `rows` until it holds `wanted`.
    async fn scan_tail(
        &self,
        tail: i64,
        wanted: usize,
        rows: &mut Vec<Row>,
    ) -> Result<(), StoreError> {
        let (mut from, mut below) = (tail, i64::MAX);
        while rows.len() < wanted {
            let read = self
                .sql
                .rows(
                    self.client,
                    Within::Between(from, below),
                    self.request.order,
                    TAIL_CHUNK,
                )
                .await?;
            let count = read.len();
            let last: Option<i64> = read.last().map(|row| row.try_get(2)).transpose()?;
            self.keep_matches(read, wanted, rows)?;
            let Some(last) = last.filter(|_| count == TAIL_CHUNK) else {
                break;
            };
            match self.request.order {
                Order::Asc => from = last + 1,
                Order::Desc => below = last,
            }
        }
        Ok(())
    }

    /// Adds the rows of `read` that match the request's filter to `rows`, up to `wanted`.
    fn keep_matches(
        &self,
        read: Vec<Row>,
        wanted: usize,
        rows: &mut Vec<Row>,
    ) -> Result<(), StoreError> {
        for row in read {
            if rows.len() >= wanted {
                break;
            }
            if !self.checks_bodies || matches(&row, &self.request.filter, self.text)? {
                rows.push(row);
            }
        }
        Ok(())
    }
}

/// Whether the event in `row` matches `filter` (`text`: its free text, lower-cased), judged
/// from its body.
fn matches(row: &Row, filter: &EventFilter, text: Option<&str>) -> Result<bool, StoreError> {
    let event = search_blocks::indexed_event(
        row.try_get(2)?,
        row.try_get(OCCURRED_AT)?,
        row.try_get(6)?,
        row.try_get(5)?,
        row.try_get(0)?,
    )?;
    Ok(event.matches(filter, text))
}

/// Which rows a query reads, beside the search's conditions.
enum Within<'a> {
    All,
    /// Events from the first sequence on, below the second.
    Between(i64, i64),
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

    /// Up to `limit` rows in `within` that meet the conditions, in `order`.
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
        let (from, below, among);
        match within {
            Within::All => {}
            Within::Between(first, end) => {
                (from, below) = (first, end);
                params.push(&from);
                conditions.push(format!("e.sequence >= ${}", params.len()));
                params.push(&below);
                conditions.push(format!("e.sequence < ${}", params.len()));
            }
            Within::Among(sequences) => {
                among = sequences;
                params.push(&among);
                conditions.push(format!("e.sequence = ANY(${})", params.len()));
            }
        }
        let direction = if order == Order::Asc { "ASC" } else { "DESC" };
        let query = format!(
            "SELECT {EVENT_COLUMNS}, {SEARCH_COLUMNS} FROM events e WHERE {}
             ORDER BY e.sequence {direction} LIMIT {limit}",
            conditions.join(" AND ")
        );
        Ok(client.query(&query, &params).await?)
    }

    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    /// The conditions the events table's columns answer: the rest of the filter is checked
    /// from each row's body ([`matches`]).
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
    }
}
