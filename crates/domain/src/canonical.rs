//! Canonical JSON per RFC 8785 (JSON Canonicalization Scheme): the one byte sequence for a JSON
//! value that anyone can recompute, whatever their parser's key order or number formatting.
//!
//! - Object members are sorted by their keys' UTF-16 code units; no whitespace anywhere.
//! - Strings are escaped minimally: `\"`, `\\`, `\b \f \n \r \t`, other control characters as
//!   `\u00xx` (lower-case hex); everything else is written as UTF-8.
//! - Numbers are IEEE-754 doubles written as ECMAScript's `Number.prototype.toString` does
//!   (`1e+21`, `1e-7`, `0.5`, `-0` → `0`). Integers beyond 2^53 therefore lose precision, as they
//!   do in every JavaScript client.
//!
//! This does not depend on `serde_json`'s map order, which a feature flag elsewhere in the build
//! could change.
//!
//! Example: `{"b":[1.0,"é"],"a":{"z":null,"y":1e21}}` → `{"a":{"y":1e+21,"z":null},"b":[1,"é"]}`.

use serde_json::{Number, Value};
use std::io::Write as _;

use crate::json::{Json, unique_members};

/// The RFC 8785 canonical bytes of `value`.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    canonical_json_without(value, &[])
}

/// The canonical bytes of an array of `items`: what `canonical_json` gives for the same
/// array read as a [`Value`] (a member name sent twice keeps its last value).
pub fn canonical_json_array(items: &[Json<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 * items.len() + 2);
    write_json_array(items, &mut out);
    out
}

/// The canonical bytes of `value` with the members named in `skip` left out of it, if it is an
/// object (only at the top level): what a copy of the object without them would give.
pub fn canonical_json_without(value: &Value, skip: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    match value {
        Value::Object(map) => write_object(map, skip, &mut out),
        other => write_value(other, &mut out),
    }
    out
}

/// Writes a canonical object member by member, for callers that know their keys and give them
/// in canonical order (each key sorts after the one before), without building the object.
pub struct ObjectWriter {
    out: Vec<u8>,
}

impl ObjectWriter {
    pub fn new(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        ObjectWriter { out }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        write_string(key, &mut self.out);
        self.out.push(b':');
    }

    pub fn member(&mut self, key: &str, value: &Value) {
        self.key(key);
        write_value(value, &mut self.out);
    }

    /// Starts a member whose value the caller writes into the returned buffer itself (a nested
    /// object it knows the shape of).
    pub(crate) fn raw_member(&mut self, key: &str) -> &mut Vec<u8> {
        self.key(key);
        &mut self.out
    }

    pub fn string_member(&mut self, key: &str, value: &str) {
        self.key(key);
        write_string(value, &mut self.out);
    }

    /// Writes an integer member (exact below 2^53) and returns where its digits start.
    pub fn integer_member(&mut self, key: &str, value: u64) -> usize {
        self.key(key);
        let at = self.out.len();
        write_value(&Value::from(value), &mut self.out);
        at
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_json_number(number, out),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => write_array(items, out),
        Value::Object(map) => write_object(map, &[], out),
    }
}

fn write_json_number(number: &Number, out: &mut Vec<u8>) {
    match number
        .as_i64()
        .filter(|n| n.unsigned_abs() <= EXACT_INTEGER)
    {
        // Below 2^53 an integer's double is the integer, and ECMAScript prints it as such.
        Some(integer) => {
            let _ = write!(out, "{integer}");
        }
        None => write_number(number.as_f64().unwrap_or(0.0), out),
    }
}

/// [`write_value`] for a [`Json`], which may hold a member name twice: the last one counts, as
/// it does in a `Value`.
fn write_json(value: &Json<'_>, out: &mut Vec<u8>) {
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Number(number) => write_json_number(number, out),
        Json::String(text) => write_string(text, out),
        Json::Array(items) => write_json_array(items, out),
        Json::Object(members) => {
            let mut members = unique_members(members);
            into_utf16_order(&mut members);
            write_members(members, write_json, out);
        }
    }
}

