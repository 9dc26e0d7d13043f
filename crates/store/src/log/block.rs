//! Blocks: the log's search index, built once for each run of up to [`BLOCK_MAX_EVENTS`] events
//! of one organization and never rewritten (but for its purge list).
//!
//! A B-tree per filter column costs a page write per insert wherever keys are random (actor and
//! target ids are), twice over in a write-ahead log: more bytes than the event itself. A block
//! instead is written in one go when its events are final, as a handful of compact values:
//!
//! - *columns*, one value per event in sequence order: where its record lies in the log
//!   (`locations`: delta-varint positions and lengths), `occurred_at` and `received_at`
//!   (delta-varints), and which events retention purged (`purged`: offset and time pairs);
//! - *terms*: for each distinct action, actor id, actor name, target id and target type, the
//!   offsets of the events that have it (delta-varint postings), stored as rows keyed by
//!   `(organization, block, field, value)`, so a block's terms are one contiguous key range;
//! - for free text, a *trigram filter* (a blocked Bloom filter over the trigrams of every event's
//!   lower-cased search text, which rules most blocks out with a few 64-byte reads) and the
//!   block's *text values*: every distinct lower-cased value the search text is made of (ids,
//!   names, location, metadata values), one per line, with the offsets of the events holding
//!   each. A substring search scans those values once and takes their events' offsets: exact,
//!   without reading a body, even for text whose trigrams are everywhere (hexadecimal ids).
//!
//! Everything here is pure: encoding, decoding, and choosing a block's candidate events for a
//! filter. Reading and writing the rows is the engine's.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

use trailmark_domain::query::{ActionPattern, EventFilter};
use trailmark_ledger::tree::Hash;

use crate::StoreError;
use crate::trigram::{Bloom, for_each_trigram};

/// Events per block at most. Offsets within a block fit in a `u16`.
pub(crate) const BLOCK_MAX_EVENTS: usize = 4096;

/// The filterable columns, numbered as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Field {
    Action = 1,
    ActorId = 2,
    ActorName = 3,
    TargetId = 4,
    TargetType = 5,
}

impl Field {
    pub(crate) fn code(self) -> i64 {
        self as i64
    }
}

/// An event as the index knows it, from its append until its block is written.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct IndexedEvent {
    pub(crate) sequence: u64,
    /// Where its record lies in the log.
    pub(crate) position: u64,
    pub(crate) length: u32,
    pub(crate) id: String,
    pub(crate) leaf_hash: Hash,
    pub(crate) received_at: i64,
    pub(crate) occurred_at: i64,
    pub(crate) action: String,
    pub(crate) actor_id: String,
    pub(crate) actor_name: Option<String>,
    /// `(id, type)` of each target.
    pub(crate) targets: Vec<(String, String)>,
    /// The lower-cased search text (`NewEvent::search_text`).
    pub(crate) text: String,
    /// When retention purged it.
    pub(crate) purged_at: Option<i64>,
}

impl IndexedEvent {
    /// Whether this event matches `filter` (an unfiltered search matches purged stubs too;
    /// any filter leaves them out).
    pub(crate) fn matches(&self, filter: &EventFilter, text: Option<&str>) -> bool {
        if *filter == EventFilter::default() {
            return true;
        }
        if self.purged_at.is_some() {
            return false;
        }
        let any =
            |values: &[String], value: &str| values.is_empty() || values.iter().any(|v| v == value);
        filter
            .range_start
            .is_none_or(|start| self.occurred_at >= start.unix_millis())
            && filter
                .range_end
                .is_none_or(|end| self.occurred_at <= end.unix_millis())
            && (filter.actions.is_empty() || filter.actions.iter().any(|a| a.matches(&self.action)))
            && any(&filter.actor_ids, &self.actor_id)
            && (filter.actor_names.is_empty()
                || self
                    .actor_name
                    .as_ref()
                    .is_some_and(|name| any(&filter.actor_names, name)))
            && (filter.target_ids.is_empty()
                || self
                    .targets
                    .iter()
                    .any(|(id, _)| any(&filter.target_ids, id)))
            && (filter.target_types.is_empty()
                || self
                    .targets
                    .iter()
                    .any(|(_, kind)| any(&filter.target_types, kind)))
            && text.is_none_or(|text| self.text.contains(text))
    }
}

