//! What a process, a directory and the disk did during a measured window: bytes written to
//! storage and CPU time per process (`/proc/<pid>/io`, `/proc/<pid>/stat`), the bytes under a
//! directory, and the disk's own sequential write rate, synced and not.
//!
//! These are the physical side of ingest (SPEC §6): how many bytes each event costs the disk,
//! and how many events the disk could take at that cost.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

/// Counters read at one instant; a window's figures are the difference of two.
#[derive(Clone, Copy, Default, Debug)]
pub struct Sample {
    /// Bytes the processes caused to be written to storage (`write_bytes` of `/proc/<pid>/io`):
    /// counted when a page is first dirtied or written directly, so a page rewritten while still
    /// dirty counts once; what reaches the disk for them, checkpoints included.
    pub written: u64,
    /// CPU seconds the processes used, user and system, all threads.
    pub cpu: f64,
    /// PostgreSQL only: the WAL position, bytes (`pg_current_wal_lsn()`), which is the whole
    /// cluster's.
    pub wal: Option<u64>,
    /// PostgreSQL only: the database's size, bytes (`pg_database_size`).
    pub database: Option<u64>,
    /// PostgreSQL only: CPU seconds of every PostgreSQL server process ([`postgres_cpu`]).
    pub postgres_cpu: Option<f64>,
    /// CPU seconds the whole machine spent busy, all cores ([`machine_busy`]).
    pub machine_busy: Option<f64>,
}

impl Sample {
    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Sample) -> Sample {
        let minus = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?));
        Sample {
            written: self.written.saturating_sub(earlier.written),
            cpu: (self.cpu - earlier.cpu).max(0.0),
            wal: minus(self.wal, earlier.wal),
            database: minus(self.database, earlier.database),
            postgres_cpu: seconds_minus(self.postgres_cpu, earlier.postgres_cpu),
            machine_busy: seconds_minus(self.machine_busy, earlier.machine_busy),
        }
    }

    pub fn add(&mut self, other: &Sample) {
        let plus = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.written += other.written;
        self.cpu += other.cpu;
        self.wal = plus(self.wal, other.wal);
        self.database = plus(self.database, other.database);
        self.postgres_cpu = self.postgres_cpu.or(other.postgres_cpu);
        self.machine_busy = self.machine_busy.or(other.machine_busy);
    }
}

fn seconds_minus(later: Option<f64>, earlier: Option<f64>) -> Option<f64> {
    Some((later? - earlier?).max(0.0))
}

/// Takes a [`Sample`]; the load generator calls it when its measured window opens and closes.
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<Sample, String>> + Send + Sync>;

/// A probe reading the processes `pids` (their sum).
pub fn processes(pids: Vec<u32>) -> Probe {
    Arc::new(move || {
        let pids = pids.clone();
        Box::pin(async move {
            let mut total = Sample::default();
            for pid in pids {
                total.add(&process(pid)?);
            }
            Ok(total)
        })
    })
}

/// `write_bytes` and CPU time of process `pid` (`self` for this one), all its threads.
pub fn process(pid: impl std::fmt::Display) -> Result<Sample, String> {
    let io_path = format!("/proc/{pid}/io");
    let io = std::fs::read_to_string(&io_path).map_err(|e| format!("reading {io_path}: {e}"))?;
    let written = io
        .lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("{io_path} has no write_bytes"))?;
    let stat_path = format!("/proc/{pid}/stat");
    let stat =
        std::fs::read_to_string(&stat_path).map_err(|e| format!("reading {stat_path}: {e}"))?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed: utime
    // and stime are fields 14 and 15 of the line, the 12th and 13th after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Ok(Sample {
        written,
        cpu: fields.iter().sum::<u64>() as f64 / ticks_per_second(),
        wal: None,
        database: None,
        postgres_cpu: None,
        machine_busy: None,
    })
}

/// Clock ticks a second, the unit of `/proc`'s CPU times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it reads a constant of the running system.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// CPU seconds of every PostgreSQL server process on the machine (command name `postgres`),
/// with the time of backends that have exited: the postmaster counts its reaped children's.
pub fn postgres_cpu() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let ticks: u64 = entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (name, rest) = stat.split_once(" (")?.1.rsplit_once(')')?;
            // utime, stime, cutime and cstime: fields 14 to 17, the 12th to 15th after the name.
            (name == "postgres").then(|| {
                rest.split_whitespace()
                    .skip(11)
                    .take(4)
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum::<u64>()
            })
        })
        .sum();
    ticks as f64 / ticks_per_second()
}

