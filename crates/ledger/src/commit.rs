//! Leaf version 2: an event's erasable values enter its leaf as salted hashes, so they can be
//! erased later while every proof still verifies.
//!
//! An event stored since leaf version 2 carries, besides the event object's usual keys, either
//!
//! - `"salt"`: its seed, 16 random bytes in standard base64, or, once values were erased,
//! - `"salts"`: `{pointer: salt}` for each erasable value still present, and `"erased"`:
//!   `{pointer: commitment}` for each erased one (whose value now reads `"[erased]"`).
//!
//! The pointers are those of `trailmark_domain::erasable`. For the value `v` at pointer `p`:
//!
//! - `salt(p) = SHA-256("trailmark/v2/salt" ‖ 0x00 ‖ seed ‖ p)[0..16]` (or `salts[p]`): one salt
//!   per value, none revealing another, so showing the salts of what remains reveals nothing
//!   about what was erased;
//! - `commitment(p) = SHA-256(salt(p) ‖ RFC 8785 canonical JSON of v)` (or `erased[p]`).
//!
//! The **committed object** is the event object without `leaf_hash`, `inclusion_proof`, `salt`,
//! `salts` and `erased`, with every erasable value replaced by its commitment (base64) and
//! `"leaf_version": 2` added. Its canonical JSON is the leaf (`crate::leaf`). It holds no personal
//! data, and it is the same before and after an erasure: erasing a value replaces it by the
//! placeholder and its salt by its commitment.
//!
//! Events stored before version 2 have neither key; their leaf is the event object itself, so
//! their values cannot be erased one by one (only the whole event can be purged).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use trailmark_domain::canonical::{CanonicalObject, CanonicalValue, canonical_json};
use trailmark_domain::erasable::{ERASED, for_each_erasable, for_each_erasable_mut, set_pointer};

use crate::LedgerError;
use crate::sha256x2;
use crate::tree::Hash;

/// Bytes of an event's seed and of each value's salt.
pub const SALT_BYTES: usize = 16;

pub type Salt = [u8; SALT_BYTES];

/// The leaf version of events whose erasable values are committed by salted hashes.
pub const LEAF_VERSION: u64 = 2;

/// The keys that carry salts and commitments; they are not part of the committed object.
pub const SALTING_KEYS: [&str; 3] = ["salt", "salts", "erased"];

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode<const N: usize>(text: &Value, what: &str) -> Result<[u8; N], LedgerError> {
    text.as_str()
        .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .and_then(|bytes| <[u8; N]>::try_from(bytes).ok())
        .ok_or_else(|| LedgerError::Malformed(format!("{what} is not the base64 of {N} bytes")))
}

/// The `"salt"` text of a new event with `seed`.
pub fn seed_text(seed: &Salt) -> String {
    base64(seed)
}

/// What every salt's message starts with, before the event's seed and the value's pointer.
const SALT_DOMAIN: &[u8; 18] = b"trailmark/v2/salt\0";

/// The salt of the value at `pointer` of an event with `seed`.
pub fn value_salt(seed: &Salt, pointer: &str) -> Salt {
    salt_of(&sha256_of(&[SALT_DOMAIN, seed, pointer.as_bytes()]))
}

/// A salt: the first [`SALT_BYTES`] of its message's hash.
fn salt_of(digest: &Hash) -> Salt {
    let mut salt = [0u8; SALT_BYTES];
    salt.copy_from_slice(&digest[..SALT_BYTES]);
    salt
}

/// The commitment to `value` under `salt`.
pub fn commitment(salt: &Salt, value: &Value) -> Hash {
    sha256_of(&[salt, &canonical_json(value)])
}

/// The longest message [`sha256_padded`] takes: two blocks hold 128 bytes, less the 0x80 byte
/// and the 8-byte length that pad them.
const MAX_SHORT: usize = 119;