/// A block as stored: its columns, its terms (sorted by field, then value) and its trigram
/// filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BlockRecord {
    pub(crate) first_sequence: u64,
    pub(crate) count: u32,
    pub(crate) min_occurred: i64,
    pub(crate) max_occurred: i64,
    pub(crate) min_received: i64,
    pub(crate) max_received: i64,
    pub(crate) locations: Vec<u8>,
    pub(crate) occurred: Vec<u8>,
    pub(crate) received: Vec<u8>,
    pub(crate) purged: Vec<u8>,
    pub(crate) bloom: Vec<u8>,
    pub(crate) text_values: Vec<u8>,
    pub(crate) terms: Vec<(Field, String, Vec<u8>)>,
}

impl BlockRecord {
    /// The block of `events`: consecutive sequences of one organization, at most
    /// [`BLOCK_MAX_EVENTS`].
    ///
    /// # Panics
    ///
    /// If `events` is empty or too long (the engine never seals such a block).
    pub(crate) fn build<E: std::borrow::Borrow<IndexedEvent>>(events: &[E]) -> Self {
        let events: Vec<&IndexedEvent> = events.iter().map(E::borrow).collect();
        assert!(
            !events.is_empty() && events.len() <= BLOCK_MAX_EVENTS,
            "a block holds 1 to {BLOCK_MAX_EVENTS} events"
        );
        let mut locations = Vec::with_capacity(events.len() * 4);
        let mut previous = 0u64;
        for event in &events {
            put_varint(&mut locations, event.position - previous);
            put_varint(&mut locations, u64::from(event.length));
            previous = event.position;
        }
        // Hash maps, sorted once at the end: a B-tree insert compares the key with a dozen
        // others, and ids share long prefixes. The keys are the events' own text, so the maps
        // are keyed by a seed drawn per process (`KeyedHasher`): a block cannot be crafted to
        // make them degrade without that seed.
        let mut terms: Postings<'_> =
            HashMap::with_capacity_and_hasher(events.len() * 2, KeyedHasher::default());
        let mut values: TextValues<'_> =
            HashMap::with_capacity_and_hasher(events.len() * 4, KeyedHasher::default());
        // A purged event keeps its place (its location and times) but nothing it said.
        for (offset, event) in events
            .iter()
            .enumerate()
            .filter(|(_, event)| event.purged_at.is_none())
        {
            let offset = offset as u16;
            add_term(&mut terms, Field::Action, &event.action, offset);
            add_term(&mut terms, Field::ActorId, &event.actor_id, offset);
            if let Some(name) = &event.actor_name {
                add_term(&mut terms, Field::ActorName, name, offset);
            }
            for (id, kind) in &event.targets {
                add_term(&mut terms, Field::TargetId, id, offset);
                add_term(&mut terms, Field::TargetType, kind, offset);
            }
            for value in event.text.split('\n') {
                add_offset(&mut values, value, offset);
            }
        }
        // Trigrams never span a line, so the trigrams of the distinct values are those of every
        // event's text: a value repeated across the block (a user agent, a location, an action)
        // is cut into trigrams once.
        let mut trigrams: HashSet<u64, BuildHasherDefault<MixHasher>> =
            HashSet::with_capacity_and_hasher(values.len() * 8, Default::default());
        for value in values.keys() {
            for_each_trigram(value, |key| {
                trigrams.insert(key);
            });
        }
        let mut values: Vec<(&str, Offsets)> = values.into_iter().collect();
        values.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut terms: Vec<((Field, &str), Offsets)> = terms.into_iter().collect();
        terms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        BlockRecord {
            first_sequence: events[0].sequence,
            count: events.len() as u32,
            min_occurred: events.iter().map(|e| e.occurred_at).min().unwrap_or(0),
            max_occurred: events.iter().map(|e| e.occurred_at).max().unwrap_or(0),
            min_received: events.iter().map(|e| e.received_at).min().unwrap_or(0),
            max_received: events.iter().map(|e| e.received_at).max().unwrap_or(0),
            locations,
            occurred: deltas(events.iter().map(|e| e.occurred_at)),
            received: deltas(events.iter().map(|e| e.received_at)),
            purged: encode_purged(
                events
                    .iter()
                    .enumerate()
                    .filter_map(|(offset, e)| e.purged_at.map(|at| (offset as u16, at))),
            ),
            bloom: Bloom::build(trigrams.len(), trigrams.iter().copied()),
            text_values: encode_text_values(&values),
            terms: terms
                .into_iter()
                .map(|((field, value), offsets)| {
                    let mut postings = Vec::with_capacity(1 + offsets.more.len());
                    offsets.put(&mut postings);
                    (field, value.to_owned(), postings)
                })
                .collect(),
        }
    }
}

