//! [`Json`]: a JSON value that borrows its text from the request body it was read from, and
//! [`JsonText`]: a request body read as one, which knows whether any of its strings can hold NUL.
//!
//! Ingest reads every event through this rather than [`serde_json::Value`]: a batch of 1,000
//! events as `Value`s allocates a `String` for every key and every text and a tree node for
//! every member, then frees them all, and that cost more than validating, hashing and storing
//! the events together. Here a text without escapes is a slice of the body, and an object is
//! one vector of members. Objects keep their members in the order sent, duplicates included;
//! [`Json::get`] finds the last one of a name, as `Value` keeps the last.
//!
//! Nesting is bounded by the parser (`serde_json` refuses more than 128 levels) before it can
//! exhaust the stack.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::problem::{FieldProblem, nul_problems};

/// A parsed JSON value whose texts are borrowed from the parsed text where they can be.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in the order sent; a name sent twice is here twice.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses `text`, borrowing every string that holds no escape from it.
    ///
    /// # Errors
    ///
    /// `serde_json`'s error for text that is not one JSON value (with its line and column).
    pub fn parse(text: &'a [u8]) -> Result<Self, serde_json::Error> {
        // The whole text checked as UTF-8 at once costs a fraction of serde_json checking each
        // string it borrows from bytes; text that is not UTF-8 is parsed as bytes, for
        // serde_json's error naming where.
        match std::str::from_utf8(text) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(text),
        }
    }

    /// The member `key` of an object (the last, if it was sent more than once); `None` for a
    /// missing member or a value that is not an object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => members
                .iter()
                .rev()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    /// The JSON type name used in messages ("expected a string, got a number").
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// The same value as a [`serde_json::Value`] (a name sent twice keeps its last value).
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(flag) => Value::Bool(*flag),
            Json::Number(number) => Value::Number(number.clone()),
            Json::String(text) => Value::String(text.as_ref().to_owned()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(name, value)| (name.as_ref().to_owned(), value.to_value()))
                    .collect(),
            ),
        }
    }
}

/// A [`serde_json::Value`] read as a [`Json`] that borrows its texts, for callers that already
/// hold a `Value` (events Trailmark writes itself, tests).
impl<'a> From<&'a Value> for Json<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null => Json::Null,
            Value::Bool(flag) => Json::Bool(*flag),
            Value::Number(number) => Json::Number(number.clone()),
            Value::String(text) => Json::String(Cow::Borrowed(text)),
            Value::Array(items) => Json::Array(items.iter().map(Json::from).collect()),
            Value::Object(members) => Json::Object(
                members
                    .iter()
                    .map(|(name, value)| (Cow::Borrowed(name.as_str()), Json::from(value)))
                    .collect(),
            ),
        }
    }
}

/// A request body read as a [`Json`], with what the body itself tells: whether any string or
/// member name in it can hold NUL. JSON gives a string NUL only through the escape `\u0000`
/// (the parser refuses a raw NUL byte, as every control character in a string), so a body
/// without that escape needs no walk of its strings to know that none holds NUL. Ingest checks
/// every event for NUL; the walk took 1.3% of a batch event's instructions and 2.5% of a single
/// event's (`bench/instructions`).
#[derive(Debug)]
pub struct JsonText<'a> {
    json: Json<'a>,
    may_hold_nul: bool,
}

impl<'a> JsonText<'a> {
    /// [`Json::parse`] of `text`, and whether `text` escapes NUL anywhere.
    ///
    /// # Errors
    ///
    /// As [`Json::parse`].
    pub fn parse(text: &'a [u8]) -> Result<Self, serde_json::Error> {
        Ok(JsonText {
            json: Json::parse(text)?,
            may_hold_nul: text_may_hold_nul(text),
        })
    }

    /// The body's JSON.
    pub fn json(&self) -> &Json<'a> {
        &self.json
    }

    /// [`nul_problems`] of `value`, which must be a part of this body's JSON (named `root`):
    /// none, without looking, when the body escapes no NUL. For a value from anywhere else,
    /// call [`nul_problems`] itself: this would not look at it.
    pub fn nul_problems(&self, value: &Json<'a>, root: &str) -> Vec<FieldProblem> {
        if self.may_hold_nul {
            nul_problems(value, root)
        } else {
            Vec::new()
        }
    }
}

/// Whether JSON `text` can hold NUL in any string or member name: only if it holds the escape
/// `\u0000` (see [`JsonText`]). An escaped backslash before `u0000` counts too: it only costs
/// a look.
pub fn text_may_hold_nul(text: &[u8]) -> bool {
    memchr::memmem::find(text, br"\u0000").is_some()
}

