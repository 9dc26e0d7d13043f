//! Sorted runs: point lookups by a 32-byte key without a B-tree.
//!
//! Two lookups need a random key: an idempotency identity (is this request a repeat?) and an
//! event id (`GET /audit_logs/events/{id}`). Inserting random keys into a B-tree dirties a page
//! per key. Instead, recent entries are kept in memory ([`Memtable`]) and, every so often,
//! written once as a *run*: a file of fixed-size entries sorted by key, with a Bloom filter kept
//! in memory so a lookup reads only the runs that may hold its key. Both are derived from the
//! log's frames, so a crash loses nothing: entries past the newest run are replayed from the log.
//!
//! Run file: `magic "TMR1" | count u64 | covered_from u64 | covered_to u64 | min_b i64 |
//! max_b i64 | bloom_len u32 | bloom | entries`, each entry [`ENTRY_BYTES`]: `key [32] |
//! position u64 | organization u32 | length u32 | a u64 | b i64`, little-endian, sorted by key.
//! `covered_from..covered_to` is the range of log positions whose frames the run holds.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::StoreError;
use crate::trigram::Bloom;

const MAGIC: &[u8; 4] = b"TMR1";
const HEADER_BYTES: u64 = 4 + 8 * 5 + 4;
/// Bytes per entry on disk.
pub(crate) const ENTRY_BYTES: usize = 64;

/// One entry: a key and where its frame or event lies, with two values whose meaning is the
/// run's (an idempotency run: first sequence and expiry; an id run: sequence and receipt time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: [u8; 32],
    pub(crate) position: u64,
    pub(crate) organization: u32,
    pub(crate) length: u32,
    pub(crate) a: u64,
    pub(crate) b: i64,
}

impl Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.organization.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.a.to_le_bytes());
        out.extend_from_slice(&self.b.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Entry {
        let u64_at =
            |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        let u32_at =
            |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        let mut key = [0; 32];
        key.copy_from_slice(&bytes[..32]);
        Entry {
            key,
            position: u64_at(32),
            organization: u32_at(40),
            length: u32_at(44),
            a: u64_at(48),
            b: u64_at(56) as i64,
        }
    }
}

/// Recent entries, not yet in a run.
pub(crate) type Memtable = HashMap<[u8; 32], Entry, KeyHashing>;

/// A memtable with room for `entries` without growing.
pub(crate) fn memtable(entries: usize) -> Memtable {
    Memtable::with_capacity_and_hasher(entries, KeyHashing::default())
}

/// How a memtable hashes its keys. They are SHA-256 digests or random already, so SipHash
/// (std's default, a third of the writer's lookup-table time) only costs: a multiply per
/// 8 bytes, folded, spreads them. The per-table random seed keeps a client who grinds ids
/// whose digests share bits from aiming them at one bucket.
#[derive(Clone)]
pub(crate) struct KeyHashing(u64);

impl Default for KeyHashing {
    fn default() -> Self {
        use std::hash::BuildHasher;
        KeyHashing(std::hash::RandomState::new().hash_one(0u64))
    }
}

impl std::hash::BuildHasher for KeyHashing {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            let product = u128::from(self.0 ^ u64::from_le_bytes(word))
                * u128::from(0x9E37_79B9_7F4A_7C15u64);
            self.0 = (product as u64) ^ ((product >> 64) as u64);
        }
    }
}

/// The Bloom key of an entry key (keys are hashes or random: their first bytes are uniform).
fn bloom_key(key: &[u8; 32]) -> u64 {
    u64::from_le_bytes(key[..8].try_into().unwrap_or_default())
}

struct Run {
    path: PathBuf,
    file: File,
    count: u64,
    covered_to: u64,
    max_b: i64,
    bloom: Vec<u8>,
}

impl Run {
    fn may_contain(&self, key: &[u8; 32]) -> bool {
        let blocks = u32::from_le_bytes(self.bloom[..4].try_into().unwrap_or_default());
        let k = bloom_key(key);
        let at = 4 + Bloom::block_of(k, blocks) as usize * Bloom::BLOCK_BYTES;
        self.bloom
            .get(at..at + Bloom::BLOCK_BYTES)
            .is_some_and(|block| Bloom::block_may_contain(block, k))
    }