/// The hasher of a block's maps of event text while it is built: foldhash, seeded at random
/// once per process. In place of std's SipHash it takes ~3,000 instructions an event (of
/// ~35,000) off the log's maintenance (`bench/instructions`). A seed nobody outside the process
/// sees keeps the maps' resistance to crafted collisions.
type KeyedHasher = foldhash::fast::RandomState;

/// A block's terms while it is built: offsets by field and value.
type Postings<'a> = HashMap<(Field, &'a str), Offsets, KeyedHasher>;

/// A block's distinct text values while it is built, with their events' offsets.
type TextValues<'a> = HashMap<&'a str, Offsets, KeyedHasher>;

fn add_term<'a>(terms: &mut Postings<'a>, field: Field, value: &'a str, offset: u16) {
    add_offset(terms, (field, value), offset);
}

/// Adds `offset` to the offsets of `key`, once: an event with two targets of one type, or one
/// value twice in its text, lists its offset once.
fn add_offset<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Offsets, KeyedHasher>,
    key: K,
    offset: u16,
) {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut offsets) => offsets.get_mut().add(offset),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(Offsets {
                first: offset,
                more: Vec::new(),
            });
        }
    }
}

/// The ascending offsets of a term's or a value's events while a block is built. Most values
/// (request ids, document ids) are held by one event: the first offset needs no allocation.
struct Offsets {
    first: u16,
    more: Vec<u16>,
}

impl Offsets {
    fn add(&mut self, offset: u16) {
        if self.more.last().copied().unwrap_or(self.first) != offset {
            self.more.push(offset);
        }
    }

    /// Appends the postings (delta varints) of these offsets to `out`.
    fn put(&self, out: &mut Vec<u8>) {
        put_varint(out, u64::from(self.first));
        let mut previous = self.first;
        for &offset in &self.more {
            put_varint(out, u64::from(offset - previous));
            previous = offset;
        }
    }
}

/// A block's columns, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Columns {
    pub(crate) first_sequence: u64,
    /// `(position, length)` of each event's record.
    pub(crate) locations: Vec<(u64, u32)>,
    pub(crate) occurred: Vec<i64>,
    pub(crate) received: Vec<i64>,
    /// When each event was purged, if it was.
    pub(crate) purged: Vec<Option<i64>>,
}

impl Columns {
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a column does not decode to `count` values.
    pub(crate) fn decode(
        first_sequence: u64,
        count: usize,
        locations: &[u8],
        occurred: &[u8],
        received: &[u8],
        purged: &[u8],
    ) -> Result<Self, StoreError> {
        let corrupt = |what| StoreError::Corrupt(format!("block {first_sequence}: {what}"));
        let mut reader = VarintReader {
            bytes: locations,
            at: 0,
        };
        let mut decoded = Vec::with_capacity(count);
        let mut position = 0u64;
        for _ in 0..count {
            position += reader.next().ok_or_else(|| corrupt("locations"))?;
            let length = reader.next().ok_or_else(|| corrupt("locations"))?;
            decoded.push((
                position,
                u32::try_from(length).map_err(|_| corrupt("length"))?,
            ));
        }
        let mut purged_at = vec![None; count];
        for (offset, at) in decode_purged(purged).ok_or_else(|| corrupt("purged"))? {
            *purged_at
                .get_mut(offset as usize)
                .ok_or_else(|| corrupt("purged offset"))? = Some(at);
        }
        Ok(Columns {
            first_sequence,
            locations: decoded,
            occurred: undeltas(occurred, count).ok_or_else(|| corrupt("occurred_at"))?,
            received: undeltas(received, count).ok_or_else(|| corrupt("received_at"))?,
            purged: purged_at,
        })
    }