fn write_json_array(items: &[Json<'_>], out: &mut Vec<u8>) {
    write_items(items, write_json, out);
}

/// Writes an object of `members`, given in canonical order, each value by `write`.
fn write_members<'m, V: 'm>(
    members: impl IntoIterator<Item = (&'m str, &'m V)>,
    write: fn(&V, &mut Vec<u8>),
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    for (i, (key, item)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        write(item, out);
    }
    out.push(b'}');
}

/// Writes an array of `items`, each by `write`.
fn write_items<V>(items: &[V], write: fn(&V, &mut Vec<u8>), out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, out);
    }
    out.push(b']');
}

/// Writes `map` as a canonical object.
pub(crate) fn write_map(map: &serde_json::Map<String, Value>, out: &mut Vec<u8>) {
    write_object(map, &[], out);
}

fn write_array(items: &[Value], out: &mut Vec<u8>) {
    write_items(items, write_value, out);
}

/// 2^53: every integer up to it is exactly a double.
pub const EXACT_INTEGER: u64 = 1 << 53;

fn write_object(map: &serde_json::Map<String, Value>, skip: &[&str], out: &mut Vec<u8>) {
    let mut members: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(key, _)| !skip.contains(&key.as_str()))
        .collect();
    into_utf16_order(&mut members);
    write_members(
        members.into_iter().map(|(key, item)| (key.as_str(), item)),
        write_value,
        out,
    );
}

/// Whether `members` are already in UTF-16 code unit order, checked cheaply: byte order is code
/// point order, which is UTF-16 order as long as no key holds a character from U+E000 up (whose
/// UTF-8 starts at 0xEE: those sort differently against surrogate pairs). Usually true, since
/// serde_json's default map iterates in byte order; the full sort handles every other case.
fn in_utf16_order<K: AsRef<str>, V>(members: &[(K, V)]) -> bool {
    members
        .iter()
        .all(|(key, _)| key.as_ref().bytes().all(|b| b < 0xEE))
        && members
            .windows(2)
            .all(|pair| pair[0].0.as_ref() < pair[1].0.as_ref())
}

/// Sorts `members` by their names' UTF-16 code units, as RFC 8785 orders them, unless
/// [`in_utf16_order`] finds them so already.
fn into_utf16_order<K: AsRef<str>, V>(members: &mut [(K, V)]) {
    if !in_utf16_order(members) {
        members.sort_by(|(a, _), (b, _)| a.as_ref().encode_utf16().cmp(b.as_ref().encode_utf16()));
    }
}

pub(crate) fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let mut rest = text.as_bytes();
    // Most strings need no escape at all: copy each plain run whole, found sixteen or eight
    // bytes at a time (`plain_prefix`). Every byte of a multi-byte UTF-8 character is 0x80 or above, so a run never ends
    // inside a character.
    loop {
        let plain = plain_prefix(rest);
        out.extend_from_slice(&rest[..plain]);
        let Some(&byte) = rest.get(plain) else { break };
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            control => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(control >> 4)]);
                out.push(HEX[usize::from(control & 0xf)]);
            }
        }
        rest = &rest[plain + 1..];
    }
    out.push(b'"');
}

/// ECMAScript `Number::toString(10)` (ECMA-262 §6.1.6.1.20) from the shortest round-trip digits.
fn write_number(number: f64, out: &mut Vec<u8>) {
    if number == 0.0 || !number.is_finite() {
        // JSON has no NaN or infinity; serde_json never produces them. -0 prints as 0.
        out.push(b'0');
        return;
    }
    if number < 0.0 {
        out.push(b'-');
    }
    // `{:e}` gives the shortest digits that round-trip, as "d.ddde±x".
    let scientific = format!("{:e}", number.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i32;
    // n is the position of the decimal point relative to the digits: value = 0.digits × 10^n.
    let n = exponent.parse::<i32>().unwrap_or(0) + 1;
    let text = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let sign = if n - 1 < 0 { '-' } else { '+' };
        let exponent = (n - 1).abs();
        if k == 1 {
            format!("{digits}e{sign}{exponent}")
        } else {
            format!("{}.{}e{sign}{exponent}", &digits[..1], &digits[1..])
        }
    };
    out.extend_from_slice(text.as_bytes());
}

