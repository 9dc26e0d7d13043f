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

use serde_json::Value;

/// The RFC 8785 canonical bytes of `value`.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    canonical_json_without(value, &[])
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

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => match number
            .as_i64()
            .filter(|n| n.unsigned_abs() <= EXACT_INTEGER)
        {
            // Below 2^53 an integer's double is the integer, and ECMAScript prints it as such.
            Some(integer) => out.extend_from_slice(integer.to_string().as_bytes()),
            None => write_number(number.as_f64().unwrap_or(0.0), out),
        },
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, &[], out),
    }
}

/// 2^53: every integer up to it is exactly a double.
const EXACT_INTEGER: u64 = 1 << 53;

fn write_object(map: &serde_json::Map<String, Value>, skip: &[&str], out: &mut Vec<u8>) {
    let mut members: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(key, _)| !skip.contains(&key.as_str()))
        .collect();
    if !in_utf16_order(&members) {
        members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    }
    out.push(b'{');
    for (i, (key, item)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        write_value(item, out);
    }
    out.push(b'}');
}

/// Whether `members` are already in UTF-16 code unit order, checked cheaply: byte order is code
/// point order, which is UTF-16 order as long as no key holds a character from U+E000 up (whose
/// UTF-8 starts at 0xEE: those sort differently against surrogate pairs). Usually true, since
/// serde_json's default map iterates in byte order; the full sort handles every other case.
fn in_utf16_order(members: &[(&String, &Value)]) -> bool {
    members.iter().all(|(key, _)| key.bytes().all(|b| b < 0xEE))
        && members.windows(2).all(|pair| pair[0].0 < pair[1].0)
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut run = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        // Every byte of a multi-byte UTF-8 character is 0x80 or above, so escaping byte by byte
        // never splits a character.
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            byte if byte < 0x20 => {
                out.extend_from_slice(&bytes[run..i]);
                out.extend_from_slice(format!("\\u{byte:04x}").as_bytes());
                run = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(escape);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