    /// The columns of a `log_blocks` row whose `first_sequence, count, locations, occurred,
    /// received, purged` are its columns `at..at + 6`.
    ///
    /// # Errors
    ///
    /// SQLite errors reading the row, [`StoreError::Corrupt`] if a column does not decode.
    pub(crate) fn from_row(row: &rusqlite::Row<'_>, at: usize) -> Result<Self, StoreError> {
        let first = row.get::<_, i64>(at)? as u64;
        Columns::decode(
            first,
            row.get::<_, i64>(at + 1)? as usize,
            &row.get::<_, Vec<u8>>(at + 2)?,
            &row.get::<_, Vec<u8>>(at + 3)?,
            &row.get::<_, Vec<u8>>(at + 4)?,
            &row.get::<_, Vec<u8>>(at + 5)?,
        )
    }

    pub(crate) fn len(&self) -> usize {
        self.locations.len()
    }
}

/// A set of offsets within a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetSet(Vec<u64>);

impl OffsetSet {
    pub(crate) fn all(count: usize) -> Self {
        let mut words = vec![u64::MAX; count.div_ceil(64)];
        if !count.is_multiple_of(64)
            && let Some(last) = words.last_mut()
        {
            *last = (1u64 << (count % 64)) - 1;
        }
        OffsetSet(words)
    }

    pub(crate) fn none(count: usize) -> Self {
        OffsetSet(vec![0; count.div_ceil(64)])
    }

    pub(crate) fn insert(&mut self, offset: u16) {
        if let Some(word) = self.0.get_mut(offset as usize / 64) {
            *word |= 1 << (offset % 64);
        }
    }

    pub(crate) fn remove(&mut self, offset: u16) {
        if let Some(word) = self.0.get_mut(offset as usize / 64) {
            *word &= !(1 << (offset % 64));
        }
    }

    pub(crate) fn intersect(&mut self, other: &OffsetSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= *b;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.iter().all(|word| *word == 0)
    }

    /// The offsets in ascending order.
    pub(crate) fn offsets(&self) -> Vec<u16> {
        let mut offsets = Vec::new();
        for (index, word) in self.0.iter().enumerate() {
            let mut word = *word;
            while word != 0 {
                let bit = word.trailing_zeros();
                offsets.push((index * 64) as u16 + bit as u16);
                word &= word - 1;
            }
        }
        offsets
    }
}

/// Where a sealed block's terms come from.
pub(crate) trait Terms {
    /// The postings of `(field, value)` in this block, if it has the term.
    fn exact(&mut self, field: Field, value: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The postings of every term of `field` starting with `prefix`.
    fn prefixed(&mut self, field: Field, prefix: &str) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Whether the block's trigram filter may hold every trigram of `text` (false only when
    /// some trigram is certainly absent).
    fn may_contain_text(&mut self, text: &str) -> Result<bool, StoreError>;
    /// The block's text values ([`encode_text_values`]).
    fn text_values(&mut self) -> Result<Vec<u8>, StoreError>;
}

/// A block's candidates for a filter, and whether free text must still be checked against
/// each one's body (only for text that spans lines, which values cannot answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidates {
    pub(crate) offsets: OffsetSet,
    pub(crate) check_text: bool,
}