/// A JSON object whose text is already its own canonical form, with where each member sits:
/// parsing that text and canonicalizing the value would give the same bytes back, so a verifier
/// can hash the text (less any members it leaves out) without building a tree of it.
///
/// Only the forms Trailmark's own writers produce are recognized, and anything else is left to
/// [`canonical_json`]: keys of printable ASCII without escapes, strings escaped exactly as
/// [`canonical_json`] escapes them, numbers as it writes them, nesting up to
/// [`MAX_SCAN_DEPTH`].
#[derive(Debug)]
pub struct CanonicalObject<'a> {
    text: &'a str,
    /// Every member and element at every depth, as the scan met them.
    entries: Vec<Entry>,
    /// Each member's key, its `"key":value` text and its entry, in key order.
    members: Vec<(&'a str, &'a str, usize)>,
}

/// A member or element the scan met, at any depth: where it lies in the text, and how many
/// entries after it are its value's own members and elements (at every depth below), so that
/// the next member or element beside it is found by stepping over them. Reading inside a
/// scanned value then needs no second pass over its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Where a member's key (its opening quote), or an element's value, starts.
    start: usize,
    /// Where the value starts.
    value: usize,
    /// Where the value ends.
    end: usize,
    /// How many entries below it follow it.
    inner: usize,
}

/// Nesting beyond which [`CanonicalObject::parse`] gives up (serde_json's own limit is 128).
pub const MAX_SCAN_DEPTH: usize = 64;

impl<'a> CanonicalObject<'a> {
    /// `text` as an object in canonical form; `None` if it is not one (see the type's docs).
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut scanner = Scanner {
            bytes: text.as_bytes(),
            at: 0,
            entries: Vec::with_capacity(64),
        };
        scanner.object(0)?;
        if scanner.at != text.len() {
            return None;
        }
        let entries = scanner.entries;
        // The top level's members, stepping over what is inside each. Every entry starts and
        // ends at an ASCII delimiter, so slicing never splits a character.
        let mut members = Vec::with_capacity(16);
        let mut at = 0;
        while let Some(entry) = entries.get(at) {
            members.push((entry.key(text)?, text.get(entry.start..entry.end)?, at));
            at += 1 + entry.inner;
        }
        Some(CanonicalObject {
            text,
            entries,
            members,
        })
    }

    /// A member's value as JSON text.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.member(key)
            .map(|(k, member, _)| &member[k.len() + 3..])
    }

    /// A member's value, to read inside it.
    #[inline]
    pub fn value(&self, key: &str) -> Option<CanonicalValue<'_>> {
        let (_, _, at) = self.member(key)?;
        CanonicalValue::at(self.text, &self.entries, *at)
    }

    /// The member named `key`. Inlined: callers name their keys, and a known key's length and
    /// bytes are then compared without a call, member after member.
    #[inline]
    fn member(&self, key: &str) -> Option<&(&'a str, &'a str, usize)> {
        self.members.iter().find(|(k, _, _)| *k == key)
    }

    /// Each member's key and its value, in key order.
    #[inline]
    pub fn members(&self) -> impl Iterator<Item = (&'a str, CanonicalValue<'_>)> + '_ {
        self.members.iter().filter_map(|(key, _, at)| {
            Some((*key, CanonicalValue::at(self.text, &self.entries, *at)?))
        })
    }

    /// What [`canonical_json_without`] gives for the parsed object and `skip`.
    pub fn without(&self, skip: &[&str]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.members.iter().map(|(_, m, _)| m.len() + 1).sum());
        out.push(b'{');
        for (key, member, _) in &self.members {
            if skip.contains(key) {
                continue;
            }
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(member.as_bytes());
        }
        out.push(b'}');
        out
    }
}