/// CPU seconds the whole machine has spent busy since boot, all cores together (`/proc/stat`:
/// everything but idle and iowait).
pub fn machine_busy() -> Result<f64, String> {
    let stat =
        std::fs::read_to_string("/proc/stat").map_err(|e| format!("reading /proc/stat: {e}"))?;
    let times: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .ok_or("/proc/stat has no cpu line")?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user's).
    let busy: u64 = times
        .iter()
        .take(8)
        .enumerate()
        .filter(|(field, _)| *field != 3 && *field != 4)
        .map(|(_, ticks)| ticks)
        .sum();
    Ok(busy as f64 / ticks_per_second())
}

/// Every regular file under `dir`, largest first, with its size in bytes (paths relative to
/// `dir`).
pub fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.is_file() {
                let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                out.push((relative, meta.len()));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort_by_key(|file| std::cmp::Reverse(file.1));
    files
}

/// The disk's own sequential write rates in `dir`.
pub struct DiskCeiling {
    /// Bytes per second of 1 MiB writes each followed by `fdatasync`.
    pub synced: f64,
    /// Bytes per second of 1 MiB writes with no sync (into the page cache).
    pub unsynced: f64,
    /// How long the `fdatasync` after the unsynced writes took (untimed in `unsynced`): it
    /// keeps their writeback out of the parts that follow.
    pub unsynced_flush: Duration,
}

const CHUNK: usize = 1 << 20;
/// The unsynced writes stop here if `duration` has not passed: enough to see the rate, not so
/// much that its writeback takes long.
const UNSYNCED_MAX: u64 = 1 << 30;

/// Writes 1 MiB chunks to a new file in `dir` for `duration`, each followed by `fdatasync`,
/// then as many again (at most 1 GiB) without; the files are removed after.
pub fn disk_ceiling(dir: &Path, duration: Duration) -> Result<DiskCeiling, String> {
    // Not zeros, in case anything under the filesystem compresses or skips them.
    let mut chunk = vec![0u8; CHUNK];
    let mut random = crate::dataset::Random::new(0xd15c);
    for word in chunk.chunks_mut(8) {
        word.copy_from_slice(&random.next().to_le_bytes());
    }
    let path = dir.join("disk-ceiling.bin");
    let io =
        |what: &str, e: std::io::Error| format!("disk ceiling, {what} {}: {e}", path.display());

    let mut file = File::create(&path).map_err(|e| io("creating", e))?;
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < duration {
        file.write_all(&chunk).map_err(|e| io("writing", e))?;
        file.sync_data().map_err(|e| io("syncing", e))?;
        written += CHUNK as u64;
    }
    let synced = written as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).map_err(|e| io("removing", e))?;

    let mut file = File::create(&path).map_err(|e| io("creating", e))?;
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < duration && written < UNSYNCED_MAX {
        file.write_all(&chunk).map_err(|e| io("writing", e))?;
        written += CHUNK as u64;
    }
    let unsynced = written as f64 / started.elapsed().as_secs_f64();
    let flushing = Instant::now();
    file.sync_data().map_err(|e| io("syncing", e))?;
    let unsynced_flush = flushing.elapsed();
    drop(file);
    std::fs::remove_file(&path).map_err(|e| io("removing", e))?;
    Ok(DiskCeiling {
        synced,
        unsynced,
        unsynced_flush,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_shows_its_own_synced_writes() {
        let dir = crate::WorkDir::create(None).expect("a work dir");
        let before = process("self").expect("readable /proc/self");
        let mut file = File::create(dir.path.join("f")).expect("a file");
        file.write_all(&vec![7u8; 1 << 20]).expect("written");
        file.sync_data().expect("synced");
        let after = process("self").expect("readable /proc/self");
        // tmpfs never counts write_bytes; everywhere else a synced MiB is at least a MiB.
        if !crate::filesystem_of(&dir.path).starts_with("tmpfs") {
            assert!(after.since(&before).written >= 1 << 20);
        }
        let files = files_under(&dir.path);
        assert_eq!(files, vec![(PathBuf::from("f"), 1 << 20)]);
    }
}
