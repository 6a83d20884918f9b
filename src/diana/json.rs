//! JSON text parsed into a [`Value`], refusing what a `Value` would change
//! without a word: a key repeated in one object (a `Value` keeps the last,
//! so `{"event": "A", "event": "B"}` would decode as a `B`), and an integer
//! beyond 64 bits, which Python writes as readily as any other (a `Value`
//! holds it as a float, and its digits are lost).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::error::DomainError;

/// Parses `text` as one JSON value; the caller then checks its integers
/// with [`refuse_wide_integers`] (after it has read the value, where a
/// typed field's own error names the field).
///
/// Errors: [`DomainError::Json`], with the line and column, for text that
/// is not JSON or repeats a key in an object.
pub(crate) fn parse(text: &str) -> Result<Value, DomainError> {
    let mut parser = serde_json::Deserializer::from_str(text);
    Strict
        .deserialize(&mut parser)
        .and_then(|value| parser.end().map(|()| value))
        .map_err(|err| DomainError::Json {
            reason: err.to_string(),
        })
}

/// Refuses `text`, which [`parse`] took, if it holds an integer that fits
/// neither an `i64` nor a `u64`, with [`DomainError::Json`] and where it is.
pub(crate) fn refuse_wide_integers(text: &str) -> Result<(), DomainError> {
    match integer_beyond_64_bits(text) {
        Some(at) => {
            let (line, column) = position(text, at.start);
            Err(DomainError::Json {
                reason: format!(
                    "integer {} does not fit in 64 bits at line {line} column {column}",
                    &text[at]
                ),
            })
        }
        None => Ok(()),
    }
}

/// Where in `text`, JSON (so each number outside a string is well
/// formed), the first integer literal is that fits neither an `i64` nor a
/// `u64`.
fn integer_beyond_64_bits(text: &str) -> Option<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'"' => {
                at += 1;
                while let Some(&byte) = bytes.get(at) {
                    at += if byte == b'\\' { 2 } else { 1 };
                    if byte == b'"' {
                        break;
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                while bytes
                    .get(at)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    at += 1;
                }
                let number = &text[start..at];
                let integer = !number.contains(['.', 'e', 'E']);
                if integer && number.parse::<i64>().is_err() && number.parse::<u64>().is_err() {
                    return Some(start..at);
                }
            }
            _ => at += 1,
        }
    }
    None
}

/// The line and column (both from 1, the column in characters) of byte
/// `at` of `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// Builds a [`Value`] as serde_json's own does, but refuses a repeated key.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut array = Vec::with_capacity(items.size_hint().unwrap_or(0));
        while let Some(item) = items.next_element_seed(Strict)? {
            array.push(item);
        }
        Ok(Value::Array(array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("the key `{key}` is repeated")));
            }
            let value = entries.next_value_seed(Strict)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> String {
        match parse(text).and_then(|_| refuse_wide_integers(text)) {
            Err(DomainError::Json { reason }) => reason,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn parses_what_serde_json_parses_into_the_same_value() {
        let text = r#"{"a": [1, -2, 3.5, 1e3, 18446744073709551615, -9223372036854775808],
            "b": {"c": null, "d": true, "e": "x\"y\\", "f": "-99999999999999999999"}}"#;
        assert_eq!(
            parse(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn refuses_a_repeated_key_at_any_depth() {
        for text in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"event": "A", "data": {}, "event": "B"}"#,
            r#"[{"x": {"y": 1, "y": 1}}]"#,
        ] {
            assert!(refusal(text).contains("is repeated at line 1"), "{text}");
        }
        // The same key in two objects is no repeat.
        assert!(parse(r#"[{"a": 1}, {"a": 2}]"#).is_ok());
    }

    #[test]
    fn refuses_an_integer_beyond_64_bits_but_not_a_float_or_a_string() {
        assert_eq!(
            refusal("{\"a\":\n  [18446744073709551616]}"),
            "integer 18446744073709551616 does not fit in 64 bits at line 2 column 4"
        );
        assert!(refusal("-9223372036854775809").contains("-9223372036854775809"));
        for text in [
            "1.8446744073709552e19",
            "1e300",
            r#""18446744073709551616""#,
        ] {
            assert!(refuse_wide_integers(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_json_as_serde_json_does() {
        for text in ["", "{", "[1,]", "nul", "1 2", "--5"] {
            assert!(refusal(text).contains("line"), "{text}");
        }
    }
}