/// An object's members as a [`Value`] holds them: one per name (the last sent), in the byte
/// order of the names.
pub(crate) fn unique_members<'m, 'a>(
    members: &'m [(Cow<'a, str>, Json<'a>)],
) -> Vec<(&'m str, &'m Json<'a>)> {
    let mut unique: Vec<(&str, &Json<'a>)> = members
        .iter()
        .map(|(name, value)| (name.as_ref(), value))
        .collect();
    if !unique.windows(2).all(|pair| pair[0].0 < pair[1].0) {
        // Stable, so of a name sent twice the later one stays later, and is the one kept.
        unique.sort_by_key(|(name, _)| *name);
        let mut kept: Vec<(&str, &Json<'a>)> = Vec::with_capacity(unique.len());
        for member in unique {
            match kept.last_mut() {
                Some(last) if last.0 == member.0 => *last = member,
                _ => kept.push(member),
            }
        }
        unique = kept;
    }
    unique
}

impl Json<'_> {
    /// Whether any text in the value, or any member name, holds the NUL character (a name sent
    /// twice counts both times: this only tells whether to look closer).
    pub(crate) fn holds_nul(&self) -> bool {
        match self {
            Json::String(text) => text.contains('\0'),
            Json::Array(items) => items.iter().any(Json::holds_nul),
            Json::Object(members) => members
                .iter()
                .any(|(name, value)| name.contains('\0') || value.holds_nul()),
            Json::Null | Json::Bool(_) | Json::Number(_) => false,
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, flag: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(flag))
    }

    fn visit_u64<E>(self, number: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(number.into()))
    }

    fn visit_i64<E>(self, number: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(number.into()))
    }

    fn visit_f64<E>(self, number: f64) -> Result<Self::Value, E> {
        // JSON text has no NaN or infinity, so serde_json never hands one over.
        Ok(Number::from_f64(number).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(text)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // No capacity ahead: serde_json never knows an object's size, and a guess would be
        // allocated for every `{}` of a hostile body.
        let mut members = Vec::new();
        while let Some(name) = map.next_key::<Name<'de>>()? {
            members.push((name.0, map.next_value()?));
        }
        Ok(Json::Object(members))
    }
}

/// A member's name, borrowed when it holds no escape.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_text_walks_for_nul_only_when_its_text_escapes_it() {
        let plain = JsonText::parse(br#"{"a":"b","c":["d",{"e\n":"f\"g"}]}"#).expect("JSON");
        assert!(!plain.may_hold_nul);
        // An escaped backslash before `u0000` is text, not NUL: looked at, and nothing found.
        let backslash = JsonText::parse(br#"{"a":"\\u0000 is text"}"#).expect("JSON");
        assert!(backslash.may_hold_nul);
        assert!(backslash.nul_problems(backslash.json(), "").is_empty());
        let escaped = JsonText::parse(br#"{"a\u0000":"b","c":[{"d":"e\u0000"}]}"#).expect("JSON");
        let fields: Vec<String> = escaped
            .nul_problems(escaped.json(), "body")
            .into_iter()
            .map(|problem| problem.field)
            .collect();
        assert_eq!(fields, ["body.a\\u0000", "body.c[0].d"]);
    }

    /// What [`JsonText`] rests on: NUL reaches a string or a name only through `\u0000`. A raw
    /// NUL byte is refused, in text read as UTF-8 and in bytes that are not (read by
    /// `serde_json::from_slice`), and no other escape decodes to NUL.
    #[test]
    fn nul_reaches_a_string_only_through_its_escape() {
        for text in [
            &b"{\"a\":\"b\0c\"}"[..],
            b"{\"a\0\":1}",
            b"{\"a\":\"\xff\0\"}",
            b"{\"a\":\"b\0\"}\xff",
            b"\"\xc0\x80\"",
            br#""\ud800\u0000""#,
        ] {
            assert!(
                JsonText::parse(text).is_err(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let others = JsonText::parse(br#"["\ud800\udc00","\u005cu0000","\u0030"]"#).expect("JSON");
        assert!(!others.json().holds_nul());
    }

    #[test]
    fn texts_without_escapes_are_borrowed_and_the_rest_decoded() {
        let text = br#"{"plain":"abc","esc\"aped":"a\nb","n":[1,-2,2.5,null,true]}"#;
        let parsed = Json::parse(text).expect("valid JSON");
        let Json::Object(members) = &parsed else {
            panic!("an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("plain")));
        assert!(matches!(members[0].1, Json::String(Cow::Borrowed("abc"))));
        assert_eq!(members[1].0, "esc\"aped");
        assert_eq!(parsed.get("esc\"aped"), Some(&Json::String("a\nb".into())));
        assert_eq!(
            parsed.to_value(),
            json!({"plain": "abc", "esc\"aped": "a\nb", "n": [1, -2, 2.5, null, true]})
        );
    }

    #[test]
    fn finds_nul_escaped_in_text_or_held_by_a_value() {
        for text in [&br#"{"a":["x","\u0000"]}"#[..], br#"{"a\u0000b":1}"#] {
            assert!(Json::parse(text).expect("valid JSON").holds_nul());
        }
        assert!(
            !Json::parse(br#"{"a":["\\u0000","\n"]}"#)
                .expect("valid JSON")
                .holds_nul()
        );
        assert!(Json::from(&json!({"k": ["\0"]})).holds_nul());
        assert!(Json::from(&json!({"k\0": 1})).holds_nul());
        assert!(Json::String(Cow::Borrowed("\0")).holds_nul());
        assert!(!Json::from(&json!({"k": "v"})).holds_nul());
    }

    #[test]
    fn reads_the_last_of_a_name_sent_twice_as_serde_json_does() {
        let text = br#"{"a":1,"b":2,"a":3}"#;
        let parsed = Json::parse(text).expect("valid JSON");
        let value: Value = serde_json::from_slice(text).expect("valid JSON");
        assert_eq!(parsed.get("a"), Some(&Json::Number(3.into())));
        assert_eq!(parsed.to_value(), value);
        assert_eq!(Json::from(&value).to_value(), value);
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        assert!(Json::parse(b"{\"a\":}").is_err());
        let not_utf8 = Json::parse(b"{\"a\":\"\xff\"}").expect_err("not UTF-8");
        assert_eq!(not_utf8.line(), 1);
        assert!(Json::parse(b"[1] 2").is_err());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(Json::parse(deep.as_bytes()).is_err());
    }
}
