//! JSON values as block-style YAML, for the checked-in manifest.
//!
//! Small on purpose, and deterministic regardless of serde_json's
//! `preserve_order` feature (which workspace feature unification may turn
//! on): keys are always sorted. Strings are written plain only when they
//! cannot be read back as anything else (no YAML 1.1 booleans, numbers,
//! indicators or colons); all others are double-quoted with escapes, so every
//! scalar reads back as the same JSON value (tests parse the output again).

use serde_json::{Map, Value};
use std::fmt::Write;

/// A multi-document stream: each value starts with `---`.
pub fn documents(values: &[Value]) -> String {
    let mut out = String::new();
    for value in values {
        out.push_str("---\n");
        out.push_str(&to_yaml(value));
    }
    out
}

/// One value as a YAML document body (no `---`), ending in a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value) in entries {
        let _ = write!(out, "{:indent$}{}:", "", string(key));
        match value {
            Value::Object(child) if !child.is_empty() => {
                out.push('\n');
                write_map(out, child, indent + 2);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_seq(out, items, indent + 2);
            }
            scalar => {
                let _ = writeln!(out, " {}", inline(scalar));
            }
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        match item {
            Value::Object(_) | Value::Array(_) if !is_empty_collection(item) => {
                // Render the collection one level deeper, then put the dash
                // where the first line's indentation was: "- key: value".
                let mut nested = String::new();
                match item {
                    Value::Object(map) => write_map(&mut nested, map, indent + 2),
                    Value::Array(inner) => write_seq(&mut nested, inner, indent + 2),
                    _ => {}
                }
                let _ = write!(out, "{:indent$}- ", "");
                out.push_str(&nested[indent + 2..]);
            }
            scalar => {
                let _ = writeln!(out, "{:indent$}- {}", "", inline(scalar));
            }
        }
    }
}

fn is_empty_collection(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// A scalar or an empty collection, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Words YAML 1.1 parsers (still common) read as booleans or null.
const RESERVED: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

fn string(s: &str) -> String {
    let plain = s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_owned()
    } else {
        quoted(s)
    }
}

/// A YAML double-quoted scalar; everything outside YAML's printable set is
/// escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_printable(c) => out.push(c),
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// YAML 1.2 `c-printable`, less the byte-order mark and the characters
/// YAML 1.1 parsers read as line breaks (NEL, LS, PS), which a quoted
/// scalar would fold into a space.
fn is_printable(c: char) -> bool {
    matches!(c as u32,
        0x20..=0x7E | 0xA0..=0x2027 | 0x202A..=0xD7FF | 0xE000..=0xFEFE | 0xFF00..=0xFFFD | 0x10000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_style_with_sorted_keys_and_indented_sequences() {
        let value = json!({
            "spec": { "servers": [{ "port": { "number": 15099 }, "hosts": ["*"] }], "empty": [] },
            "apiVersion": "v1",
        });
        assert_eq!(
            to_yaml(&value),
            "apiVersion: v1\nspec:\n  empty: []\n  servers:\n    - hosts:\n        - \"*\"\n      port:\n        number: 15099\n"
        );
    }

    #[test]
    fn strings_are_plain_only_when_unambiguous() {
        for (s, want) in [
            ("istio-system", "istio-system"),
            (
                "app.kubernetes.io/managed-by",
                "app.kubernetes.io/managed-by",
            ),
            ("FAIL_OPEN", "FAIL_OPEN"),
            ("yes", "\"yes\""),
            ("Off", "\"Off\""),
            ("127.0.0.1", "\"127.0.0.1\""),
            ("1s", "\"1s\""),
            ("file-cert:", "\"file-cert:\""),
            ("kubernetes://", "\"kubernetes://\""),
            ("", "\"\""),
            (
                "a\"b\\c\nd\u{7f}\u{feff}",
                "\"a\\\"b\\\\c\\nd\\u007F\\uFEFF\"",
            ),
        ] {
            assert_eq!(string(s), want, "{s:?}");
        }
    }

    /// Everything written reads back as the same JSON, nasty strings included.
    #[test]
    fn output_round_trips_through_a_yaml_parser() {
        let value = json!({
            "plain": "cert-sync",
            "tricky": ["yes", "no", "~", "null", "1e3", "0x1F", "- item", "a: b", "#hash",
                       "  lead", "trail ", "é ☃ 🦀", "tab\there", "ctl\u{1}\u{85}\u{9f}\u{2028}\u{2029}",
                       "'single'", "{flow}", "[flow]", "&anchor", "*alias", "!tag", "%dir", "@at", "`tick`", "|", ">"],
            "numbers": [0, -1, 18446744073709551615u64, 1.5],
            "nested": [[1, [2, {}]], [], {"k": [{"a": null, "b": true}]}],
            "": "empty key",
            "key: with colon": { "deep": { "deeper": "x" } },
        });
        let yaml = to_yaml(&value);
        let back: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(back, value, "{yaml}");
    }

    #[test]
    fn documents_are_separated() {
        let out = documents(&[json!({"a": 1}), json!({"b": 2})]);
        assert_eq!(out, "---\na: 1\n---\nb: 2\n");
    }
}
