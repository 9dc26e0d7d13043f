//! The log's files: segments of frames, appended to and read by position.
//!
//! `<data-dir>/log/<20-digit position>.seg`: each segment is named by the global position of
//! its first byte, so a position finds its file without an index. Frames never span two
//! segments; a new segment starts once the current one would pass [`SEGMENT_MAX_BYTES`].
//! Appends are `write` + `fdatasync` (the acknowledged part of an event's durability); a new
//! segment's directory entry is made durable before anything in it is acknowledged.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::format::{FRAME_HEADER, FormatError, Frame, decode_frame, frame_len};
use crate::StoreError;

/// A segment is closed once it holds about this much (a frame that would cross it opens the
/// next segment). Large enough that a directory holds few files, small enough that retention
/// and backups work in reasonable pieces.
pub(crate) const SEGMENT_MAX_BYTES: u64 = 256 << 20;

/// The segment files of one log.
pub(crate) struct Segments {
    dir: PathBuf,
    /// Open files by their first position.
    files: RwLock<BTreeMap<u64, Arc<File>>>,
}

/// Appends to the last segment. One writer at a time owns it.
pub(crate) struct Appender {
    segments: Arc<Segments>,
    file: Arc<File>,
    /// The current segment's first position and its length.
    start: u64,
    len: u64,
    max_bytes: u64,
}