/// The events of a sealed block that match `filter` (`text` is its free text, lower-cased).
///
/// # Errors
///
/// The term source's errors; [`StoreError::Corrupt`] for postings that do not decode.
pub(crate) fn candidates(
    filter: &EventFilter,
    text: Option<&str>,
    columns: &Columns,
    terms: &mut impl Terms,
) -> Result<Candidates, StoreError> {
    let count = columns.len();
    let mut set = OffsetSet::all(count);
    let done = |offsets| {
        Ok(Candidates {
            offsets,
            check_text: false,
        })
    };
    if *filter == EventFilter::default() {
        return done(set);
    }
    for (offset, purged) in columns.purged.iter().enumerate() {
        if purged.is_some() {
            set.remove(offset as u16);
        }
    }
    if filter.range_start.is_some() || filter.range_end.is_some() {
        let (start, end) = (
            filter.range_start.map_or(i64::MIN, |t| t.unix_millis()),
            filter.range_end.map_or(i64::MAX, |t| t.unix_millis()),
        );
        for (offset, occurred) in columns.occurred.iter().enumerate() {
            if *occurred < start || *occurred > end {
                set.remove(offset as u16);
            }
        }
    }
    let lists: [(Field, &[String]); 4] = [
        (Field::ActorId, &filter.actor_ids),
        (Field::ActorName, &filter.actor_names),
        (Field::TargetId, &filter.target_ids),
        (Field::TargetType, &filter.target_types),
    ];
    for (field, values) in lists {
        if values.is_empty() || set.is_empty() {
            continue;
        }
        let mut union = OffsetSet::none(count);
        for value in values {
            if let Some(postings) = terms.exact(field, value)? {
                add_postings(&mut union, &postings, columns.first_sequence)?;
            }
        }
        set.intersect(&union);
    }
    if !filter.actions.is_empty() && !set.is_empty() {
        let mut union = OffsetSet::none(count);
        for pattern in &filter.actions {
            let postings = match pattern {
                ActionPattern::Exact(action) => {
                    terms.exact(Field::Action, action)?.into_iter().collect()
                }
                ActionPattern::Prefix(prefix) => terms.prefixed(Field::Action, prefix)?,
            };
            for postings in postings {
                add_postings(&mut union, &postings, columns.first_sequence)?;
            }
        }
        set.intersect(&union);
    }
    let Some(text) = text.filter(|_| !set.is_empty()) else {
        return done(set);
    };
    if !terms.may_contain_text(text)? {
        return done(OffsetSet::none(count));
    }
    if text.contains('\n') {
        return Ok(Candidates {
            offsets: set,
            check_text: true,
        });
    }
    let holding = text_value_offsets(&terms.text_values()?, text, count).ok_or_else(|| {
        StoreError::Corrupt(format!("block {}: text values", columns.first_sequence))
    })?;
    set.intersect(&holding);
    done(set)
}

