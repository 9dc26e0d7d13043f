//! C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>): the names and byte layouts under which a log
//! is served as static resources, so generic transparency-log clients can read it.
//!
//! - A **hash tile** at level *L*, index *N*, width *W* (1–256) is the concatenation of the *W*
//!   hashes of the complete subtrees at tree level `8·L` with indexes `N·256 … N·256+W-1`;
//!   a *full* tile has 256, a *partial* one fewer. Path: `tile/<L>/<N>[.p/<W>]`.
//! - An **entry bundle** is the same range of leaves' entries (here: each event's leaf bytes,
//!   [`crate::leaf`]), each prefixed by its length as two big-endian bytes. Path:
//!   `tile/entries/<N>[.p/<W>]`.
//! - `<N>` is written in groups of three digits, all but the last prefixed with `x`:
//!   1234067 is `x001/x234/067`.
//!
//! This module only names and lays out; what the hashes are comes from the tree (`tree.rs`).

use crate::LedgerError;

/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 256;

/// Tree levels a tile spans.
pub const TILE_HEIGHT: u32 = 8;

/// A resource under a log's `tile/` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    /// A hash tile: tile level, index and width.
    Hashes { level: u32, index: u64, width: u64 },
    /// An entry bundle: index and width.
    Entries { index: u64, width: u64 },
}

impl TilePath {
    /// Parses a path after `tile/`: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Malformed`] for anything else (a level above 63, a width outside 1–255
    /// for a partial tile, a group that is not three digits, leading `x`s misplaced).
    pub fn parse(path: &str) -> Result<Self, LedgerError> {
        let malformed = || LedgerError::Malformed(format!("'{path}' is not a tlog-tiles path"));
        let (kind, rest) = path.split_once('/').ok_or_else(malformed)?;
        let (number, width) = match rest.split_once(".p/") {
            Some((number, width)) => {
                let width: u64 = digits(width).ok_or_else(malformed)?;
                if !(1..TILE_WIDTH).contains(&width) {
                    return Err(malformed());
                }
                (number, width)
            }
            None => (rest, TILE_WIDTH),
        };
        let index = index(number).ok_or_else(malformed)?;
        if kind == "entries" {
            return Ok(TilePath::Entries { index, width });
        }
        let level: u32 = digits(kind).filter(|l| *l < 64).ok_or_else(malformed)?;
        Ok(TilePath::Hashes {
            level,
            index,
            width,
        })
    }

    /// The path after `tile/`, as [`TilePath::parse`] reads it.
    pub fn path(&self) -> String {
        let (prefix, index, width) = match self {
            TilePath::Hashes {
                level,
                index,
                width,
            } => (level.to_string(), *index, *width),
            TilePath::Entries { index, width } => ("entries".to_owned(), *index, *width),
        };
        let mut groups = vec![format!("{:03}", index % 1000)];
        let mut rest = index / 1000;
        while rest > 0 {
            groups.push(format!("x{:03}", rest % 1000));
            rest /= 1000;
        }
        groups.reverse();
        let partial = if width == TILE_WIDTH {
            String::new()
        } else {
            format!(".p/{width}")
        };
        format!("{prefix}/{}{partial}", groups.join("/"))
    }
}

/// A decimal number without sign or leading zeros (but "0").
fn digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// `<N>`: groups of three digits, all but the last prefixed with `x`, the first not all zeros.
fn index(text: &str) -> Option<u64> {
    let groups: Vec<&str> = text.split('/').collect();
    let (last, leading) = groups.split_last()?;
    let mut value: u64 = 0;
    for (position, group) in leading.iter().enumerate() {
        let group = group.strip_prefix('x')?;
        if position == 0 && group == "000" {
            return None;
        }
        value = value.checked_mul(1000)?.checked_add(three_digits(group)?)?;
    }
    value.checked_mul(1000)?.checked_add(three_digits(last)?)
}

fn three_digits(text: &str) -> Option<u64> {
    (text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// An entry bundle of `entries`, each prefixed by its length in two big-endian bytes.
///
/// # Errors
///
/// [`LedgerError::OutOfRange`] for an entry longer than 65,535 bytes, which the format cannot
/// carry.
pub fn entry_bundle<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, LedgerError> {
    let mut bundle = Vec::new();
    for entry in entries {
        let length = u16::try_from(entry.len()).map_err(|_| {
            LedgerError::OutOfRange(format!(
                "an entry of {} bytes does not fit an entry bundle",
                entry.len()
            ))
        })?;
        bundle.extend_from_slice(&length.to_be_bytes());
        bundle.extend_from_slice(entry);
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_and_written_as_the_spec_names_them() {
        for (text, path) in [
            (
                "0/000",
                TilePath::Hashes {
                    level: 0,
                    index: 0,
                    width: 256,
                },
            ),
            (
                "1/x001/x234/067.p/8",
                TilePath::Hashes {
                    level: 1,
                    index: 1_234_067,
                    width: 8,
                },
            ),
            (
                "entries/001.p/44",
                TilePath::Entries {
                    index: 1,
                    width: 44,
                },
            ),
            (
                "entries/x999/999",
                TilePath::Entries {
                    index: 999_999,
                    width: 256,
                },
            ),
        ] {
            assert_eq!(TilePath::parse(text), Ok(path), "{text}");
            assert_eq!(path.path(), text);
        }
    }

    #[test]
    fn malformed_paths_are_refused() {
        for text in [
            "",
            "0",
            "0/0",
            "0/0000",
            "0/x000/001",
            "0/001/x002",
            "64/000",
            "01/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/08",
            "0/000.p/",
            "data/000",
            "entries/",
            "0/-01",
            "0/1x2",
        ] {
            assert!(TilePath::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn an_entry_bundle_prefixes_each_entry_with_its_length() {
        let bundle = entry_bundle([b"ab".as_slice(), b"", &[7; 300]]).expect("bundle");
        assert_eq!(&bundle[..6], &[0, 2, b'a', b'b', 0, 0]);
        assert_eq!(&bundle[6..8], &[1, 44]);
        assert_eq!(bundle.len(), 8 + 300);
        assert!(entry_bundle([vec![0; 65_536].as_slice()]).is_err());
    }
}