impl Segments {
    /// Opens the log in `dir` (creating the directory), returning it and an appender positioned
    /// at `end` — the end of the last intact frame, which the caller learns from [`Segments::scan`]
    /// and passes back through [`Segments::appender`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] if the directory or a segment cannot be opened.
    pub(crate) fn open(dir: &Path) -> Result<Arc<Self>, StoreError> {
        let open_error = |source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        };
        crate::private::create_dir(dir).map_err(open_error)?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(open_error)? {
            let path = entry.map_err(open_error)?.path();
            let Some(start) = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".seg"))
                .and_then(|number| number.parse::<u64>().ok())
            else {
                continue;
            };
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|source| StoreError::Open {
                    path: path.display().to_string(),
                    source,
                })?;
            files.insert(start, Arc::new(file));
        }
        Ok(Arc::new(Segments {
            dir: dir.to_owned(),
            files: RwLock::new(files),
        }))
    }

    /// Reads `len` bytes at global `position`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if no segment holds them, I/O errors as [`StoreError::Database`].
    pub(crate) fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let files = self
            .files
            .read()
            .map_err(|_| StoreError::Unavailable("the segment list is poisoned".into()))?;
        let mut bytes = vec![0; len];
        let mut filled = 0;
        // A read of neighbouring records may run from one segment into the next.
        while filled < len {
            let at = position + filled as u64;
            let (start, file) = files.range(..=at).next_back().ok_or_else(|| {
                StoreError::Corrupt(format!("no log segment holds position {at}"))
            })?;
            let next = files
                .range(at + 1..)
                .next()
                .map_or(u64::MAX, |(next, _)| *next);
            let piece = ((next - at) as usize).min(len - filled);
            file.read_exact_at(&mut bytes[filled..filled + piece], at - start)
                .map_err(|e| io_error(&format!("reading the log at {at}"), e))?;
            filled += piece;
        }
        Ok(bytes)
    }

    /// Writes `bytes` over the log at `position` (a body rewritten in place) without syncing;
    /// [`Segments::sync_all`] makes it durable.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub(crate) fn overwrite_at(&self, position: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let (start, file) = self.segment_of(position)?;
        file.write_all_at(bytes, position - start)
            .map_err(|e| io_error(&format!("rewriting the log at {position}"), e))
    }

    /// `fdatasync`s every segment (after in-place rewrites).
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub(crate) fn sync_all(&self) -> Result<(), StoreError> {
        for file in self.snapshot().values() {
            file.sync_data()
                .map_err(|e| io_error("syncing the log", e))?;
        }
        Ok(())
    }

    /// Calls `each(position, frame)` for every frame from `from` to the end of the log, in
    /// order, and returns the end of the last intact frame. Payloads are checked against their
    /// CRC from `check_from` on (before it, retention may have rewritten bodies in place; each
    /// body still carries its own CRC). A damaged or cut-short frame is accepted only as the
    /// log's last (a crash during its write, before it was acknowledged): with `repair`, it and
    /// anything after it in that segment are cut off; without (a reader beside a running
    /// writer, which may be writing that very frame), the scan just ends there.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for a damaged frame anywhere else, or `each`'s error.
    pub(crate) fn scan(
        &self,
        from: u64,
        check_from: u64,
        repair: bool,
        mut each: impl FnMut(u64, Frame) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let files = self.snapshot();
        let Some((&last_start, _)) = files.iter().next_back() else {
            return Ok(from);
        };
        let mut end = from;
        for (&start, file) in files.range(..=last_start) {
            let len = file
                .metadata()
                .map_err(|e| io_error("reading a segment's size", e))?
                .len();
            if start + len <= from {
                continue;
            }
            let mut at = from.saturating_sub(start);
            // Read the segment in large pieces; frames are decoded from the buffer.
            let mut buffer = Vec::new();
            let mut buffer_at = at;
            while at < len {
                let need_header = (at + FRAME_HEADER as u64).min(len);
                ensure(file, &mut buffer, &mut buffer_at, at, need_header)?;
                let header = &buffer[(at - buffer_at) as usize..];
                let frame_end = match frame_len(header) {
                    Ok(frame) => at + frame as u64,
                    Err(error) => {
                        return self.cut_or_fail(start, last_start, at, error, repair);
                    }
                };
                if frame_end > len {
                    return self.cut_or_fail(start, last_start, at, FormatError::Truncated, repair);
                }
                ensure(file, &mut buffer, &mut buffer_at, at, frame_end)?;
                let bytes = &buffer[(at - buffer_at) as usize..(frame_end - buffer_at) as usize];
                match decode_frame(bytes, start + at >= check_from) {
                    Ok(frame) => each(start + at, frame)?,
                    Err(error) => return self.cut_or_fail(start, last_start, at, error, repair),
                }
                at = frame_end;
            }
            end = start + len;
        }
        Ok(end.max(from))
    }

    /// The end of a scan that met a bad frame at `at` in segment `start`: the log's tail is
    /// cut there if this is the last segment, else the log is corrupt.
    fn cut_or_fail(
        &self,
        start: u64,
        last_start: u64,
        at: u64,
        error: FormatError,
        repair: bool,
    ) -> Result<u64, StoreError> {
        if start != last_start {
            return Err(StoreError::Corrupt(format!(
                "the log is damaged at position {} ({error}), before its last segment",
                start + at
            )));
        }
        if !repair {
            return Ok(start + at);
        }
        let files = self.snapshot();
        if let Some(file) = files.get(&start) {
            tracing::warn!(
                position = start + at,
                %error,
                "the log ends with an incomplete frame (a crash while writing it); it is cut off"
            );
            file.set_len(at)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error("cutting off an incomplete frame", e))?;
        }
        Ok(start + at)
    }

    /// An appender at `end`, the end of the log as [`Segments::scan`] found it.
    ///
    /// # Errors
    ///
    /// I/O errors creating the first segment.
    pub(crate) fn appender(self: &Arc<Self>, end: u64) -> Result<Appender, StoreError> {
        let last = self.snapshot().into_iter().next_back();
        let (start, file) = match last {
            Some((start, file)) => (start, file),
            None => (end, self.create(end)?),
        };
        Ok(Appender {
            segments: Arc::clone(self),
            file,
            start,
            len: end - start,
            max_bytes: SEGMENT_MAX_BYTES,
        })
    }

    fn create(&self, start: u64) -> Result<Arc<File>, StoreError> {
        let path = self.dir.join(format!("{start:020}.seg"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        // The new file's name must survive a crash before anything in it is acknowledged.
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_error("syncing the log directory", e))?;
        let file = Arc::new(file);
        self.files
            .write()
            .map_err(|_| StoreError::Unavailable("the segment list is poisoned".into()))?
            .insert(start, Arc::clone(&file));
        Ok(file)
    }

    fn segment_of(&self, position: u64) -> Result<(u64, Arc<File>), StoreError> {
        let files = self
            .files
            .read()
            .map_err(|_| StoreError::Unavailable("the segment list is poisoned".into()))?;
        files
            .range(..=position)
            .next_back()
            .map(|(start, file)| (*start, Arc::clone(file)))
            .ok_or_else(|| StoreError::Corrupt(format!("no log segment holds position {position}")))
    }

    fn snapshot(&self) -> BTreeMap<u64, Arc<File>> {
        self.files
            .read()
            .map(|files| files.clone())
            .unwrap_or_default()
    }
}

impl Appender {
    /// The global position the next append starts at.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.len
    }

    /// Appends `bytes` (whole frames) and makes them durable; returns the position they start at.
    ///
    /// # Errors
    ///
    /// I/O errors. The caller must then treat the log's end as unknown (see the engine).
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<u64, StoreError> {
        if self.len > 0 && self.len + bytes.len() as u64 > self.max_bytes {
            let start = self.end();
            self.file
                .sync_data()
                .map_err(|e| io_error("closing a segment", e))?;
            self.file = self.segments.create(start)?;
            self.start = start;
            self.len = 0;
        }
        let position = self.end();
        self.file
            .write_all_at(bytes, self.len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error("appending to the log", e))?;
        self.len += bytes.len() as u64;
        Ok(position)
    }

    /// Cuts the current segment back to `end` after a failed append, so a partial write is not
    /// mistaken for frames.
    ///
    /// # Errors
    ///
    /// I/O errors: the log's end is then unknown.
    pub(crate) fn truncate_to(&mut self, end: u64) -> Result<(), StoreError> {
        let len = end.saturating_sub(self.start);
        self.file
            .set_len(len)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| io_error("cutting off a failed append", e))?;
        self.len = len;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }
}

