//! What instances send each other, as bytes: a batch of prepared appends one way, their outcomes
//! the other. Pure: no I/O, so every shape is tested here by a round trip.
//!
//! Integers are big-endian; a text or byte string is its `u32` length, then its bytes. An
//! append travels prepared (its bodies written and its leaf templates cut), so the instance that
//! sequences it only assigns numbers and writes, as for its own appends.

use trailmark_domain::Timestamp;
use trailmark_ledger::leaf::LeafTemplate;

use crate::StoreError;
use crate::model::{AppendOutcome, IdempotencyClaim, Receipt};
use crate::rules::{PreparedAppend, PreparedEvent};

/// A message that does not read as what the other side writes: the connection is dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a peer's message is malformed: {0}")]
pub(crate) struct Malformed(&'static str);

/// One forwarded append and the number its answer comes back under.
pub(crate) struct Forward {
    pub id: u64,
    pub append: PreparedAppend,
}

/// What the sequencing instance answers for one forwarded append. Errors cross as the two
/// kinds the sender treats apart: an organization that does not exist (the answer), and
/// everything else, named by its message (the sender then commits the append itself).
#[derive(Debug, PartialEq)]
pub(crate) struct Answer {
    pub id: u64,
    pub outcome: Result<AppendOutcome, Refusal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    OrganizationNotFound(String),
    Failed(String),
}

impl Refusal {
    pub(crate) fn of(error: &StoreError) -> Self {
        match error {
            StoreError::OrganizationNotFound(id) => Refusal::OrganizationNotFound(id.clone()),
            other => Refusal::Failed(other.to_string()),
        }
    }
}

const APPENDED: u8 = 0;
const REPLAYED: u8 = 1;
const ORGANIZATION_NOT_FOUND: u8 = 2;
const FAILED: u8 = 3;

/// Writes `forwards` (each an id and an append [`write_append`] wrote) as one message.
pub(crate) fn write_forwards<'a>(
    forwards: impl ExactSizeIterator<Item = (u64, &'a [u8])>,
    out: &mut Vec<u8>,
) {
    put_len(out, forwards.len());
    for (id, append) in forwards {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(append);
    }
}

/// Writes one append, for [`write_forwards`].
pub(crate) fn write_append(append: &PreparedAppend, out: &mut Vec<u8>) {
    put_bytes(out, append.organization_id.as_bytes());
    match &append.idempotency {
        None => out.push(0),
        Some(claim) => {
            out.push(1);
            out.extend_from_slice(&claim.identity);
            out.extend_from_slice(&claim.expires_at.unix_millis().to_be_bytes());
            put_bytes(out, &claim.outcome);
        }
    }
    put_len(out, append.events.len());
    for event in &append.events {
        put_bytes(out, event.id.as_bytes());
        out.extend_from_slice(&event.received_at.unix_millis().to_be_bytes());
        out.extend_from_slice(&event.occurred_at.unix_millis().to_be_bytes());
        put_bytes(out, event.body.as_bytes());
        let (before, after) = event.leaf.parts();
        put_bytes(out, before);
        put_bytes(out, after);
    }
}

/// Reads a message [`write_forwards`] wrote.
pub(crate) fn read_forwards(message: &[u8]) -> Result<Vec<Forward>, Malformed> {
    let mut reader = Reader(message);
    let forwards = reader.list(|reader| {
        Ok(Forward {
            id: reader.u64()?,
            append: read_append(reader)?,
        })
    })?;
    reader.end()?;
    Ok(forwards)
}

fn read_append(reader: &mut Reader<'_>) -> Result<PreparedAppend, Malformed> {
    let organization_id = reader.text()?;
    // Only appends with a claim are handed over: the claim is what makes an unanswered one
    // safe to commit twice (`peer`'s module says how).
    let idempotency = match reader.u8()? {
        1 => Some(IdempotencyClaim {
            identity: reader.array()?,
            expires_at: reader.timestamp()?,
            outcome: reader.bytes()?.to_vec(),
        }),
        0 => return Err(Malformed("an append without an idempotency claim")),
        _ => return Err(Malformed("an idempotency claim's tag")),
    };
    let events = reader.list(|reader| {
        Ok(PreparedEvent {
            id: reader.text()?,
            received_at: reader.timestamp()?,
            occurred_at: reader.timestamp()?,
            body: reader.text()?,
            leaf: LeafTemplate::from_parts(reader.bytes()?.to_vec(), reader.bytes()?.to_vec()),
            index: (),
        })
    })?;
    Ok(PreparedAppend {
        organization_id,
        events,
        idempotency,
    })
}

/// Writes `answers` as one message.
pub(crate) fn write_answers<'a>(
    answers: impl ExactSizeIterator<Item = &'a Answer>,
    out: &mut Vec<u8>,
) {
    put_len(out, answers.len());
    for answer in answers {
        out.extend_from_slice(&answer.id.to_be_bytes());
        match &answer.outcome {
            Ok(AppendOutcome::Appended { receipts }) => {
                out.push(APPENDED);
                write_receipts(receipts, out);
            }
            Ok(AppendOutcome::Replayed { receipts, outcome }) => {
                out.push(REPLAYED);
                write_receipts(receipts, out);
                put_bytes(out, outcome);
            }
            Err(Refusal::OrganizationNotFound(id)) => {
                out.push(ORGANIZATION_NOT_FOUND);
                put_bytes(out, id.as_bytes());
            }
            Err(Refusal::Failed(message)) => {
                out.push(FAILED);
                put_bytes(out, message.as_bytes());
            }
        }
    }
}

