//! The log's on-disk format: frames of appended events.
//!
//! The log is a sequence of *frames*, one per append (one request: an event, a batch, a system
//! event), written back to back into segment files. Integers are little-endian.
//!
//! ```text
//! frame   := magic u32 = "TML1" | payload_len u32 | payload_crc u32 | header_crc u32 | payload
//! payload := org_len u16 | organization_id
//!            first_sequence u64 | event_count u32
//!            has_claim u8 [identity [32] | expires_at i64 | outcome_len u32 | outcome]
//!            event × event_count
//! event   := id_len u8 | id | leaf_hash [32] | received_at i64 (Unix ms)
//!            | body_len u32 | body_crc u32 | body
//! ```
//!
//! `header_crc` is the CRC-32 of the first 12 bytes, `payload_crc` of the payload as written;
//! they let recovery tell a complete frame from one a crash cut short (only the last frame of
//! the log can be), and are checked only for frames not yet indexed. Each event carries its own
//! `body_crc`, checked whenever its body is read: retention and erasure rewrite a body in place
//! (zeros for a purged event) together with its CRC, so a body is always checkable on its own.
//!
//! An event's *position* is the global byte offset of its `event` record; with the record's
//! length it is all a reader needs for one `pread`.
//!
//! Compatibility rule: a new frame layout gets a new magic; readers refuse magics they do not
//! know rather than guess.

use trailmark_ledger::tree::Hash;

/// `"TML1"` read as a little-endian u32.
pub(crate) const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"TML1");
/// Bytes before a frame's payload.
pub(crate) const FRAME_HEADER: usize = 16;
/// Bytes of an event record besides its id and body.
const EVENT_FIXED: usize = 1 + 32 + 8 + 4 + 4;

/// What went wrong reading the log's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormatError {
    /// Fewer bytes than the structure needs: the end of the written log, or a frame a crash
    /// cut short.
    #[error("the log ends inside a frame")]
    Truncated,
    #[error("not a frame (magic {0:#x})")]
    BadMagic(u32),
    #[error("a frame's checksum does not match its contents")]
    BadChecksum,
    #[error("an event's body does not match its checksum")]
    BadBody,
    #[error("a frame's contents are malformed: {0}")]
    Malformed(&'static str),
}

/// An idempotency claim as a frame carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameClaim {
    pub(crate) identity: [u8; 32],
    pub(crate) expires_at: i64,
    pub(crate) outcome: Vec<u8>,
}

/// One event as a frame carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameEvent {
    pub(crate) id: String,
    pub(crate) leaf_hash: Hash,
    pub(crate) received_at: i64,
    pub(crate) body: Vec<u8>,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) organization_id: String,
    pub(crate) first_sequence: u64,
    pub(crate) claim: Option<FrameClaim>,
    /// Each event with the offset of its record from the start of the frame, and the record's
    /// length.
    pub(crate) events: Vec<(FrameEvent, u32, u32)>,
}

/// Appends one frame to `out`; returns the offset (from the frame's start) and length of each
/// event record, in order.
///
/// # Panics
///
/// If an organization id is longer than 65,535 bytes or an event id longer than 255: both are
/// bounded far below by validation before anything reaches the log.
pub(crate) fn encode_frame(
    out: &mut Vec<u8>,
    organization_id: &str,
    first_sequence: u64,
    claim: Option<&FrameClaim>,
    events: &[(&str, &Hash, i64, &[u8])],
) -> Vec<(u32, u32)> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    let org_len = u16::try_from(organization_id.len()).expect("organization ids are short");
    out.extend_from_slice(&org_len.to_le_bytes());
    out.extend_from_slice(organization_id.as_bytes());
    out.extend_from_slice(&first_sequence.to_le_bytes());
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    match claim {
        None => out.push(0),
        Some(claim) => {
            out.push(1);
            out.extend_from_slice(&claim.identity);
            out.extend_from_slice(&claim.expires_at.to_le_bytes());
            out.extend_from_slice(&(claim.outcome.len() as u32).to_le_bytes());
            out.extend_from_slice(&claim.outcome);
        }
    }
    let mut records = Vec::with_capacity(events.len());
    for (id, leaf_hash, received_at, body) in events {
        let at = out.len();
        let id_len = u8::try_from(id.len()).expect("event ids are short");
        out.push(id_len);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(leaf_hash.as_slice());
        out.extend_from_slice(&received_at.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        out.extend_from_slice(body);
        records.push(((at - start) as u32, (out.len() - at) as u32));
    }
    let payload_len = (out.len() - start - FRAME_HEADER) as u32;
    let payload_crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    let header = &mut out[start..start + FRAME_HEADER];
    header[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&payload_len.to_le_bytes());
    header[8..12].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&header[0..12]);
    header[12..16].copy_from_slice(&header_crc.to_le_bytes());
    records
}