impl Entry {
    /// A member's key, without its quotes (`"key":` precedes the value).
    #[inline]
    fn key(self, text: &str) -> Option<&str> {
        text.get(self.start + 1..self.value.checked_sub(2)?)
    }
}

/// A value inside a [`CanonicalObject`], so already checked to be in canonical form: its
/// objects and arrays are split into members and elements by where the scan found them,
/// without reading their text again (the ledger splits every event's parties this way, and
/// the verify path every proof, so it is on the verify path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanonicalValue<'a> {
    /// The object's whole text, which the entries' positions are in.
    whole: &'a str,
    /// The value's own text.
    text: &'a str,
    /// The entries inside the value.
    inner: &'a [Entry],
}

impl<'a> CanonicalValue<'a> {
    /// The value of the member or element `entries[at]`.
    #[inline]
    fn at(whole: &'a str, entries: &'a [Entry], at: usize) -> Option<Self> {
        let entry = entries.get(at)?;
        Some(CanonicalValue {
            whole,
            text: whole.get(entry.value..entry.end)?,
            inner: entries.get(at + 1..at + 1 + entry.inner)?,
        })
    }

    /// The value's JSON text.
    #[inline]
    pub fn text(self) -> &'a str {
        self.text
    }

    /// The value's members in key order, if it is an object.
    #[inline]
    pub fn members(self) -> Option<impl Iterator<Item = (&'a str, CanonicalValue<'a>)>> {
        self.text.starts_with('{').then(|| {
            self.children()
                .filter_map(move |at| Some((self.inner[at].key(self.whole)?, self.child(at)?)))
        })
    }

    /// The value's elements, if it is an array.
    #[inline]
    pub fn elements(self) -> Option<impl Iterator<Item = CanonicalValue<'a>>> {
        self.text
            .starts_with('[')
            .then(|| self.children().filter_map(move |at| self.child(at)))
    }

    /// Where the value's own members or elements are among its entries.
    #[inline]
    fn children(self) -> impl Iterator<Item = usize> {
        let mut at = 0;
        std::iter::from_fn(move || {
            let entry = self.inner.get(at)?;
            let this = at;
            at += 1 + entry.inner;
            Some(this)
        })
    }

    #[inline]
    fn child(self, at: usize) -> Option<CanonicalValue<'a>> {
        CanonicalValue::at(self.whole, self.inner, at)
    }
}

/// Whether `a` sorts strictly before `b`, byte by byte: inline, as keys are short and compared
/// for every member.
fn precedes(a: &[u8], b: &[u8]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x < y;
        }
    }
    a.len() < b.len()
}

/// Checks canonical form byte by byte; every method returns `None` at the first departure.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The members and elements met so far (see [`Entry`]).
    entries: Vec<Entry>,
}