    fn find(&self, key: &[u8; 32]) -> Result<Option<Entry>, StoreError> {
        let entries_at = HEADER_BYTES + self.bloom.len() as u64;
        let (mut low, mut high) = (0u64, self.count);
        let mut bytes = [0u8; ENTRY_BYTES];
        while low < high {
            let middle = low + (high - low) / 2;
            self.file
                .read_exact_at(&mut bytes, entries_at + middle * ENTRY_BYTES as u64)
                .map_err(|e| io_error(&self.path, e))?;
            match bytes[..32].cmp(key.as_slice()) {
                std::cmp::Ordering::Equal => return Ok(Some(Entry::decode(&bytes))),
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
            }
        }
        Ok(None)
    }
}

/// The runs of one kind, in one directory.
pub(crate) struct Runs {
    dir: PathBuf,
    /// Oldest first.
    runs: RwLock<Vec<Arc<Run>>>,
}

impl Runs {
    /// Opens the runs in `dir` (creating it); files left half-written by a crash are removed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] or [`StoreError::Corrupt`] for a run that does not read.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        crate::private::create_dir(dir).map_err(|e| io_error(dir, e))?;
        let mut runs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
            let path = entry.map_err(|e| io_error(dir, e))?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("run") => runs.push(Arc::new(read_run(&path)?)),
                Some("partial") => std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?,
                _ => {}
            }
        }
        runs.sort_by_key(|run| run.covered_to);
        Ok(Runs {
            dir: dir.to_owned(),
            runs: RwLock::new(runs),
        })
    }

    /// The end of the log range the runs cover: frames before it are in a run.
    pub(crate) fn covered_to(&self) -> u64 {
        self.snapshot().last().map_or(0, |run| run.covered_to)
    }

    /// The newest entry with `key`.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub(crate) fn find(&self, key: &[u8; 32]) -> Result<Option<Entry>, StoreError> {
        for run in self.snapshot().iter().rev() {
            if run.may_contain(key)
                && let Some(entry) = run.find(key)?
            {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// Writes `entries` (the frames in `covered_from..covered_to`) as a new run and adds it.
    ///
    /// # Errors
    ///
    /// I/O errors; nothing is added then.
    pub(crate) fn write(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        covered_from: u64,
        covered_to: u64,
    ) -> Result<(), StoreError> {
        let mut entries: Vec<Entry> = entries.into_iter().collect();
        entries.sort_by_key(|e| e.key);
        let bloom = Bloom::build(entries.len(), entries.iter().map(|e| bloom_key(&e.key)));
        let (min_b, max_b) = (
            entries.iter().map(|e| e.b).min().unwrap_or(0),
            entries.iter().map(|e| e.b).max().unwrap_or(0),
        );
        let mut bytes =
            Vec::with_capacity(HEADER_BYTES as usize + bloom.len() + entries.len() * ENTRY_BYTES);
        bytes.extend_from_slice(MAGIC);
        for value in [
            entries.len() as u64,
            covered_from,
            covered_to,
            min_b as u64,
            max_b as u64,
        ] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        bytes.extend_from_slice(&(bloom.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&bloom);
        for entry in &entries {
            entry.encode(&mut bytes);
        }
        let path = self.dir.join(format!("{covered_to:020}.run"));
        let partial = path.with_extension("partial");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| io_error(&partial, e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(&partial, e))?;
        std::fs::rename(&partial, &path).map_err(|e| io_error(&path, e))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_error(&self.dir, e))?;
        let run = Arc::new(read_run(&path)?);
        self.runs
            .write()
            .map_err(|_| StoreError::Unavailable("the run list is poisoned".into()))?
            .push(run);
        Ok(())
    }

    /// Deletes the runs whose every `b` is below `b_before` (idempotency records all expired).
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub(crate) fn retire_below(&self, b_before: i64) -> Result<u64, StoreError> {
        let mut runs = self
            .runs
            .write()
            .map_err(|_| StoreError::Unavailable("the run list is poisoned".into()))?;
        let (retired, kept): (Vec<_>, Vec<_>) =
            runs.drain(..).partition(|run| run.max_b < b_before);
        *runs = kept;
        let mut entries = 0;
        for run in retired {
            std::fs::remove_file(&run.path).map_err(|e| io_error(&run.path, e))?;
            entries += run.count;
        }
        Ok(entries)
    }

    fn snapshot(&self) -> Vec<Arc<Run>> {
        self.runs
            .read()
            .map(|runs| runs.clone())
            .unwrap_or_default()
    }
}

fn read_run(path: &Path) -> Result<Run, StoreError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut header = [0u8; HEADER_BYTES as usize];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| io_error(path, e))?;
    if &header[..4] != MAGIC {
        return Err(StoreError::Corrupt(format!(
            "{} is not a run",
            path.display()
        )));
    }
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
    let count = u64_at(4);
    let covered_to = u64_at(20);
    let max_b = u64_at(36) as i64;
    let bloom_len = u32::from_le_bytes(header[44..48].try_into().unwrap_or_default());
    let mut bloom = vec![0u8; bloom_len as usize];
    file.read_exact_at(&mut bloom, HEADER_BYTES)
        .map_err(|e| io_error(path, e))?;
    let expected = HEADER_BYTES + u64::from(bloom_len) + count * ENTRY_BYTES as u64;
    let actual = file.metadata().map_err(|e| io_error(path, e))?.len();
    if actual != expected || bloom.len() < 4 {
        return Err(StoreError::Corrupt(format!(
            "{} holds {actual} bytes, not the {expected} its header says",
            path.display()
        )));
    }
    Ok(Run {
        path: path.to_owned(),
        file,
        count,
        covered_to,
        max_b,
        bloom,
    })
}

