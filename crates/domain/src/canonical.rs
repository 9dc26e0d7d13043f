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
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(number.as_f64().unwrap_or(0.0), out),
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
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
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
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buffer = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
        }
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