/// The length of the whole frame that starts with `header` (its first [`FRAME_HEADER`] bytes).
///
/// # Errors
///
/// [`FormatError::Truncated`] if `header` is short, [`FormatError::BadMagic`] or
/// [`FormatError::BadChecksum`] if it is not a frame's header.
pub(crate) fn frame_len(header: &[u8]) -> Result<usize, FormatError> {
    let header = header.get(..FRAME_HEADER).ok_or(FormatError::Truncated)?;
    let magic = u32::from_le_bytes(word(header, 0));
    if magic != FRAME_MAGIC {
        return Err(FormatError::BadMagic(magic));
    }
    if crc32fast::hash(&header[0..12]) != u32::from_le_bytes(word(header, 12)) {
        return Err(FormatError::BadChecksum);
    }
    Ok(FRAME_HEADER + u32::from_le_bytes(word(header, 4)) as usize)
}

/// Decodes the frame at the start of `bytes` (which must hold all of it), checking its header's
/// CRC, its payload's if `check_payload` (a frame whose bodies were rewritten in place no longer
/// matches it), and every body's.
///
/// # Errors
///
/// [`FormatError`] if the bytes are not one whole, intact frame.
pub(crate) fn decode_frame(bytes: &[u8], check_payload: bool) -> Result<Frame, FormatError> {
    let len = frame_len(bytes)?;
    let frame = bytes.get(..len).ok_or(FormatError::Truncated)?;
    let payload = &frame[FRAME_HEADER..];
    if check_payload && crc32fast::hash(payload) != u32::from_le_bytes(word(frame, 8)) {
        return Err(FormatError::BadChecksum);
    }
    let mut reader = Reader {
        bytes: payload,
        at: 0,
    };
    let org_len = reader.u16()? as usize;
    let organization_id = reader.text(org_len)?;
    let first_sequence = reader.u64()?;
    let count = reader.u32()?;
    let claim = match reader.u8()? {
        0 => None,
        1 => {
            let identity = reader
                .bytes(32)?
                .try_into()
                .map_err(|_| FormatError::Truncated)?;
            let expires_at = reader.u64()? as i64;
            let outcome_len = reader.u32()? as usize;
            Some(FrameClaim {
                identity,
                expires_at,
                outcome: reader.bytes(outcome_len)?.to_vec(),
            })
        }
        _ => return Err(FormatError::Malformed("claim flag")),
    };
    let mut events = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let at = FRAME_HEADER + reader.at;
        let (event, record_len) = decode_event(&payload[reader.at..])?;
        reader.at += record_len;
        events.push((event, at as u32, record_len as u32));
    }
    if reader.at != payload.len() {
        return Err(FormatError::Malformed("bytes after the last event"));
    }
    Ok(Frame {
        organization_id,
        first_sequence,
        claim,
        events,
    })
}

/// Decodes the event record at the start of `bytes`, checking its body's CRC; returns it and
/// the record's length.
///
/// # Errors
///
/// [`FormatError::Truncated`] if `bytes` ends early, [`FormatError::BadBody`] if the body does
/// not match its CRC.
pub(crate) fn decode_event(bytes: &[u8]) -> Result<(FrameEvent, usize), FormatError> {
    let mut reader = Reader { bytes, at: 0 };
    let id_len = reader.u8()? as usize;
    let id = reader.text(id_len)?;
    let leaf_hash: Hash = reader
        .bytes(32)?
        .try_into()
        .map_err(|_| FormatError::Truncated)?;
    let received_at = reader.u64()? as i64;
    let body_len = reader.u32()? as usize;
    let body_crc = reader.u32()?;
    let body = reader.bytes(body_len)?;
    if crc32fast::hash(body) != body_crc {
        return Err(FormatError::BadBody);
    }
    Ok((
        FrameEvent {
            id,
            leaf_hash,
            received_at,
            body: body.to_vec(),
        },
        reader.at,
    ))
}

/// Where an event record's body (with its CRC just before it) lies within the record: what a
/// rewrite of the body replaces. Returns `(offset of body_crc, body length)`.
pub(crate) fn body_span(record: &[u8]) -> Result<(usize, usize), FormatError> {
    let id_len = *record.first().ok_or(FormatError::Truncated)? as usize;
    let len_at = 1 + id_len + 32 + 8;
    let body_len = u32::from_le_bytes(
        record
            .get(len_at..len_at + 4)
            .ok_or(FormatError::Truncated)?
            .try_into()
            .map_err(|_| FormatError::Truncated)?,
    ) as usize;
    if record.len() < EVENT_FIXED + id_len + body_len {
        return Err(FormatError::Truncated);
    }
    Ok((len_at + 4, body_len))
}

