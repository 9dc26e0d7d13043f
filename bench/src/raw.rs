//! The read ceilings: the same SQLite file, read with rusqlite directly on a read-only
//! connection (SQLite's default page cache, as Trailmark's readers have), doing the storage part
//! of each operation and nothing else: no HTTP, no JSON parsing or writing, no reader pool.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use trailmark_ledger::LedgerError;
use trailmark_ledger::tree::{
    Hash, NodeReader, consistency_proof, inclusion_proof, leaf_hash, tree_hash,
};

use trailmark_store::search_statements;

use crate::search::Search;

pub struct Raw {
    connection: Connection,
}

fn sql(e: rusqlite::Error) -> String {
    format!("raw read: {e}")
}

/// A read-only connection to the database at `path`.
pub fn read_only(path: &Path) -> Result<Connection, String> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)
}

impl Raw {
    pub fn open(path: &Path) -> Result<Self, String> {
        Ok(Raw {
            connection: read_only(path)?,
        })
    }

    /// Runs Trailmark's SQL for `search` (its statements in one read transaction, as the store
    /// does) and reads every column of every row (the body as text, not parsed); returns the
    /// number of rows.
    pub fn search(
        &self,
        search: &Search,
        organization_id: &str,
        limit: usize,
    ) -> Result<usize, String> {
        let transaction = self.connection.unchecked_transaction().map_err(sql)?;
        let statements = search_statements(&transaction, organization_id, &search.request(limit))
            .map_err(|e| e.to_string())?;
        let mut count = 0;
        for statement in statements {
            let mut prepared = transaction.prepare_cached(&statement.sql).map_err(sql)?;
            let mut rows = prepared
                .query(rusqlite::params_from_iter(statement.values))
                .map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let id = row
                    .get_ref(0)
                    .map_err(sql)?
                    .as_str()
                    .map_err(|e| e.to_string())?;
                let body = row
                    .get_ref(5)
                    .map_err(sql)?
                    .as_str()
                    .map_err(|e| e.to_string())?;
                std::hint::black_box((
                    id,
                    body,
                    row.get_ref(4).map_err(sql)?,
                    row.get_ref(6).map_err(sql)?,
                ));
                count += 1;
            }
            if count > limit {
                break;
            }
        }
        Ok(count)
    }

    /// SQLite's plan for Trailmark's SQL for `search`, one step per `;`, statements apart by
    /// ` | `.
    pub fn plan(
        &self,
        search: &Search,
        organization_id: &str,
        limit: usize,
    ) -> Result<String, String> {
        let statements =
            search_statements(&self.connection, organization_id, &search.request(limit))
                .map_err(|e| e.to_string())?;
        let mut plans = Vec::new();
        for statement in statements {
            let mut prepared = self
                .connection
                .prepare(&format!("EXPLAIN QUERY PLAN {}", statement.sql))
                .map_err(sql)?;
            let steps = prepared
                .query_map(rusqlite::params_from_iter(statement.values), |row| {
                    row.get::<_, String>(3)
                })
                .map_err(sql)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql)?;
            plans.push(steps.join("; "));
        }
        Ok(plans.join(" | "))
    }

    /// `SELECT body … ORDER BY sequence` for the organization (within `range` of `occurred_at`
    /// if given), each body written to `out` on its own line: the least work an export does.
    /// Returns the rows and bytes written.
    pub fn scan_bodies(
        &self,
        organization_id: &str,
        range: Option<(i64, i64)>,
        out: &Path,
    ) -> Result<(u64, u64), String> {
        let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        let (text, values): (&str, Vec<rusqlite::types::Value>) = match range {
            None => (
                "SELECT body FROM events WHERE organization_id = ?1 ORDER BY sequence",
                vec![organization_id.to_owned().into()],
            ),
            Some((start, end)) => (
                "SELECT body FROM events WHERE organization_id = ?1 AND occurred_at >= ?2 AND occurred_at <= ?3 ORDER BY sequence",
                vec![organization_id.to_owned().into(), start.into(), end.into()],
            ),
        };
        let mut statement = self.connection.prepare(text).map_err(sql)?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(values))
            .map_err(sql)?;
        let (mut count, mut bytes) = (0u64, 0u64);
        let write = |e: std::io::Error| format!("{}: {e}", out.display());
        while let Some(row) = rows.next().map_err(sql)? {
            let body = row
                .get_ref(0)
                .map_err(sql)?
                .as_bytes()
                .map_err(|e| e.to_string())?;
            file.write_all(body).map_err(write)?;
            file.write_all(b"\n").map_err(write)?;
            count += 1;
            bytes += body.len() as u64 + 1;
        }
        file.flush().map_err(write)?;
        Ok((count, bytes))
    }

    /// The id of the event at `sequence`.
    pub fn event_id(&self, organization_id: &str, sequence: u64) -> Result<String, String> {
        self.connection
            .prepare_cached("SELECT id FROM events WHERE organization_id = ?1 AND sequence = ?2")
            .map_err(sql)?
            .query_row(params![organization_id, sequence as i64], |row| row.get(0))
            .map_err(sql)
    }

    /// The storage reads of `GET /audit_logs/ledger/inclusion` with a `tree_size`: the event
    /// by id, the log size, the audit path and the root. Returns the proof's length.
    pub fn inclusion(
        &self,
        organization_id: &str,
        event_id: &str,
        size: u64,
    ) -> Result<usize, String> {
        let (sequence, leaf): (i64, Vec<u8>) = self
            .connection
            .prepare_cached(
                "SELECT e.id, e.organization_id, e.sequence, e.received_at, e.leaf_hash, e.body FROM events e WHERE e.id = ?1",
            )
            .map_err(sql)?
            .query_row([event_id], |row| Ok((row.get(2)?, row.get(4)?)))
            .map_err(sql)?;
        std::hint::black_box(leaf);
        self.log_size(organization_id)?;
        let proof = inclusion_proof(sequence as u64, size, &self.nodes(organization_id))
            .map_err(|e| e.to_string())?;
        let root = tree_hash(size, &self.nodes(organization_id)).map_err(|e| e.to_string())?;
        std::hint::black_box(root);
        Ok(proof.len())
    }

    /// The storage reads of `GET /audit_logs/ledger/consistency`: the log size, the proof and
    /// both roots. Returns the proof's length.
    pub fn consistency(
        &self,
        organization_id: &str,
        first: u64,
        second: u64,
    ) -> Result<usize, String> {
        self.log_size(organization_id)?;
        let proof = consistency_proof(first, second, &self.nodes(organization_id))
            .map_err(|e| e.to_string())?;
        for size in [first, second] {
            std::hint::black_box(
                tree_hash(size, &self.nodes(organization_id)).map_err(|e| e.to_string())?,
            );
        }
        Ok(proof.len())
    }

    fn log_size(&self, organization_id: &str) -> Result<u64, String> {
        let size: Option<i64> = self
            .connection
            .prepare_cached("SELECT size, frontier FROM log_heads WHERE organization_id = ?1")
            .map_err(sql)?
            .query_row([organization_id], |row| row.get(0))
            .optional()
            .map_err(sql)?;
        Ok(size.unwrap_or(0) as u64)
    }

    fn nodes<'c>(&'c self, organization_id: &'c str) -> Nodes<'c> {
        Nodes {
            connection: &self.connection,
            organization_id,
            seen: Default::default(),
        }
    }
}