/// About how many bytes [`write_answers`] writes for `answer`.
pub(crate) fn answer_size(answer: &Answer) -> usize {
    let receipt = |r: &Receipt| 4 + r.id.len() + 8 + 32;
    9 + match &answer.outcome {
        Ok(AppendOutcome::Appended { receipts }) => 4 + receipts.iter().map(receipt).sum::<usize>(),
        Ok(AppendOutcome::Replayed { receipts, outcome }) => {
            8 + outcome.len() + receipts.iter().map(receipt).sum::<usize>()
        }
        Err(Refusal::OrganizationNotFound(text) | Refusal::Failed(text)) => 4 + text.len(),
    }
}

fn write_receipts(receipts: &[Receipt], out: &mut Vec<u8>) {
    put_len(out, receipts.len());
    for receipt in receipts {
        put_bytes(out, receipt.id.as_bytes());
        out.extend_from_slice(&receipt.sequence.to_be_bytes());
        out.extend_from_slice(&receipt.leaf_hash);
    }
}

/// Reads a message [`write_answers`] wrote.
pub(crate) fn read_answers(message: &[u8]) -> Result<Vec<Answer>, Malformed> {
    let mut reader = Reader(message);
    let answers = reader.list(|reader| {
        let id = reader.u64()?;
        let outcome = match reader.u8()? {
            APPENDED => Ok(AppendOutcome::Appended {
                receipts: read_receipts(reader)?,
            }),
            REPLAYED => Ok(AppendOutcome::Replayed {
                receipts: read_receipts(reader)?,
                outcome: reader.bytes()?.to_vec(),
            }),
            ORGANIZATION_NOT_FOUND => Err(Refusal::OrganizationNotFound(reader.text()?)),
            FAILED => Err(Refusal::Failed(reader.text()?)),
            _ => return Err(Malformed("an answer's tag")),
        };
        Ok(Answer { id, outcome })
    })?;
    reader.end()?;
    Ok(answers)
}