/// The bytes that replace a body and its CRC when the body is rewritten in place: `body_crc`
/// then `body`, where `body` is `replacement` padded with spaces to the old length (JSON allows
/// trailing whitespace), or zeros when `replacement` is `None` (a purged event).
pub(crate) fn rewritten_body(old_len: usize, replacement: Option<&[u8]>) -> Vec<u8> {
    let mut body = match replacement {
        Some(new) => {
            let mut body = new.to_vec();
            body.resize(old_len.max(new.len()), b' ');
            body
        }
        None => vec![0; old_len],
    };
    body.truncate(old_len);
    let mut out = crc32fast::hash(&body).to_le_bytes().to_vec();
    out.append(&mut body);
    out
}

fn word(bytes: &[u8], at: usize) -> [u8; 4] {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    word
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, len: usize) -> Result<&'a [u8], FormatError> {
        let slice = self
            .bytes
            .get(self.at..self.at + len)
            .ok_or(FormatError::Truncated)?;
        self.at += len;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(
            self.bytes(2)?
                .try_into()
                .map_err(|_| FormatError::Truncated)?,
        ))
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?
                .try_into()
                .map_err(|_| FormatError::Truncated)?,
        ))
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?
                .try_into()
                .map_err(|_| FormatError::Truncated)?,
        ))
    }

    fn text(&mut self, len: usize) -> Result<String, FormatError> {
        String::from_utf8(self.bytes(len)?.to_vec()).map_err(|_| FormatError::Malformed("text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(out: &mut Vec<u8>, claim: Option<&FrameClaim>) -> Vec<(u32, u32)> {
        let leaf = [7u8; 32];
        encode_frame(
            out,
            "org_1",
            41,
            claim,
            &[
                ("event_a", &leaf, 1_785_578_400_000, br#"{"action":"a.b"}"#),
                (
                    "event_b",
                    &leaf,
                    7,
                    br#"{"action":"c.d","metadata":{"x":"\u00e9"}}"#,
                ),
            ],
        )
    }

    #[test]
    fn a_frame_reads_back_as_written_and_locates_its_events() {
        let claim = FrameClaim {
            identity: [3; 32],
            expires_at: 99,
            outcome: b"{\"trailmark\":1}".to_vec(),
        };
        let mut bytes = vec![0xAA; 5];
        let records = sample(&mut bytes, Some(&claim));
        let frame = decode_frame(&bytes[5..], true).expect("intact");
        assert_eq!(frame.organization_id, "org_1");
        assert_eq!(frame.first_sequence, 41);
        assert_eq!(frame.claim, Some(claim));
        assert_eq!(frame.events.len(), 2);
        for ((event, at, len), (written_at, written_len)) in frame.events.iter().zip(&records) {
            assert_eq!((*at, *len), (*written_at, *written_len));
            let (read, record_len) =
                decode_event(&bytes[5 + *at as usize..]).expect("an intact record");
            assert_eq!(&read, event);
            assert_eq!(record_len, *len as usize);
        }
        assert_eq!(frame.events[1].0.id, "event_b");
        assert_eq!(frame.events[1].0.received_at, 7);
        assert_eq!(frame_len(&bytes[5..]), Ok(bytes.len() - 5));
    }

    #[test]
    fn a_cut_or_damaged_frame_is_refused() {
        let mut bytes = Vec::new();
        sample(&mut bytes, None);
        for cut in [3, FRAME_HEADER, bytes.len() - 1] {
            assert_eq!(
                decode_frame(&bytes[..cut], true),
                Err(FormatError::Truncated),
                "{cut}"
            );
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 1;
        assert_eq!(decode_frame(&flipped, true), Err(FormatError::BadChecksum));
        let mut header = bytes.clone();
        header[5] ^= 1;
        assert_eq!(decode_frame(&header, true), Err(FormatError::BadChecksum));
        assert_eq!(
            decode_frame(&[0u8; 64], true),
            Err(FormatError::BadMagic(0)),
            "zeros are not a frame"
        );
    }

    #[test]
    fn a_body_rewritten_in_place_still_reads_and_keeps_its_record_length() {
        let mut bytes = Vec::new();
        let records = sample(&mut bytes, None);
        let (at, len) = (records[1].0 as usize, records[1].1 as usize);
        let record = bytes[at..at + len].to_vec();
        let (crc_at, body_len) = body_span(&record).expect("a record");
        for replacement in [None, Some(&br#"{"action":"c.d"}"#[..])] {
            let mut rewritten = record.clone();
            let new = rewritten_body(body_len, replacement);
            rewritten[crc_at..crc_at + new.len()].copy_from_slice(&new);
            let (event, read_len) = decode_event(&rewritten).expect("checks with its new CRC");
            assert_eq!(read_len, len);
            match replacement {
                None => assert!(event.body.iter().all(|b| *b == 0)),
                Some(text) => {
                    assert!(event.body.starts_with(text));
                    let parsed: serde_json::Value =
                        serde_json::from_slice(&event.body).expect("still JSON");
                    assert_eq!(parsed["action"], "c.d");
                }
            }
        }
    }
}