/// SHA-256 of `parts` one after the other. Salts and commitments hash a few dozen bytes each,
/// a dozen or more times an event, so a message that fits two blocks is padded here and given
/// straight to the compression function, without a hasher's buffering around it.
fn sha256_of(parts: &[&[u8]]) -> Hash {
    let length: usize = parts.iter().map(|part| part.len()).sum();
    if length > MAX_SHORT {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        return hasher.finalize().into();
    }
    let mut buffer = [0u8; 128];
    let mut at = 0;
    for part in parts {
        buffer[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    sha256_padded(&mut buffer, length)
}

/// SHA-256 of the first `length` bytes of `buffer` (at most [`MAX_SHORT`]), every byte after
/// them zero: the padding is written in place and the one or two blocks compressed where they
/// lie, so a message written straight into the buffer is never copied.
fn sha256_padded(buffer: &mut [u8; 128], length: usize) -> Hash {
    let blocks = sha256x2::pad_tail(buffer, length, length);
    let mut state = sha256x2::INITIAL;
    for block in 0..blocks {
        sha256x2::compress(&mut state, sha256x2::tail_block(buffer, block));
    }
    sha256x2::digest(state)
}

/// [`sha256_padded`] of two messages at once, their blocks compressed two by two
/// ([`sha256x2`]): what a salt or commitment costs is mostly waiting on the rounds of one
/// block, which another block's rounds can fill.
fn sha256_padded_pair(
    a: &mut [u8; 128],
    a_length: usize,
    b: &mut [u8; 128],
    b_length: usize,
) -> (Hash, Hash) {
    let (a_blocks, b_blocks) = (
        sha256x2::pad_tail(a, a_length, a_length),
        sha256x2::pad_tail(b, b_length, b_length),
    );
    let (mut a_state, mut b_state) = (sha256x2::INITIAL, sha256x2::INITIAL);
    sha256x2::compress_pair(
        &mut a_state,
        sha256x2::tail_block(a, 0),
        &mut b_state,
        sha256x2::tail_block(b, 0),
    );
    match (a_blocks, b_blocks) {
        (2, 2) => {
            sha256x2::compress_pair(
                &mut a_state,
                sha256x2::tail_block(a, 1),
                &mut b_state,
                sha256x2::tail_block(b, 1),
            );
        }
        (2, _) => sha256x2::compress(&mut a_state, sha256x2::tail_block(a, 1)),
        (_, 2) => sha256x2::compress(&mut b_state, sha256x2::tail_block(b, 1)),
        _ => {}
    }
    (sha256x2::digest(a_state), sha256x2::digest(b_state))
}

/// Standard base64's characters (RFC 4648 §4).
const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The two base64 characters of every 12 bits.
const BASE64_PAIRS: [[u8; 2]; 4096] = {
    let mut pairs = [[0u8; 2]; 4096];
    let mut bits = 0;
    while bits < 4096 {
        pairs[bits] = [BASE64_ALPHABET[bits >> 6], BASE64_ALPHABET[bits & 63]];
        bits += 1;
    }
    pairs
};

/// The standard base64 of `hash` (44 characters, one `=` of padding): a commitment is written
/// this way a dozen times an event, so twelve bits at a time are looked up, with none of a
/// general encoder's bookkeeping.
fn hash_base64(hash: &Hash) -> [u8; 44] {
    let mut text = [b'='; 44];
    // Ten groups of three bytes make forty characters; the last two bytes make three more.
    for (group, chars) in hash.chunks_exact(3).zip(text.chunks_exact_mut(4)) {
        let bits = usize::from(group[0]) << 16 | usize::from(group[1]) << 8 | usize::from(group[2]);
        chars[..2].copy_from_slice(&BASE64_PAIRS[bits >> 12]);
        chars[2..].copy_from_slice(&BASE64_PAIRS[bits & 0xfff]);
    }
    let bits = usize::from(hash[30]) << 16 | usize::from(hash[31]) << 8;
    text[40..42].copy_from_slice(&BASE64_PAIRS[bits >> 12]);
    text[42] = BASE64_PAIRS[bits & 0xfff][0];
    text
}

/// How an event's erasable values are salted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Salting {
    /// Nothing erased: every salt derives from the seed.
    Seed(Salt),
    /// After an erasure: the salts of the values left, the commitments of the values erased.
    Explicit {
        salts: BTreeMap<String, Salt>,
        erased: BTreeMap<String, Hash>,
    },
}

impl Salting {
    /// The salting of an event object or stored body; `None` for an event stored before leaf
    /// version 2.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Malformed`] for salts or commitments that do not decode.
    pub fn of(object: &Value) -> Result<Option<Salting>, LedgerError> {
        if let Some(seed) = object.get("salt") {
            return Ok(Some(Salting::Seed(decode(seed, "salt")?)));
        }
        let (Some(salts), Some(erased)) = (object.get("salts"), object.get("erased")) else {
            return Ok(None);
        };
        let map = |value: &Value, what: &str| {
            value
                .as_object()
                .cloned()
                .ok_or_else(|| LedgerError::Malformed(format!("{what} is not an object")))
        };
        Ok(Some(Salting::Explicit {
            salts: map(salts, "salts")?
                .iter()
                .map(|(pointer, salt)| Ok((pointer.clone(), decode(salt, "a salt")?)))
                .collect::<Result<_, LedgerError>>()?,
            erased: map(erased, "erased")?
                .iter()
                .map(|(pointer, hash)| Ok((pointer.clone(), decode(hash, "a commitment")?)))
                .collect::<Result<_, LedgerError>>()?,
        }))
    }

    /// The salt of the value at `pointer`, unless it was erased.
    fn salt(&self, pointer: &str) -> Option<Salt> {
        match self {
            Salting::Seed(seed) => Some(value_salt(seed, pointer)),
            Salting::Explicit { salts, .. } => salts.get(pointer).copied(),
        }
    }

    /// The commitment to `value` at `pointer`.
    fn commitment(&self, pointer: &str, value: &Value) -> Result<Hash, LedgerError> {
        if let Salting::Explicit { erased, .. } = self
            && let Some(hash) = erased.get(pointer)
        {
            // The placeholder is the only value an erased pointer may show: anything else would
            // be a value the leaf does not commit to.
            return if value.as_str() == Some(ERASED) {
                Ok(*hash)
            } else {
                Err(LedgerError::Malformed(format!(
                    "{pointer} is erased but reads {value}"
                )))
            };
        }
        let salt = self
            .salt(pointer)
            .ok_or_else(|| LedgerError::Malformed(format!("{pointer} has no salt")))?;
        Ok(commitment(&salt, value))
    }

    /// How many pointers it names (explicit salting), to check none is left over.
    fn named(&self) -> Option<usize> {
        match self {
            Salting::Seed(_) => None,
            Salting::Explicit { salts, erased } => Some(salts.len() + erased.len()),
        }
    }
}

/// The committed object of a leaf-version-2 event object (see the module docs).
///
/// # Errors
///
/// [`LedgerError::Malformed`] if a value has no salt, an erased value shows anything but the
/// placeholder, or the salting names a value the event does not have.
pub fn committed_object(object: &Value, salting: &Salting) -> Result<Value, LedgerError> {
    into_committed_object(object.clone(), salting)
}

/// [`committed_object`], turning `object` itself into it (no copy: the leaf of every new event
/// and of every event verified goes through here).
///
/// # Errors
///
/// As [`committed_object`].
pub fn into_committed_object(mut object: Value, salting: &Salting) -> Result<Value, LedgerError> {
    let Value::Object(map) = &mut object else {
        return Err(LedgerError::Malformed("an event is an object".into()));
    };
    for key in SALTING_KEYS.iter().chain(crate::leaf::NON_LEAF_KEYS.iter()) {
        map.remove(*key);
    }
    map.insert("leaf_version".into(), Value::from(LEAF_VERSION));
    let mut committed = 0;
    let mut failure = None;
    for_each_erasable_mut(&mut object, |pointer, value| {
        match salting.commitment(pointer, value) {
            Ok(hash) => {
                *value = Value::String(base64(&hash));
                committed += 1;
            }
            Err(error) => failure = failure.take().or(Some(error)),
        }
    });
    if let Some(error) = failure {
        return Err(error);
    }
    if salting.named().is_some_and(|named| named != committed) {
        return Err(LedgerError::Malformed(
            "the salts and erased values name values the event does not have".into(),
        ));
    }
    Ok(object)
}

/// The canonical bytes of the committed object of `object`, an event object written in canonical
/// form whose values are salted by its seed: built from the text member by member, hashing each
/// erasable value's own canonical text, without building a tree of the event. It gives the
/// bytes [`into_committed_object`] and `canonical_json` give, in a fraction of the time (every
/// new event's leaf and every verified event's leaf is made here).
///
/// `None` where this path does not apply and the tree must be built: an event before leaf
/// version 2, one with values erased (explicit salts), one that already names a
/// `leaf_version`, or one whose parties are not in canonical form.
pub fn seeded_committed_bytes(object: &CanonicalObject<'_>) -> Option<Vec<u8>> {
    let seed = decode_text::<SALT_BYTES>(object.get("salt")?)?;
    if object.get("salts").is_some() || object.get("erased").is_some() {
        return None;
    }
    committed_bytes_under(object, &seed)
}

/// [`seeded_committed_bytes`] of an event object whose seed is given apart from it (a stored
/// body's), whatever salting keys the text holds.
pub fn committed_bytes_under(object: &CanonicalObject<'_>, seed: &Salt) -> Option<Vec<u8>> {
    committed_with_sequence_at(object, seed).map(|(bytes, _)| bytes)
}

/// [`committed_bytes_under`], and where the top-level `sequence` value starts in the bytes
/// (what a leaf template splits at), found while writing rather than by scanning them again.
pub(crate) fn committed_with_sequence_at(
    object: &CanonicalObject<'_>,
    seed: &Salt,
) -> Option<(Vec<u8>, Option<usize>)> {
    if object.get("leaf_version").is_some() {
        return None;
    }
    let mut writer = CommittedWriter::new(seed);
    writer.out.push(b'{');
    let mut version_written = false;
    let mut sequence_at = None;
    for (key, value) in object.members() {
        if left_out_of_committed(key) {
            continue;
        }
        // Top-level keys are printable ASCII here, whose byte order is canonical order.
        if !version_written && key > "leaf_version" {
            writer.raw_member("leaf_version", LEAF_VERSION_TEXT);
            version_written = true;
        }
        writer.key(key);
        if key == "sequence" {
            sequence_at = Some(writer.out.len());
        }
        match key {
            "actor" => writer.within("/actor", |writer| writer.party(value)),
            "targets" => match value.elements() {
                Some(targets) => {
                    writer.out.push(b'[');
                    for (index, target) in targets.enumerate() {
                        if index > 0 {
                            writer.out.push(b',');
                        }
                        writer.base.clear();
                        writer.base.push_str("/targets/");
                        push_decimal(&mut writer.base, index);
                        writer.party(target);
                    }
                    writer.out.push(b']');
                }
                // Not an array: nothing in it is erasable, as `for_each_erasable` sees it.
                None => writer.out.extend_from_slice(value.text().as_bytes()),
            },
            "context" => writer.within("/context", |writer| {
                writer.object(value, |key| matches!(key, "location" | "user_agent"));
            }),
            "metadata" => writer.within("/metadata", |writer| writer.object(value, |_| true)),
            _ => writer.out.extend_from_slice(value.text().as_bytes()),
        }
    }
    if !version_written {
        writer.raw_member("leaf_version", LEAF_VERSION_TEXT);
    }
    writer.finish();
    writer.out.push(b'}');
    Some((writer.out, sequence_at))
}

const LEAF_VERSION_TEXT: &str = "2";

/// Whether a top-level key is one of [`SALTING_KEYS`] or `leaf::NON_LEAF_KEYS`, which the
/// committed object leaves out: one match rather than a search of each list, as every member
/// of every event is asked.
fn left_out_of_committed(key: &str) -> bool {
    matches!(
        key,
        "salt" | "salts" | "erased" | "leaf_hash" | "inclusion_proof"
    )
}

/// Appends `number` in decimal: a pointer's index, written for every target of every event,
/// without the formatting machinery.
fn push_decimal(text: &mut String, number: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = number;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    text.extend(digits[at..].iter().map(|&digit| char::from(digit)));
}

fn decode_text<const N: usize>(json_string: &str) -> Option<[u8; N]> {
    let text = json_string.strip_prefix('"')?.strip_suffix('"')?;
    crate::exact_base64::decode(text.as_bytes())
}

/// Writes a committed object's canonical bytes from canonical text (see
/// [`seeded_committed_bytes`]).
struct CommittedWriter {
    seed: Salt,
    /// `SALT_DOMAIN ‖ seed`: how every salt's message of the event starts.
    salt_start: [u8; SALT_START],
    out: Vec<u8>,
    /// The pointer of the object whose values are being committed (`/actor`,
    /// `/targets/0/metadata`), grown and cut back as the writer goes in and out.
    base: String,
    /// A value's whole pointer, for a salt whose message is too long to write in place.
    pointer: String,
    /// Commitments written as placeholders, hashed two by two: the first waits in
    /// `pending[0]` (when `waiting`) for the second. Kept here, written in place, so that their
    /// buffers are not copied about.
    pending: [Pending; 2],
    waiting: bool,
}

/// A commitment's two messages, written out in the blocks that are hashed.
struct Pending {
    /// `SALT_DOMAIN ‖ seed ‖ pointer`, the message of the value's salt.
    salt_message: [u8; 128],
    salt_length: usize,
    /// Room for the salt, then the value's canonical text: the commitment's message.
    commitment_message: [u8; 128],
    commitment_length: usize,
    /// Where the commitment's base64 goes in the output.
    at: usize,
}

impl Pending {
    const EMPTY: Pending = Pending {
        salt_message: [0; 128],
        salt_length: 0,
        commitment_message: [0; 128],
        commitment_length: 0,
        at: 0,
    };

    /// Hashes the salt, then the commitment; where two are given, each beside the other's.
    fn hash(pending: &mut [Pending]) -> [Hash; 2] {
        let mut hashes = [[0; 32]; 2];
        match pending {
            [a, b] => {
                let (a_salt, b_salt) = sha256_padded_pair(
                    &mut a.salt_message,
                    a.salt_length,
                    &mut b.salt_message,
                    b.salt_length,
                );
                a.commitment_message[..SALT_BYTES].copy_from_slice(&salt_of(&a_salt));
                b.commitment_message[..SALT_BYTES].copy_from_slice(&salt_of(&b_salt));
                let (a_hash, b_hash) = sha256_padded_pair(
                    &mut a.commitment_message,
                    a.commitment_length,
                    &mut b.commitment_message,
                    b.commitment_length,
                );
                hashes = [a_hash, b_hash];
            }
            [one] => {
                let salt = salt_of(&sha256_padded(&mut one.salt_message, one.salt_length));
                one.commitment_message[..SALT_BYTES].copy_from_slice(&salt);
                hashes[0] = sha256_padded(&mut one.commitment_message, one.commitment_length);
            }
            _ => {}
        }
        hashes
    }
}

/// A commitment's place in the output until it is hashed: its quotes around as many bytes as
/// its base64 takes.
const PLACEHOLDER: [u8; 46] = [b'"'; 46];

const SALT_START: usize = SALT_DOMAIN.len() + SALT_BYTES;

impl CommittedWriter {
    fn new(seed: &Salt) -> Self {
        let mut salt_start = [0u8; SALT_START];
        salt_start[..SALT_DOMAIN.len()].copy_from_slice(SALT_DOMAIN);
        salt_start[SALT_DOMAIN.len()..].copy_from_slice(seed);
        CommittedWriter {
            seed: *seed,
            salt_start,
            out: Vec::with_capacity(2048),
            base: String::with_capacity(64),
            // Only a pointer too long for a salt's block is written out whole: rarely needed.
            pointer: String::new(),
            pending: [Pending::EMPTY, Pending::EMPTY],
            waiting: false,
        }
    }

    /// Runs `write` with `segment` added to the base pointer.
    fn within(&mut self, segment: &str, write: impl FnOnce(&mut Self)) {
        let length = self.base.len();
        self.base.push_str(segment);
        write(self);
        self.base.truncate(length);
    }

    fn key(&mut self, key: &str) {
        // Every member but an object's first follows a value, and no value ends in `{`.
        if self.out.last() != Some(&b'{') {
            self.out.push(b',');
        }
        // Keys of a scanned canonical object are printable ASCII with nothing to escape.
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn raw_member(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.extend_from_slice(value.as_bytes());
    }

    /// [`value_salt`] of the value at base/`key`.
    fn salt(&mut self, key: &str) -> Salt {
        let mut message = [0u8; 128];
        match Self::salt_message(&self.salt_start, &self.base, key, &mut message) {
            Some(length) => salt_of(&sha256_padded(&mut message, length)),
            None => {
                set_pointer(&mut self.pointer, &self.base, key);
                value_salt(&self.seed, &self.pointer)
            }
        }
    }

    /// Writes the message of the salt of the value at base/`key` (`SALT_DOMAIN ‖ seed ‖
    /// pointer`, the key escaped as `set_pointer` escapes it) straight into `buffer`, the
    /// block that is hashed, with no pointer string built; its length, or `None` if it does
    /// not fit there.
    fn salt_message(
        salt_start: &[u8; SALT_START],
        base: &str,
        key: &str,
        buffer: &mut [u8; 128],
    ) -> Option<usize> {
        buffer[..SALT_START].copy_from_slice(salt_start);
        let mut at = SALT_START;
        let mut put = |bytes: &[u8]| {
            let end = at + bytes.len();
            let fits = end <= MAX_SHORT;
            if fits {
                buffer[at..end].copy_from_slice(bytes);
                at = end;
            }
            fits
        };
        let mut fits = put(base.as_bytes()) && put(b"/");
        if key.bytes().any(|byte| byte == b'~' || byte == b'/') {
            // RFC 6901: `~` and `/` are ASCII, so escaping byte by byte never splits a
            // character.
            for byte in key.bytes() {
                fits = fits
                    && match byte {
                        b'~' => put(b"~0"),
                        b'/' => put(b"~1"),
                        _ => put(&[byte]),
                    };
            }
        } else {
            fits = fits && put(key.as_bytes());
        }
        fits.then_some(at)
    }

    /// The commitment to the value whose canonical text is `value`, at base/`key`. Where both
    /// of its messages fit a short hash's buffer it is written as a placeholder and hashed with
    /// the next such commitment; [`CommittedWriter::finish`] hashes the last.
    fn commit(&mut self, key: &str, value: &str) {
        let at = self.out.len() + 1;
        self.out.extend_from_slice(&PLACEHOLDER);
        let commitment_length = SALT_BYTES + value.len();
        let next = &mut self.pending[usize::from(self.waiting)];
        // The buffers of an earlier commitment are zeroed, as the padding wants past the new
        // messages: whole, which is a few stores, rather than from where each message ends,
        // which is a call to `memset` for every message.
        next.salt_message = [0; 128];
        next.commitment_message = [0; 128];
        let salt_length = (commitment_length <= MAX_SHORT)
            .then(|| Self::salt_message(&self.salt_start, &self.base, key, &mut next.salt_message))
            .flatten();
        let Some(salt_length) = salt_length else {
            let salt = self.salt(key);
            let hash = sha256_of(&[&salt, value.as_bytes()]);
            self.place(at, &hash);
            return;
        };
        next.salt_length = salt_length;
        next.commitment_message[SALT_BYTES..commitment_length].copy_from_slice(value.as_bytes());
        next.commitment_length = commitment_length;
        next.at = at;
        if self.waiting {
            let [a, b] = Pending::hash(&mut self.pending);
            self.place(self.pending[0].at, &a);
            self.place(self.pending[1].at, &b);
        }
        self.waiting = !self.waiting;
    }

    /// Hashes the commitment still waiting, if any, alone: the output is then complete.
    fn finish(&mut self) {
        if self.waiting {
            let [hash, _] = Pending::hash(&mut self.pending[..1]);
            self.place(self.pending[0].at, &hash);
            self.waiting = false;
        }
    }

    /// Writes a commitment's base64 into its placeholder.
    fn place(&mut self, at: usize, hash: &Hash) {
        self.out[at..at + 44].copy_from_slice(&hash_base64(hash));
    }

    /// An actor or target at the base pointer: its `id`, `name` and metadata values committed,
    /// the rest as is.
    fn party(&mut self, value: CanonicalValue<'_>) {
        let Some(members) = value.members() else {
            // Not an object: nothing in it is erasable, as `for_each_erasable` sees it.
            self.out.extend_from_slice(value.text().as_bytes());
            return;
        };
        self.out.push(b'{');
        for (key, member) in members {
            self.key(key);
            match key {
                "id" | "name" => self.commit(key, member.text()),
                "metadata" => self.within("/metadata", |writer| writer.object(member, |_| true)),
                _ => self.out.extend_from_slice(member.text().as_bytes()),
            }
        }
        self.out.push(b'}');
    }

    /// An object at the base pointer whose members that `erasable` names are committed, the
    /// rest as is.
    fn object(&mut self, value: CanonicalValue<'_>, erasable: impl Fn(&str) -> bool) {
        let Some(members) = value.members() else {
            self.out.extend_from_slice(value.text().as_bytes());
            return;
        };
        self.out.push(b'{');
        for (key, member) in members {
            self.key(key);
            if erasable(key) {
                self.commit(key, member.text());
            } else {
                self.out.extend_from_slice(member.text().as_bytes());
            }
        }
        self.out.push(b'}');
    }
}

/// `body` (a stored leaf-version-2 body) with the values at `pointers` erased: each reads
/// [`ERASED`], its commitment is kept in `erased`, and the seed gives way to the salts of the
/// values left. The event's leaf is unchanged.
///
/// # Errors
///
/// [`LedgerError::Malformed`] if the body has no salting (an event stored before leaf version
/// 2) or a pointer names no erasable value.
pub fn erase(body: &Value, pointers: &[String]) -> Result<Value, LedgerError> {
    let salting = Salting::of(body)?.ok_or_else(|| {
        LedgerError::Malformed("the event was stored before leaf version 2".into())
    })?;
    let mut salts = Map::new();
    let mut erased = Map::new();
    let mut failure = None;
    for_each_erasable(body, |pointer, value| {
        let erase_now = pointers.iter().any(|p| p == pointer);
        let already =
            matches!(&salting, Salting::Explicit { erased, .. } if erased.contains_key(pointer));
        if erase_now || already {
            match salting.commitment(pointer, value) {
                Ok(hash) => {
                    erased.insert(pointer.to_owned(), Value::String(base64(&hash)));
                }
                Err(error) => failure = failure.take().or(Some(error)),
            }
        } else if let Some(salt) = salting.salt(pointer) {
            salts.insert(pointer.to_owned(), Value::String(base64(&salt)));
        } else {
            failure = failure
                .take()
                .or_else(|| Some(LedgerError::Malformed(format!("{pointer} has no salt"))));
        }
    });
    if let Some(error) = failure {
        return Err(error);
    }
    let mut body = body.clone();
    for pointer in pointers {
        let slot = body
            .pointer_mut(pointer)
            .ok_or_else(|| LedgerError::Malformed(format!("{pointer} names no value")))?;
        *slot = Value::String(ERASED.into());
    }
    if let Value::Object(map) = &mut body {
        map.remove("salt");
        map.insert("salts".into(), Value::Object(salts));
        map.insert("erased".into(), Value::Object(erased));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(seed: &Salt) -> Value {
        json!({
            "object": "audit_log_event", "id": "event_1", "organization_id": "org_1",
            "sequence": 4, "received_at": "2026-08-01T10:00:00.100Z", "version": null,
            "action": "document.shared", "occurred_at": "2026-08-01T10:00:00.000Z",
            "actor": {"id": "user_1", "type": "user", "name": "Ana"},
            "targets": [{"id": "doc_1", "type": "document"}],
            "context": {"location": "10.0.0.1", "user_agent": "UA"},
            "metadata": {"email": "ana@acme.test", "n": 3},
            "salt": seed_text(seed),
        })
    }

    fn committed(object: &Value) -> Value {
        let salting = Salting::of(object).expect("decodes").expect("version 2");
        committed_object(object, &salting).expect("commits")
    }

    #[test]
    fn the_committed_object_holds_no_erasable_value_and_names_its_version() {
        let object = object(&[7; SALT_BYTES]);
        let committed = committed(&object);
        let text = String::from_utf8(canonical_json(&committed)).expect("UTF-8");
        for value in ["user_1", "Ana", "doc_1", "10.0.0.1", "UA", "ana@acme.test"] {
            assert!(!text.contains(value), "{value} in {text}");
        }
        for kept in ["document.shared", "\"user\"", "event_1", "org_1"] {
            assert!(text.contains(kept), "{kept} in {text}");
        }
        assert_eq!(committed["leaf_version"], 2);
        assert!(committed.get("salt").is_none());
        assert_eq!(
            committed["metadata"]["n"],
            base64(&commitment(
                &value_salt(&[7; SALT_BYTES], "/metadata/n"),
                &json!(3)
            ))
        );
    }

    #[test]
    fn erasing_changes_the_values_but_not_the_committed_object() {
        let object = object(&[1; SALT_BYTES]);
        let before = committed(&object);
        let erased =
            erase(&object, &["/actor/id".into(), "/metadata/email".into()]).expect("erases");
        assert_eq!(erased["actor"]["id"], ERASED);
        assert_eq!(erased["metadata"]["email"], ERASED);
        assert!(
            erased.get("salt").is_none(),
            "the seed would reveal the erased salts"
        );
        assert_eq!(committed(&erased), before);
        // Erasing more later keeps what was erased before.
        let again = erase(&erased, &["/context/location".into()]).expect("erases");
        assert_eq!(committed(&again), before);
        assert_eq!(again["erased"].as_object().map(Map::len), Some(3));
        let text = serde_json::to_string(&again).expect("JSON");
        assert!(!text.contains("user_1") && !text.contains("10.0.0.1"));
    }

    #[test]
    fn a_changed_value_or_a_shown_erased_value_does_not_commit_the_same() {
        let object = object(&[2; SALT_BYTES]);
        let before = committed(&object);
        let mut changed = object.clone();
        changed["actor"]["name"] = json!("Eve");
        assert_ne!(committed(&changed), before);

        let mut erased = erase(&object, &["/actor/name".into()]).expect("erases");
        erased["actor"]["name"] = json!("Eve");
        let salting = Salting::of(&erased).expect("decodes").expect("version 2");
        assert!(committed_object(&erased, &salting).is_err());

        let mut extra = erase(&object, &["/actor/name".into()]).expect("erases");
        extra["salts"]["/actor/nickname"] = json!(base64(&[0; SALT_BYTES]));
        let salting = Salting::of(&extra).expect("decodes").expect("version 2");
        assert!(committed_object(&extra, &salting).is_err());
    }

    #[test]
    fn events_before_version_two_have_no_salting_and_cannot_be_erased_value_by_value() {
        let mut object = object(&[3; SALT_BYTES]);
        object.as_object_mut().map(|map| map.remove("salt"));
        assert_eq!(Salting::of(&object), Ok(None));
        assert!(erase(&object, &["/actor/id".into()]).is_err());
    }

    #[test]
    fn short_messages_hash_as_sha256_does() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for length in (0..=130).chain([200, 300]) {
            for split in [0, length / 3, length] {
                let (a, b) = bytes[..length].split_at(split);
                let expected: Hash = Sha256::digest(&bytes[..length]).into();
                assert_eq!(sha256_of(&[a, b]), expected, "{length} split at {split}");
            }
        }
    }

    #[test]
    fn a_salt_written_in_place_is_the_salt_of_its_pointer() {
        let seed = [6; SALT_BYTES];
        let mut writer = CommittedWriter::new(&seed);
        let long_base = "/b".repeat(45);
        for base in ["/actor", "/targets/12/metadata", long_base.as_str()] {
            writer.base = base.into();
            // Every message length across one block, two, and more than two (hashed apart).
            let keys = (0..100).map(|length| "k".repeat(length));
            let escaped = ["a/b", "~t~/", "~".repeat(50).as_str(), "é/ü"].map(str::to_owned);
            for key in keys.chain(escaped) {
                let mut pointer = String::new();
                set_pointer(&mut pointer, base, &key);
                assert_eq!(writer.salt(&key), value_salt(&seed, &pointer), "{pointer}");
            }
        }
    }

    #[test]
    fn the_keys_left_out_of_the_committed_object_are_the_salting_and_non_leaf_keys() {
        let listed: Vec<&str> = SALTING_KEYS
            .iter()
            .chain(crate::leaf::NON_LEAF_KEYS.iter())
            .copied()
            .collect();
        for key in &listed {
            assert!(left_out_of_committed(key), "{key}");
        }
        for key in [
            "action",
            "actor",
            "id",
            "leaf_version",
            "sal",
            "saltss",
            "sequence",
            "",
        ] {
            assert!(!left_out_of_committed(key), "{key}");
        }
        assert_eq!(
            listed.len(),
            5,
            "a key added to the lists is added to the match"
        );
    }

    #[test]
    fn indexes_are_written_in_decimal() {
        for number in [0, 7, 10, 99, 100, 4_096, usize::MAX] {
            let mut text = "/targets/".to_owned();
            push_decimal(&mut text, number);
            assert_eq!(text, format!("/targets/{number}"));
        }
    }

    #[test]
    fn hashes_are_written_in_standard_base64() {
        let mut hashes = vec![
            [0; 32],
            [255; 32],
            std::array::from_fn(|i| (i * 37 + 11) as u8),
        ];
        // Every byte value at every position, and hashes of hashes for the rest.
        for value in 0..=255u8 {
            for at in 0..32 {
                let mut hash = [0x5a; 32];
                hash[at] = value;
                hashes.push(hash);
            }
        }
        let mut hash = [0; 32];
        for _ in 0..10_000 {
            hash = Sha256::digest(hash).into();
            hashes.push(hash);
        }
        for hash in hashes {
            assert_eq!(hash_base64(&hash), *base64(&hash).as_bytes(), "{hash:?}");
        }
    }

    #[test]
    fn salts_differ_per_value_and_per_seed() {
        let a = value_salt(&[0; SALT_BYTES], "/actor/id");
        assert_ne!(a, value_salt(&[0; SALT_BYTES], "/actor/name"));
        assert_ne!(a, value_salt(&[1; SALT_BYTES], "/actor/id"));
    }
}