/// Text values, stored: `count u32 | text_len u32 | text | postings_at u32 × count |
/// postings`, little-endian. `text` is every distinct value, in byte order (`values` comes
/// sorted), followed by `\n`; value `i`'s
/// postings (delta varints of the offsets holding it) start at `postings_at[i]` in `postings`
/// and end where the next begin.
fn encode_text_values(values: &[(&str, Offsets)]) -> Vec<u8> {
    let text_len: usize = values.iter().map(|(v, _)| v.len() + 1).sum();
    let mut out = Vec::with_capacity(8 + text_len + values.len() * 6);
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    out.extend_from_slice(&(text_len as u32).to_le_bytes());
    for (value, _) in values {
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    let mut postings = Vec::new();
    for (_, offsets) in values {
        out.extend_from_slice(&(postings.len() as u32).to_le_bytes());
        offsets.put(&mut postings);
    }
    out.extend_from_slice(&postings);
    out
}

/// The offsets of the events (of `count`) holding a value that contains `text` (which has no
/// line break); `None` if the encoding is damaged.
pub(crate) fn text_value_offsets(encoded: &[u8], text: &str, count: usize) -> Option<OffsetSet> {
    let word = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(encoded.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let (values, text_len) = (word(0)?, word(4)?);
    let joined = encoded.get(8..8 + text_len)?;
    let table = 8 + text_len;
    let postings = encoded.get(table + values * 4..)?;
    let mut found = OffsetSet::none(count);
    // Matches come in order: count the values passed on the way, once.
    let (mut value, mut scanned) = (0usize, 0usize);
    let mut last = None;
    for at in memchr::memmem::find_iter(joined, text.as_bytes()) {
        value += memchr::memchr_iter(b'\n', &joined[scanned..at]).count();
        scanned = at;
        if last == Some(value) {
            continue;
        }
        last = Some(value);
        let from = word(table + value * 4)?;
        let to = if value + 1 < values {
            word(table + (value + 1) * 4)?
        } else {
            postings.len()
        };
        for offset in decode_postings(postings.get(from..to)?)? {
            found.insert(offset);
        }
    }
    Some(found)
}

fn add_postings(set: &mut OffsetSet, postings: &[u8], block: u64) -> Result<(), StoreError> {
    for offset in decode_postings(postings)
        .ok_or_else(|| StoreError::Corrupt(format!("block {block}: postings")))?
    {
        set.insert(offset);
    }
    Ok(())
}

/// A hasher for keys that are hashes already: one multiply spreads them over a table's buckets
/// (SipHash would only cost time).
#[derive(Default)]
struct MixHasher(u64);

impl std::hash::Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn deltas(values: impl Iterator<Item = i64>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut previous = 0i64;
    for value in values {
        put_varint(&mut out, zigzag(value.wrapping_sub(previous)));
        previous = value;
    }
    out
}

pub(crate) fn undeltas(bytes: &[u8], count: usize) -> Option<Vec<i64>> {
    let mut reader = VarintReader { bytes, at: 0 };
    let mut values = Vec::with_capacity(count);
    let mut previous = 0i64;
    for _ in 0..count {
        previous = previous.wrapping_add(unzigzag(reader.next()?));
        values.push(previous);
    }
    Some(values)
}

pub(crate) fn decode_postings(bytes: &[u8]) -> Option<Vec<u16>> {
    let mut reader = VarintReader { bytes, at: 0 };
    let mut offsets = Vec::new();
    let mut offset = 0u64;
    while reader.at < bytes.len() {
        offset += reader.next()?;
        offsets.push(u16::try_from(offset).ok()?);
    }
    Some(offsets)
}

fn encode_purged(purged: impl Iterator<Item = (u16, i64)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (offset, at) in purged {
        put_varint(&mut out, u64::from(offset));
        put_varint(&mut out, zigzag(at));
    }
    out
}

fn decode_purged(bytes: &[u8]) -> Option<Vec<(u16, i64)>> {
    let mut reader = VarintReader { bytes, at: 0 };
    let mut purged = Vec::new();
    while reader.at < bytes.len() {
        let offset = u16::try_from(reader.next()?).ok()?;
        purged.push((offset, unzigzag(reader.next()?)));
    }
    Some(purged)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

struct VarintReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl VarintReader<'_> {
    fn next(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigram::trigrams_of;
    use trailmark_domain::Timestamp;

    /// The postings of `offsets` (ascending), as a block writes them.
    fn encode_postings(offsets: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some((&first, more)) = offsets.split_first() {
            Offsets {
                first,
                more: more.to_vec(),
            }
            .put(&mut out);
        }
        out
    }

    fn event(sequence: u64) -> IndexedEvent {
        let actor = format!("user_{}", sequence % 7);
        IndexedEvent {
            sequence,
            position: 1_000 + sequence * 537,
            length: 500 + (sequence % 3) as u32,
            id: format!("event_{sequence}"),
            leaf_hash: [sequence as u8; 32],
            received_at: 1_785_578_400_000 + sequence as i64,
            occurred_at: 1_785_578_000_000 + (sequence as i64 * 37) % 1_000,
            action: ["user.signed_in", "user.signed_out", "team.created"][sequence as usize % 3]
                .into(),
            text: format!("user.signed_in\n{actor}\nada lovelace {sequence}\n192.0.2.1"),
            actor_name: sequence
                .is_multiple_of(2)
                .then(|| format!("Ada {}", sequence % 5)),
            actor_id: actor,
            targets: vec![(format!("team_{}", sequence % 11), "team".into())],
            purged_at: sequence.is_multiple_of(13).then_some(9),
        }
    }

    /// The terms of a block, served from memory.
    struct Stored<'a> {
        record: &'a BlockRecord,
    }

    impl Terms for Stored<'_> {
        fn exact(&mut self, field: Field, value: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self
                .record
                .terms
                .iter()
                .find(|(f, v, _)| *f == field && v == value)
                .map(|(_, _, p)| p.clone()))
        }

        fn prefixed(&mut self, field: Field, prefix: &str) -> Result<Vec<Vec<u8>>, StoreError> {
            Ok(self
                .record
                .terms
                .iter()
                .filter(|(f, v, _)| *f == field && v.starts_with(prefix))
                .map(|(_, _, p)| p.clone())
                .collect())
        }

        fn text_values(&mut self) -> Result<Vec<u8>, StoreError> {
            Ok(self.record.text_values.clone())
        }

        fn may_contain_text(&mut self, text: &str) -> Result<bool, StoreError> {
            let blocks = u32::from_le_bytes(self.record.bloom[..4].try_into().expect("count"));
            Ok(trigrams_of(text).into_iter().all(|key| {
                let at = 4 + Bloom::block_of(key, blocks) as usize * Bloom::BLOCK_BYTES;
                Bloom::block_may_contain(&self.record.bloom[at..at + Bloom::BLOCK_BYTES], key)
            }))
        }
    }

    /// Events with what a block must keep apart: two targets of one type, a repeated value
    /// within one event, empty lines, non-ASCII text, purged events, ids sharing long prefixes.
    fn varied_events() -> Vec<IndexedEvent> {
        (0..3000u64)
            .map(|sequence| {
                let mut event = event(sequence);
                if sequence % 5 == 0 {
                    event
                        .targets
                        .push((format!("team_{}", sequence % 17), "team".into()));
                }
                if sequence % 7 == 0 {
                    event.text =
                        format!("{}\n\nÉlodie Ünal {sequence}\nuser_1\nuser_1", event.text);
                }
                if sequence % 9 == 0 {
                    event.actor_id = format!("user_{:0>40}", sequence % 23);
                }
                event
            })
            .collect()
    }

    /// Every stored byte of a block, each value length-prefixed.
    fn stored_bytes(record: &BlockRecord) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        put(&record.first_sequence.to_le_bytes());
        put(&record.count.to_le_bytes());
        for value in [
            record.min_occurred,
            record.max_occurred,
            record.min_received,
            record.max_received,
        ] {
            put(&value.to_le_bytes());
        }
        for column in [
            &record.locations,
            &record.occurred,
            &record.received,
            &record.purged,
            &record.bloom,
            &record.text_values,
        ] {
            put(column);
        }
        for (field, value, postings) in &record.terms {
            put(&field.code().to_le_bytes());
            put(value.as_bytes());
            put(postings);
        }
        out
    }

    /// A block's bytes are a format read back by every later version: this pins them (the
    /// digest was taken from the blocks written before the build was made faster).
    #[test]
    fn a_blocks_stored_bytes_do_not_change() {
        use sha2::Digest;
        let record = BlockRecord::build(&varied_events());
        let digest = hex::encode(sha2::Sha256::digest(stored_bytes(&record)));
        assert_eq!(
            digest,
            "436cf401942d73046d52429ed46741fc9a972c2a7f54cf8106f433e864460d75"
        );
    }

    #[test]
    fn columns_decode_to_what_the_block_was_built_from() {
        let events: Vec<_> = (100..400).map(event).collect();
        let record = BlockRecord::build(&events);
        let columns = Columns::decode(
            record.first_sequence,
            record.count as usize,
            &record.locations,
            &record.occurred,
            &record.received,
            &record.purged,
        )
        .expect("decodes");
        for (offset, event) in events.iter().enumerate() {
            assert_eq!(columns.locations[offset], (event.position, event.length));
            assert_eq!(columns.occurred[offset], event.occurred_at);
            assert_eq!(columns.received[offset], event.received_at);
            assert_eq!(columns.purged[offset], event.purged_at);
        }
        assert_eq!(
            record.min_occurred,
            events.iter().map(|e| e.occurred_at).min().unwrap()
        );
    }

    #[test]
    fn a_purged_event_leaves_nothing_in_the_blocks_terms_or_text() {
        let mut events: Vec<_> = (1..4).map(event).collect();
        events[1].actor_id = "only_in_the_purged_event".into();
        events[1].text = "only_in_the_purged_event".into();
        events[1].purged_at = Some(5);
        let record = BlockRecord::build(&events);
        assert!(
            record
                .terms
                .iter()
                .all(|(_, value, _)| value != "only_in_the_purged_event"),
            "{:?}",
            record.terms
        );
        let text = String::from_utf8_lossy(&record.text_values);
        assert!(!text.contains("only_in_the_purged_event"), "{text}");
        assert!(
            record
                .terms
                .iter()
                .any(|(_, value, _)| value == &events[0].actor_id)
        );
    }

    /// Every filter kind, alone and combined: a sealed block's candidates are exactly the
    /// events the in-memory test accepts (free text: a superset, checked per body later).
    #[test]
    fn candidates_match_the_in_memory_filter() {
        let events: Vec<_> = (0..1000).map(event).collect();
        let record = BlockRecord::build(&events);
        let columns = Columns::decode(
            record.first_sequence,
            record.count as usize,
            &record.locations,
            &record.occurred,
            &record.received,
            &record.purged,
        )
        .expect("decodes");
        let filters = vec![
            EventFilter::default(),
            EventFilter {
                actions: vec![ActionPattern::parse("user.*")],
                ..EventFilter::default()
            },
            EventFilter {
                actions: vec![
                    ActionPattern::parse("team.created"),
                    ActionPattern::parse("nope"),
                ],
                actor_ids: vec!["user_3".into()],
                ..EventFilter::default()
            },
            EventFilter {
                actor_names: vec!["Ada 2".into(), "Ada 4".into()],
                target_types: vec!["team".into()],
                ..EventFilter::default()
            },
            EventFilter {
                target_ids: vec!["team_5".into()],
                range_start: Some(Timestamp::from_unix_millis(1_785_578_000_100)),
                range_end: Some(Timestamp::from_unix_millis(1_785_578_000_600)),
                ..EventFilter::default()
            },
            EventFilter {
                actor_ids: vec!["nobody".into()],
                ..EventFilter::default()
            },
            EventFilter {
                text: Some("lovelace 42".into()),
                ..EventFilter::default()
            },
            EventFilter {
                text: Some("user_".into()),
                actions: vec![ActionPattern::parse("team.*")],
                ..EventFilter::default()
            },
            EventFilter {
                text: Some("192.0.2".into()),
                ..EventFilter::default()
            },
            EventFilter {
                text: Some("absent text".into()),
                ..EventFilter::default()
            },
        ];
        for filter in filters {
            let text = filter.text.as_deref();
            let found = candidates(&filter, text, &columns, &mut Stored { record: &record })
                .expect("candidates")
                .offsets
                .offsets();
            let expected: Vec<u16> = events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.matches(&filter, text))
                .map(|(offset, _)| offset as u16)
                .collect();
            assert_eq!(found, expected, "{filter:?}");
        }
    }

    #[test]
    fn the_trigram_filter_rules_out_text_that_is_not_there() {
        let events: Vec<_> = (0..4096).map(event).collect();
        let record = BlockRecord::build(&events);
        let mut stored = Stored { record: &record };
        assert!(stored.may_contain_text("lovelace 4095").expect("test"));
        assert!(stored.may_contain_text("user_6").expect("test"));
        let absent = ["zebra", "qqq", "lovelace 99999x", "éàü"];
        let misses = absent
            .iter()
            .filter(|text| !stored.may_contain_text(text).expect("test"))
            .count();
        assert_eq!(
            misses,
            absent.len(),
            "no false positive among a few absent texts"
        );
    }

    #[test]
    fn varints_postings_and_sets_round_trip() {
        for values in [
            vec![],
            vec![0],
            vec![1, 2, 3, 4095],
            vec![7, 300, 301, 4000],
        ] {
            assert_eq!(
                decode_postings(&encode_postings(&values)),
                Some(values.clone())
            );
            let mut set = OffsetSet::none(4096);
            for v in &values {
                set.insert(*v);
            }
            assert_eq!(set.offsets(), values);
        }
        assert_eq!(OffsetSet::all(70).offsets(), (0..70).collect::<Vec<_>>());
        let series = [i64::MIN / 2, -5, 0, 1_785_578_400_000, 1_785_578_399_999];
        assert_eq!(
            undeltas(&deltas(series.into_iter()), 5),
            Some(series.to_vec())
        );
    }
}