impl Scanner<'_> {
    fn next(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match *self.bytes.get(self.at)? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// Scans the value at the current place as a member or element: its entry, then the
    /// entries inside it.
    fn entry(&mut self, start: usize, depth: usize) -> Option<()> {
        let at = self.entries.len();
        let value = self.at;
        self.entries.push(Entry {
            start,
            value,
            end: value,
            inner: 0,
        });
        self.value(depth)?;
        let inner = self.entries.len() - at - 1;
        let entry = &mut self.entries[at];
        entry.end = self.at;
        entry.inner = inner;
        Some(())
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_SCAN_DEPTH {
            return None;
        }
        self.expect(b'{')?;
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Some(());
        }
        let mut previous: Option<&[u8]> = None;
        loop {
            let start = self.at;
            self.expect(b'"')?;
            let key_start = self.at;
            // Printable ASCII needs no escape, and its byte order is UTF-16 order. The plain
            // prefix stops at a quote, a backslash or a control character; of what it passes,
            // only DEL and non-ASCII bytes (0x7f and up) are not printable ASCII.
            self.at += plain_prefix(self.bytes.get(key_start..)?);
            let key = &self.bytes[key_start..self.at];
            if key.iter().any(|&byte| byte >= 0x7f) {
                return None;
            }
            self.expect(b'"')?;
            if previous.is_some_and(|previous| !precedes(previous, key)) {
                return None;
            }
            previous = Some(key);
            self.expect(b':')?;
            self.entry(start, depth)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_SCAN_DEPTH {
            return None;
        }
        self.expect(b'[')?;
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.entry(self.at, depth)?;
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A string escaped as `write_string` escapes it, and no other way.
    fn string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        loop {
            // Most of a string needs no escape: skip to the next byte that may.
            self.at += plain_prefix(self.bytes.get(self.at..)?);
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.bytes.get(self.at..self.at + 4)?;
                        self.at += 4;
                        let code = match hex {
                            [b'0', b'0', high @ b'0'..=b'1', low] => {
                                let low = match low {
                                    b'0'..=b'9' => low - b'0',
                                    b'a'..=b'f' => low - b'a' + 10,
                                    _ => return None,
                                };
                                (high - b'0') * 16 + low
                            }
                            _ => return None,
                        };
                        if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                            return None;
                        }
                    }
                    _ => return None,
                },
                byte if byte < 0x20 => return None,
                _ => {}
            }
        }
    }

    /// A number written as [`write_number`] writes its double: an integer up to 2^53 in
    /// magnitude checked digit by digit, any other number by writing it again and comparing.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let first_digit = self.at;
        let digits = self.digits()?;
        let integer = self.at;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            self.digits()?;
        }
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.bytes.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digits()?;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
        if digits > 1 && self.bytes[first_digit] == b'0' {
            return None;
        }
        if integer == self.at && digits < 16 && text != "-0" {
            // Below 10^15 < 2^53: written as the integer it is.
            return Some(());
        }
        let value: f64 = text.parse().ok()?;
        if !value.is_finite() {
            return None;
        }
        let mut written = Vec::with_capacity(24);
        write_number(value, &mut written);
        (written == text.as_bytes()).then_some(())
    }

    /// One or more decimal digits; how many.
    fn digits(&mut self) -> Option<usize> {
        let start = self.at;
        while matches!(self.bytes.get(self.at), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        (self.at > start).then_some(self.at - start)
    }
}

/// How many bytes of `bytes` come before the first that ends or escapes a JSON string (`"`,
/// `\\`) or may not appear in one (a control character): all of them if there is none.
///
/// String contents are most of what a canonical scan reads (the verify path scans every
/// exported line, a filtered export's twenty-odd proof hashes included), so on x86-64 sixteen
/// bytes are tested at once with SSE2, which every x86-64 processor has; the rest (and other
/// processors) go eight at a time in [`plain_prefix_by_words`].
#[cfg(target_arch = "x86_64")]
fn plain_prefix(bytes: &[u8]) -> usize {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 16) {
        // SAFETY: SSE2 is part of the x86-64 baseline, and the unaligned load reads the 16
        // bytes of `chunk`, which `get` gave only if they are all within `bytes`.
        let stops = unsafe {
            let chunk = _mm_loadu_si128(chunk.as_ptr().cast());
            let quote = _mm_cmpeq_epi8(chunk, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(chunk, _mm_set1_epi8(b'\\' as i8));
            // Unsigned: a byte is below 0x20 exactly when the smaller of it and 0x1f is itself.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(chunk, _mm_set1_epi8(0x1f)), chunk);
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
        };
        if stops != 0 {
            return at + stops.trailing_zeros() as usize;
        }
        at += 16;
    }
    at + plain_prefix_by_words(&bytes[at..])
}

#[cfg(not(target_arch = "x86_64"))]
fn plain_prefix(bytes: &[u8]) -> usize {
    plain_prefix_by_words(bytes)
}