fn io_error(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Database(format!("{}: {error}", path.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64, b: i64) -> Entry {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        key[8..16].copy_from_slice(&n.to_le_bytes());
        Entry {
            key,
            position: n.wrapping_mul(10),
            organization: (n % 5) as u32,
            length: 100,
            a: n,
            b,
        }
    }

    /// The memtable's hasher reads the whole key (keys alike in their first 24 bytes spread)
    /// and two tables hash differently (their seeds differ).
    #[test]
    fn memtable_keys_hash_by_every_byte_and_by_table() {
        use std::hash::BuildHasher;
        let (one, other) = (KeyHashing::default(), KeyHashing::default());
        let key = |last: u8| {
            let mut key = [7u8; 32];
            key[31] = last;
            key
        };
        let hashes: std::collections::HashSet<u64> =
            (0..=255).map(|last| one.hash_one(key(last))).collect();
        assert_eq!(hashes.len(), 256);
        assert_ne!(one.hash_one(key(0)), other.hash_one(key(0)));
        let mut table = Memtable::default();
        for n in 0..1_000 {
            table.insert(entry(n, 1).key, entry(n, 1));
        }
        assert!((0..1_000).all(|n| table.get(&entry(n, 1).key) == Some(&entry(n, 1))));
    }

    #[test]
    fn runs_find_their_entries_survive_reopening_and_retire_when_expired() {
        let dir = tempfile::tempdir().expect("temp dir");
        let runs = Runs::open(dir.path()).expect("open");
        runs.write((0..5_000).map(|n| entry(n, 100)), 0, 50_000)
            .expect("write");
        runs.write((5_000..6_000).map(|n| entry(n, 200)), 50_000, 60_000)
            .expect("write");
        std::fs::write(dir.path().join("00000000000000070000.partial"), b"half").expect("debris");

        let reopened = Runs::open(dir.path()).expect("reopen");
        assert_eq!(reopened.covered_to(), 60_000);
        for n in [0, 1, 4_999, 5_000, 5_999] {
            assert_eq!(
                reopened.find(&entry(n, 0).key).expect("find").map(|e| e.a),
                Some(n)
            );
        }
        for n in [6_000, 10_000, u64::MAX] {
            assert_eq!(reopened.find(&entry(n, 0).key).expect("find"), None);
        }
        assert!(!dir.path().join("00000000000000070000.partial").exists());
        assert_eq!(reopened.retire_below(150).expect("retire"), 5_000);
        assert_eq!(reopened.find(&entry(1, 0).key).expect("find"), None);
        assert_eq!(
            reopened
                .find(&entry(5_500, 0).key)
                .expect("find")
                .map(|e| e.b),
            Some(200)
        );
    }
}
