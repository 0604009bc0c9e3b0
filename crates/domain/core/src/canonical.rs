//! Canonical JSON: one text for one value, so that what a reviewer approves and what a
//! check compares are the same bytes however the caller wrote its JSON.
//!
//! The form is the one the interface contract gives for an agent's tool call: object keys
//! sorted by Unicode code point at every depth, separators `,` and `:` without spaces, strings
//! in UTF-8 with only `"`, `\` and control characters escaped. It is what Python writes with
//! `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` for the
//! same value; numbers are written as serde_json writes them (integers as themselves, other
//! numbers in the shortest form that reads back to the same double), which is Python's form
//! (`0.1`, `1000000000000000.0`, `1e+16`) except for a negative exponent: `-2.5e-7` where
//! Python writes `-2.5e-07`. The payload a proxy files and the payload it checks are both made
//! here, so they agree whatever the agent's language.

use serde_json::{Map, Value};

/// The canonical text of `value`.
pub fn canonical_json(value: &Value) -> String {
    // serde_json's map may keep insertion order (a dependency elsewhere in the build turns
    // on `preserve_order`), so the keys are sorted here rather than trusted to the map.
    sorted(value).to_string()
}

/// The payload of a call of tool `tool` with `arguments`: the canonical JSON of
/// `{"arguments": arguments, "tool": tool}`.
pub fn tool_call_payload(tool: &str, arguments: &Value) -> String {
    let mut call = Map::new();
    call.insert("arguments".into(), arguments.clone());
    call.insert("tool".into(), Value::String(tool.into()));
    canonical_json(&Value::Object(call))
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            // UTF-8 byte order is code point order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth_without_whitespace() {
        let value: Value =
            serde_json::from_str(r#"{ "b": 1, "a": { "z": [ { "y": 2, "x": 1 } ], "é": "ü", "Z": null } }"#).unwrap();
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"Z":null,"z":[{"x":1,"y":2}],"é":"ü"},"b":1}"#
        );
    }

    #[test]
    fn a_tool_call_is_arguments_then_tool() {
        let args = json!({"path": "/tmp/x", "recursive": true});
        assert_eq!(
            tool_call_payload("delete_file", &args),
            r#"{"arguments":{"path":"/tmp/x","recursive":true},"tool":"delete_file"}"#
        );
        assert_eq!(tool_call_payload("t", &json!({})), r#"{"arguments":{},"tool":"t"}"#);
    }

    #[test]
    fn only_quotes_backslashes_and_controls_are_escaped() {
        let value = json!({"s": "a\"b\\c\n\u{1}\u{7f}\u{2028}é😀/"});
        assert_eq!(
            canonical_json(&value),
            "{\"s\":\"a\\\"b\\\\c\\n\\u0001\u{7f}\u{2028}é😀/\"}"
        );
    }

    #[test]
    fn numbers_keep_their_meaning() {
        let value: Value = serde_json::from_str(r#"{"i":-7,"big":18446744073709551615,"f":1.5,"e":1e100}"#).unwrap();
        assert_eq!(
            canonical_json(&value),
            r#"{"big":18446744073709551615,"e":1e+100,"f":1.5,"i":-7}"#
        );
        // As Python's json.dumps writes the same doubles ...
        for (number, python) in [(0.1, "0.1"), (1e15, "1000000000000000.0"), (1e16, "1e+16")] {
            assert_eq!(canonical_json(&json!(number)), python, "{number}");
        }
        // ... except a negative exponent, which Python pads to two digits (-2.5e-07).
        assert_eq!(canonical_json(&json!(-2.5e-7)), "-2.5e-7");
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("\\PC{0,6}", inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// The same members in the reverse order of insertion, at every depth.
    fn reversed(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let entries: Vec<_> = map.iter().collect();
                Value::Object(
                    entries
                        .into_iter()
                        .rev()
                        .map(|(k, v)| (k.clone(), reversed(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
            other => other.clone(),
        }
    }

    fn whitespace_outside_strings(text: &str) -> bool {
        let (mut in_string, mut escaped) = (false, false);
        for c in text.chars() {
            match (in_string, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (true, false, '"') => in_string = false,
                (false, _, '"') => in_string = true,
                (false, _, c) if c.is_whitespace() => return true,
                _ => {}
            }
        }
        false
    }

    #[test]
    fn the_whitespace_finder_finds_whitespace() {
        assert!(whitespace_outside_strings(r#"{"a": 1}"#));
        assert!(!whitespace_outside_strings(r#"{"a b":"\" c"}"#));
    }

    proptest! {
        #[test]
        fn one_value_one_text(value in any_json()) {
            let text = canonical_json(&value);
            // The text reads back to the same value and is its own canonical form.
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &value);
            prop_assert_eq!(canonical_json(&back), text.clone());
            // The order members were written in changes nothing.
            prop_assert_eq!(canonical_json(&reversed(&value)), text.clone());
            // However the input was spaced, the same text, with no whitespace outside strings.
            let spaced: Value = serde_json::from_str(&serde_json::to_string_pretty(&value).unwrap()).unwrap();
            prop_assert_eq!(canonical_json(&spaced), text.clone());
            prop_assert!(!whitespace_outside_strings(&text), "{}", text);
        }
    }
}