/// [`plain_prefix`] eight bytes at a time, in plain integer arithmetic. In each word, `(x - 0x01..) & !x & 0x80..` flags
/// the zero bytes of `x`, and `(w - 0x20..) & !w & 0x80..` the bytes of `w` below 0x20; a borrow
/// can flag a byte wrongly only above a byte rightly flagged, so the lowest flag is exact.
fn plain_prefix_by_words(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = 0;
    while let Some(Ok(word)) = bytes.get(at..at + 8).map(<[u8; 8]>::try_from) {
        let word = u64::from_le_bytes(word);
        let flags = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGH);
        if flags != 0 {
            return at + (flags.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
        .unwrap_or(bytes.len() - at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_prefix_of_a_string_ends_where_a_byte_by_byte_scan_ends() {
        let naive = |bytes: &[u8]| {
            bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(bytes.len())
        };
        // Every stopping byte at every offset of words and tails, after bytes that borrow
        // (0x00, 0x01, 0x20, 0x21), high bytes (UTF-8) and plain ones.
        let fillers: [&[u8]; 4] = [b"a", "é".as_bytes(), b"!", b"\x7f"];
        for stop in [b'"', b'\\', 0x00, 0x01, 0x1f, 0x0a] {
            for filler in fillers {
                for before in 0..40 {
                    for after in [0u8, 1, 0x20, 0x21, b'"', 0xff] {
                        let mut bytes = filler.repeat(before);
                        bytes.push(stop);
                        bytes.push(after);
                        bytes.extend_from_slice(b"tail tail");
                        assert_eq!(plain_prefix(&bytes), naive(&bytes), "{bytes:?}");
                        assert_eq!(plain_prefix_by_words(&bytes), naive(&bytes), "{bytes:?}");
                    }
                }
            }
        }
        for length in 0..20 {
            let bytes = vec![b'x'; length];
            assert_eq!(plain_prefix(&bytes), length);
        }
    }
    use serde_json::json;

    fn canonical(value: Value) -> String {
        String::from_utf8(canonical_json(&value)).expect("utf-8")
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        assert_eq!(
            canonical(json!({"b": [1.0, "é"], "a": {"z": null, "y": 1e21}})),
            r#"{"a":{"y":1e+21,"z":null},"b":[1,"é"]}"#
        );
    }

    #[test]
    fn sorts_by_utf16_code_units_as_rfc_8785_section_3_2_3_requires() {
        // U+1F600 (a surrogate pair, 0xD83D…) sorts before U+FB33 in UTF-16, after it in UTF-8.
        assert_eq!(
            canonical(json!({"\u{fb33}": 1, "\u{1f600}": 2})),
            "{\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
    }

    #[test]
    fn json_as_sent_is_written_as_the_same_value_read_into_a_value() {
        let texts: [&str; 5] = [
            // A name twice in a row, and names already in order.
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"b":{"c":2,"d":3}}"#,
            // Client order, a name twice, escapes, numbers written several ways.
            r#"{"z":1,"a":{"y":[2.50,"\u00e9"],"b":null},"m":true,"a2":1e2,"z":"last"}"#,
            // Names past U+E000, where UTF-16 order is not byte order.
            "{\"\u{fb33}\":1,\"\u{1f600}\":2,\"a\":3}",
            r#"{"b":{"\ufb33":1,"\ud83d\ude00":2,"b":3,"b":4},"a":-0.0}"#,
        ];
        for text in texts {
            let json = Json::parse(text.as_bytes()).expect("valid JSON");
            let value: Value = serde_json::from_str(text).expect("valid JSON");
            assert_eq!(
                canonical_json_array(std::slice::from_ref(&json)),
                canonical_json(&Value::Array(vec![value])),
                "{text}"
            );
        }
    }

    #[test]
    fn formats_numbers_like_ecmascript() {
        // Values from RFC 8785 Appendix B and ECMAScript's rules.
        for (number, text) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-7"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (4.5, "4.5"),
            (2e-3, "0.002"),
            (0.1 + 0.2, "0.30000000000000004"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (9007199254740992.0, "9007199254740992"),
            (333333333.3333332, "333333333.3333332"),
        ] {
            assert_eq!(canonical(json!(number)), text, "{number:e}");
        }
        assert_eq!(canonical(json!(42)), "42");
        assert_eq!(canonical(json!(-7)), "-7");
    }

    #[test]
    fn escapes_strings_minimally() {
        assert_eq!(
            canonical(json!("a\"b\\c\n\u{1}\u{7f}€")),
            "\"a\\\"b\\\\c\\n\\u0001\u{7f}€\""
        );
    }

    #[test]
    fn every_character_escapes_as_ecmascript_escapes_it_at_any_offset() {
        // serde_json escapes exactly as JSON.stringify does: the short forms, `\u00xx` in
        // lower case for other controls, nothing else. Each character is tried at every offset
        // of the sixteen-byte chunks and eight-byte words the plain runs are read in, with
        // plain bytes after it.
        for code in (0u32..0x80).chain([0xe9, 0x20ac, 0x1f600]) {
            let character = char::from_u32(code).expect("a scalar value");
            for before in 0..18 {
                let text = format!("{}{character}{}", "a".repeat(before), "b".repeat(9));
                assert_eq!(
                    canonical(json!(text)),
                    serde_json::to_string(&text).expect("a string serializes"),
                    "U+{code:04X} after {before} bytes"
                );
            }
        }
    }

    /// Whether the scan takes `text` for canonical; when it does, parsing and canonicalizing
    /// must give the text back, and leaving members out must match `canonical_json_without`.
    fn scanned(text: &str) -> bool {
        let Some(object) = CanonicalObject::parse(text) else {
            return false;
        };
        let value: Value = serde_json::from_str(text).expect("the scan accepts JSON only");
        assert_eq!(
            String::from_utf8(canonical_json(&value)).expect("utf-8"),
            text
        );
        for skip in [&["b"][..], &["a", "z"], &["leaf_hash", "inclusion_proof"]] {
            assert_eq!(
                object.without(skip),
                canonical_json_without(&value, skip),
                "{text} without {skip:?}"
            );
        }
        true
    }

    #[test]
    fn the_scan_takes_canonical_text_as_it_is() {
        let value = json!({
            "a": [1, -2, 0, 9007199254740992_u64, -9007199254740992_i64, 18014398509481984_u64,
                  1.5, -0.25, 0.1, 1e21, 1e-7, 123456.789, 5e-324, true, false, null, [], {}],
            "b": {"nested": {"deeper": ["x"]}, "with space": 1},
            "c": "tab\t nl\n cr\r bs\u{8} ff\u{c} ctl\u{1}\u{1f} del\u{7f} é € 😀 \"q\" \\ /",
            "leaf_hash": "h",
            "z": ""
        });
        let text = String::from_utf8(canonical_json(&value)).expect("utf-8");
        assert!(scanned(&text), "{text}");
        let object = CanonicalObject::parse(&text).expect("canonical");
        assert_eq!(object.get("z"), Some("\"\""));
        assert_eq!(object.get("leaf_hash"), Some("\"h\""));
        assert_eq!(object.get("missing"), None);
        assert!(scanned("{}"));
    }

    #[test]
    fn members_and_elements_are_split_as_the_parser_reads_them() {
        let value = json!({
            "a": [1, {"b": "x,y]}", "c": [[], {}]}, [], "q\"{,[", -0.5, null],
            "c": {"d": null, "e": {"f": "\\", "g": [true]}},
            "s": "tab\t,\"}"
        });
        let text = String::from_utf8(canonical_json(&value)).expect("utf-8");
        let object = CanonicalObject::parse(&text).expect("canonical");
        let members: Vec<_> = object.members().collect();
        assert_eq!(
            members.iter().map(|(key, _)| *key).collect::<Vec<_>>(),
            ["a", "c", "s"]
        );
        let parsed = |value: CanonicalValue<'_>| -> Value {
            serde_json::from_str(value.text()).expect("JSON")
        };
        let elements: Vec<_> = members[0].1.elements().expect("an array").collect();
        assert_eq!(
            elements.iter().map(|e| parsed(*e)).collect::<Vec<_>>(),
            value["a"].as_array().cloned().unwrap_or_default()
        );
        assert_eq!(elements[1].members().map(Iterator::count), Some(2));
        let nested: Vec<_> = members[1]
            .1
            .members()
            .expect("an object")
            .map(|(k, v)| (k, parsed(v)))
            .collect();
        assert_eq!(
            nested,
            [("d", json!(null)), ("e", json!({"f": "\\", "g": [true]}))]
        );
        assert!(members[2].1.elements().is_none());
        assert!(members[2].1.members().is_none());
        assert!(elements[0].elements().is_none());
        assert_eq!(elements[2].elements().map(Iterator::count), Some(0));
        assert!(elements[3].elements().is_none());
        let empty = CanonicalObject::parse(r#"{"o":{}}"#).expect("canonical");
        assert_eq!(
            empty
                .members()
                .next()
                .and_then(|(_, o)| o.members())
                .map(Iterator::count),
            Some(0)
        );
    }

    /// Whether `value`'s members and elements, at every depth, are those of `expected`.
    fn splits_as(value: CanonicalValue<'_>, expected: &Value) {
        let parsed: Value = serde_json::from_str(value.text()).expect("JSON");
        assert_eq!(&parsed, expected);
        match expected {
            Value::Object(map) => {
                assert!(value.elements().is_none());
                let members: Vec<_> = value.members().expect("an object").collect();
                assert_eq!(members.len(), map.len(), "{expected}");
                for ((key, member), (expected_key, expected_member)) in members.into_iter().zip(map)
                {
                    assert_eq!(key, expected_key);
                    splits_as(member, expected_member);
                }
            }
            Value::Array(items) => {
                assert!(value.members().is_none());
                let elements: Vec<_> = value.elements().expect("an array").collect();
                assert_eq!(elements.len(), items.len(), "{expected}");
                for (element, item) in elements.into_iter().zip(items) {
                    splits_as(element, item);
                }
            }
            _ => assert!(value.members().is_none() && value.elements().is_none()),
        }
    }

    #[test]
    fn values_at_every_depth_split_as_the_parser_reads_them() {
        let value = json!({
            "actor": {"id": "u,1", "metadata": {"a/b": [1, {"x": "]}"}], "z": {}}, "type": "user"},
            "inclusion_proof": ["aGFzaA==", "b3RoZXI=", []],
            "m": [[[[]]], [{}], {"k": [null, true, "\\\""]}],
            "targets": [{"id": "t", "metadata": {"n": -1.5}}, {"type": "team"}, "flat", 3],
            "z": null
        });
        let text = String::from_utf8(canonical_json(&value)).expect("utf-8");
        let object = CanonicalObject::parse(&text).expect("canonical");
        let map = value.as_object().expect("an object");
        assert_eq!(object.members().count(), map.len());
        for ((key, member), (expected_key, expected)) in object.members().zip(map) {
            assert_eq!(key, expected_key);
            splits_as(member, expected);
            assert_eq!(object.value(key), Some(member));
        }
    }

    #[test]
    fn the_scan_leaves_every_other_form_to_the_parser() {
        for text in [
            r#"{"a":1,"b":2} "#,
            r#"{"a": 1}"#,
            r#"{ "a":1}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"y":1,"x":2}}"#,
            r#"{"a":[1, 2]}"#,
            r#"{"a":"\u00e9"}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1.50}"#,
            r#"{"a":1e2}"#,
            r#"{"a":1E-7}"#,
            r#"{"a":1e21}"#,
            r#"{"a":1e+300000}"#,
            r#"{"a":-0}"#,
            r#"{"a":-0.0}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":-}"#,
            r#"{"a":9007199254740993}"#,
            r#"{"a":12345678901234567}"#,
            r#"{"a":tru}"#,
            r#"{"a":1}x"#,
            r#"{"\u0061":1}"#,
            r#"{"quote\"d":1}"#,
            r#"{"é":1}"#,
            "{\"del\u{7f}\":1}",
            "{\"tab\tin key\":1}",
            r#"{"unterminated:1}"#,
            r#"{"a":1,}"#,
            r#"[1]"#,
            "{\"a\":\"raw\ncontrol\"}",
            r#"{"a":"unterminated}"#,
        ] {
            assert!(!scanned(text), "{text}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(!scanned(&deep));
    }
}