/// Stored Merkle nodes, read one query each and remembered for the rest of one operation, as
/// Trailmark's `SqliteNodes` does.
struct Nodes<'c> {
    connection: &'c Connection,
    organization_id: &'c str,
    seen: std::cell::RefCell<std::collections::HashMap<(u32, u64), Hash>>,
}

impl NodeReader for Nodes<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, LedgerError> {
        if let Some(hash) = self.seen.borrow().get(&(level, index)) {
            return Ok(*hash);
        }
        let bytes: Option<Vec<u8>> = self
            .connection
            .prepare_cached(
                "SELECT hash FROM merkle_nodes WHERE organization_id = ?1 AND level = ?2 AND idx = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![self.organization_id, level, index as i64], |row| row.get(0))
                    .optional()
            })
            .map_err(|e| LedgerError::Read(e.to_string()))?;
        let hash = bytes
            .and_then(|b| Hash::try_from(b).ok())
            .ok_or(LedgerError::MissingNode { level, index })?;
        self.seen.borrow_mut().insert((level, index), hash);
        Ok(hash)
    }
}

/// The least work a verifier must do with an export file: read each line and hash it once
/// (SHA-256 with RFC 6962's leaf prefix). `trailmark verify` also parses the JSON, rebuilds the
/// canonical form, checks proofs and rebuilds the tree. Returns the lines hashed.
pub fn hash_lines(path: &Path) -> Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(4096);
    let mut count = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if read == 0 {
            break;
        }
        std::hint::black_box(leaf_hash(&line));
        count += 1;
    }
    Ok(count)
}