fn read_receipts(reader: &mut Reader<'_>) -> Result<Vec<Receipt>, Malformed> {
    reader.list(|reader| {
        Ok(Receipt {
            id: reader.text()?,
            sequence: reader.u64()?,
            leaf_hash: reader.array()?,
        })
    })
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Nothing Trailmark sends holds 4 GiB; a frame is refused far below that.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Reads a message front to back; every read checks what is left.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < count {
            return Err(Malformed("it ends early"));
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn timestamp(&mut self) -> Result<Timestamp, Malformed> {
        Ok(Timestamp::from_unix_millis(i64::from_be_bytes(
            self.array()?,
        )))
    }

    fn len(&mut self) -> Result<usize, Malformed> {
        let len = u32::from_be_bytes(self.array()?);
        usize::try_from(len).map_err(|_| Malformed("a length"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.len()?;
        self.take(len)
    }

    fn text(&mut self) -> Result<String, Malformed> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Malformed("a text is not UTF-8"))
    }

    /// A count, then that many items read by `item`. The count only sizes the first
    /// allocation up to a bound: a peer's count alone allocates nothing large.
    fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, Malformed>,
    ) -> Result<Vec<T>, Malformed> {
        let count = self.len()?;
        let mut items = Vec::with_capacity(count.min(4_096));
        for _ in 0..count {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn end(&self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed("bytes follow its end"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append() -> PreparedAppend {
        PreparedAppend {
            organization_id: "org_01".into(),
            events: vec![
                PreparedEvent {
                    id: "evt_1".into(),
                    received_at: Timestamp::from_unix_millis(1_700_000_000_123),
                    occurred_at: Timestamp::from_unix_millis(1_699_999_999_000),
                    body: r#"{"action":"user.signed_in","é":"ü"}"#.into(),
                    leaf: LeafTemplate::from_parts(b"{\"before\":".to_vec(), b"}".to_vec()),
                    index: (),
                },
                PreparedEvent {
                    id: "evt_2".into(),
                    received_at: Timestamp::from_unix_millis(0),
                    occurred_at: Timestamp::from_unix_millis(-5),
                    body: String::new(),
                    leaf: LeafTemplate::from_parts(Vec::new(), Vec::new()),
                    index: (),
                },
            ],
            idempotency: Some(IdempotencyClaim {
                identity: [7; 32],
                expires_at: Timestamp::from_unix_millis(1_800_000_000_000),
                outcome: vec![1, 2, 3],
            }),
        }
    }

    fn same(a: &PreparedAppend, b: &PreparedAppend) -> bool {
        a.organization_id == b.organization_id
            && a.idempotency == b.idempotency
            && a.events.len() == b.events.len()
            && a.events.iter().zip(&b.events).all(|(a, b)| {
                a.id == b.id
                    && a.received_at == b.received_at
                    && a.occurred_at == b.occurred_at
                    && a.body == b.body
                    && a.leaf.parts() == b.leaf.parts()
            })
    }

    fn forwards(appends: &[(u64, &PreparedAppend)]) -> Vec<u8> {
        let encoded: Vec<(u64, Vec<u8>)> = appends
            .iter()
            .map(|(id, append)| {
                let mut bytes = Vec::new();
                write_append(append, &mut bytes);
                (*id, bytes)
            })
            .collect();
        let mut message = Vec::new();
        write_forwards(
            encoded.iter().map(|(id, bytes)| (*id, bytes.as_slice())),
            &mut message,
        );
        message
    }

    #[test]
    fn forwards_read_back_as_written() {
        let first = append();
        let mut second = append();
        second.events.truncate(1);
        let message = forwards(&[(9, &first), (u64::MAX, &second)]);
        let read = read_forwards(&message).expect("reads");
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].id, read[1].id), (9, u64::MAX));
        assert!(same(&read[0].append, &first));
        assert!(same(&read[1].append, &second));
    }

    #[test]
    fn an_append_without_an_idempotency_claim_is_refused() {
        let mut claimless = append();
        claimless.idempotency = None;
        assert_eq!(
            read_forwards(&forwards(&[(1, &claimless)])).err(),
            Some(Malformed("an append without an idempotency claim"))
        );
    }

    #[test]
    fn answers_read_back_as_written() {
        let receipts = vec![Receipt {
            id: "evt_1".into(),
            sequence: 41,
            leaf_hash: [3; 32],
        }];
        let answers = vec![
            Answer {
                id: 1,
                outcome: Ok(AppendOutcome::Appended {
                    receipts: receipts.clone(),
                }),
            },
            Answer {
                id: 2,
                outcome: Ok(AppendOutcome::Replayed {
                    receipts,
                    outcome: b"outcome".to_vec(),
                }),
            },
            Answer {
                id: 3,
                outcome: Err(Refusal::OrganizationNotFound("org_gone".into())),
            },
            Answer {
                id: 4,
                outcome: Err(Refusal::Failed("database error".into())),
            },
        ];
        let mut message = Vec::new();
        write_answers(answers.iter(), &mut message);
        assert_eq!(read_answers(&message).expect("reads"), answers);
        assert_eq!(
            4 + answers.iter().map(answer_size).sum::<usize>(),
            message.len()
        );
    }

    #[test]
    fn every_cut_of_a_message_is_refused_not_misread() {
        let mut message = forwards(&[(1, &append())]);
        for end in 0..message.len() {
            assert!(read_forwards(&message[..end]).is_err(), "cut at {end}");
        }
        message.push(0);
        assert_eq!(
            read_forwards(&message).err(),
            Some(Malformed("bytes follow its end"))
        );
    }

    #[test]
    fn a_refusal_keeps_what_the_sender_tells_apart() {
        assert_eq!(
            Refusal::of(&StoreError::OrganizationNotFound("org_x".into())),
            Refusal::OrganizationNotFound("org_x".into())
        );
        assert!(matches!(
            Refusal::of(&StoreError::Unavailable("pool timed out".into())),
            Refusal::Failed(message) if message.contains("pool timed out")
        ));
    }
}