/// Makes sure `buffer` (which holds the segment's bytes from `buffer_at`) covers `[at, until)`,
/// reading ahead in large pieces.
fn ensure(
    file: &File,
    buffer: &mut Vec<u8>,
    buffer_at: &mut u64,
    at: u64,
    until: u64,
) -> Result<(), StoreError> {
    const READ_AHEAD: u64 = 4 << 20;
    if at >= *buffer_at && until <= *buffer_at + buffer.len() as u64 {
        return Ok(());
    }
    let len = (until - at).max(READ_AHEAD);
    let mut fresh = vec![0; len as usize];
    let mut filled = 0;
    while filled < fresh.len() {
        match file.read_at(&mut fresh[filled..], at + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("reading a segment", e)),
        }
    }
    fresh.truncate(filled);
    *buffer = fresh;
    *buffer_at = at;
    Ok(())
}

fn io_error(what: &str, error: std::io::Error) -> StoreError {
    StoreError::Database(format!("{what}: {error}").into())
}

#[cfg(test)]
mod tests {
    use super::super::format::encode_frame;
    use super::*;

    fn frame(sequence: u64, body: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_frame(
            &mut bytes,
            "org_1",
            sequence,
            None,
            &[("event_x", &[1; 32], 0, body)],
        );
        bytes
    }

    fn frames_from(segments: &Segments, from: u64) -> (Vec<u64>, u64) {
        let mut sequences = Vec::new();
        let end = segments
            .scan(from, 0, true, |_, frame| {
                sequences.push(frame.first_sequence);
                Ok(())
            })
            .expect("scan");
        (sequences, end)
    }

    #[test]
    fn frames_are_appended_across_segments_and_read_back_by_position() {
        let dir = tempfile::tempdir().expect("temp dir");
        let segments = Segments::open(dir.path()).expect("open");
        let mut appender = segments.appender(0).expect("appender").with_max_bytes(300);
        let mut positions = Vec::new();
        for n in 0..10 {
            let bytes = frame(n, format!("{{\"n\":{n}}}").repeat(5).as_bytes());
            positions.push((appender.append(&bytes).expect("append"), bytes));
        }
        let files = std::fs::read_dir(dir.path()).expect("list").count();
        assert!(files > 2, "rolled over into several segments, got {files}");
        for (position, bytes) in &positions {
            assert_eq!(
                &segments.read_at(*position, bytes.len()).expect("read"),
                bytes
            );
        }
        let all: Vec<u8> = positions.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(
            segments
                .read_at(0, all.len())
                .expect("a read across segments"),
            all
        );
        let reopened = Segments::open(dir.path()).expect("reopen");
        let (sequences, end) = frames_from(&reopened, 0);
        assert_eq!(sequences, (0..10).collect::<Vec<_>>());
        assert_eq!(end, appender.end());
        let (later, _) = frames_from(&reopened, positions[6].0);
        assert_eq!(later, [6, 7, 8, 9], "a scan can start at any frame");
    }

    #[test]
    fn a_torn_last_frame_is_cut_off_and_appending_resumes_there() {
        let dir = tempfile::tempdir().expect("temp dir");
        let segments = Segments::open(dir.path()).expect("open");
        let mut appender = segments.appender(0).expect("appender");
        appender.append(&frame(0, b"{}")).expect("append");
        let intact_end = appender.end();
        let torn = frame(1, b"{\"torn\":true}");
        appender
            .append(&torn[..torn.len() - 3])
            .expect("append a torn frame");
        drop(appender);

        let reopened = Segments::open(dir.path()).expect("reopen");
        let (sequences, end) = frames_from(&reopened, 0);
        assert_eq!(sequences, [0]);
        assert_eq!(end, intact_end);
        let mut appender = reopened.appender(end).expect("appender");
        appender.append(&frame(1, b"{}")).expect("append");
        let (sequences, _) = frames_from(&Segments::open(dir.path()).expect("reopen"), 0);
        assert_eq!(sequences, [0, 1]);
    }

    #[test]
    fn damage_before_the_last_segment_is_corruption_not_a_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let segments = Segments::open(dir.path()).expect("open");
        let mut appender = segments.appender(0).expect("appender").with_max_bytes(100);
        for n in 0..4 {
            appender
                .append(&frame(n, b"{\"padding\":\"xxxxxxxxxxxxxxxxxxxx\"}"))
                .expect("append");
        }
        segments
            .overwrite_at(20, b"\xFF\xFF")
            .expect("damage the first segment");
        assert!(matches!(
            Segments::open(dir.path())
                .expect("reopen")
                .scan(0, 0, true, |_, _| Ok(())),
            Err(StoreError::Corrupt(_))
        ));
    }
}
