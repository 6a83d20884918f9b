//! Reading an event's `data` object into a Rust struct with errors that
//! name the event and the field: [`decode_fields`].
//!
//! `serde_json::from_value` reports a bad field as text only. Here a small
//! deserializer over a borrowed [`Value`] uses its own error type, which
//! keeps serde's structured reports (unknown field, missing field, invalid
//! type) and the path of the field they happened in, and turns them into
//! the matching [`DomainError`] variant.

use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::Value;

use super::error::DomainError;

/// Deserializes `T` from `data`, which must be a JSON object, with errors
/// naming `event` and the field.
///
/// This is what [`WireEvent::from_data`](super::WireEvent::from_data) does
/// by default; an event that validates in its constructor can call it to
/// read a raw struct and then build itself from that.
///
/// # Examples
///
/// ```
/// use diana_bus::diana::{decode_fields, DomainError};
/// use serde_json::json;
///
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Tip { user_id: i64, amount: i64 }
///
/// let tip: Tip = decode_fields("Tip", &json!({"user_id": 1, "amount": 5})).unwrap();
/// assert_eq!(tip.amount, 5);
/// let err = decode_fields::<Tip>("Tip", &json!({"user_id": 1, "amount": "5"})).unwrap_err();
/// assert!(matches!(err, DomainError::WrongType { ref field, .. } if field == "amount"));
/// ```
pub fn decode_fields<T: DeserializeOwned>(
    event: &'static str,
    data: &Value,
) -> Result<T, DomainError> {
    require_data(event, data)?;
    T::deserialize(ValueRef(data)).map_err(|err| err.into_domain(event))
}

/// How deeply an event's `data` may nest: the object itself is level 1,
/// an array or object in it level 2, and so on. Deeper data is refused
/// both ways, with [`DomainError::Rejected`]: it stays well within
/// serde_json's parser limit of 128 levels for a whole envelope, so that
/// what is encoded can be decoded, and the decoder's recursion (a level
/// of stack per level of data) stays bounded for a `Value` built in code.
pub const MAX_DATA_DEPTH: usize = 100;

/// `data` itself, if it is an object nested no deeper than
/// [`MAX_DATA_DEPTH`] (looked at without recursion).
pub(crate) fn require_data<'a>(
    event: &'static str,
    data: &'a Value,
) -> Result<&'a serde_json::Map<String, Value>, DomainError> {
    let object = data.as_object().ok_or(DomainError::NotAnObject {
        event,
        found: json_type(data),
    })?;
    // Only arrays and objects are ever pushed: `data` is one.
    let mut containers = vec![(data, 1)];
    while let Some((container, depth)) = containers.pop() {
        if depth > MAX_DATA_DEPTH {
            return Err(DomainError::Rejected {
                event,
                field: String::new(),
                reason: format!("data nested more than {MAX_DATA_DEPTH} levels deep"),
            });
        }
        let items = container.as_array().into_iter().flatten();
        let values = container
            .as_object()
            .into_iter()
            .flat_map(|map| map.values());
        containers.extend(
            items
                .chain(values)
                .filter(|v| v.is_array() || v.is_object())
                .map(|v| (v, depth + 1)),
        );
    }
    Ok(object)
}

/// The JSON type of `value`, with its article.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One step of the path to a nested field.
#[derive(Debug)]
enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug)]
enum Problem {
    Unknown(String),
    Missing(&'static str),
    WrongType { expected: String, found: String },
    Other(String),
}

/// The deserializer's error: what went wrong, and where.
#[derive(Debug)]
struct FieldError {
    /// Innermost step first: steps are added as the error bubbles up.
    path: Vec<Step>,
    problem: Problem,
}

impl FieldError {
    fn new(problem: Problem) -> Self {
        FieldError {
            path: Vec::new(),
            problem,
        }
    }

    fn within(mut self, step: Step) -> Self {
        self.path.push(step);
        self
    }

    /// The path, outermost first, with `last` appended: `a.b[2].c`.
    fn field(&self, last: Option<&str>) -> String {
        let mut out = String::new();
        let push_key = |out: &mut String, key: &str| {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        };
        for step in self.path.iter().rev() {
            match step {
                Step::Key(key) => push_key(&mut out, key),
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        if let Some(last) = last {
            push_key(&mut out, last);
        }
        out
    }

    fn into_domain(self, event: &'static str) -> DomainError {
        match &self.problem {
            Problem::Unknown(name) => DomainError::UnknownField {
                event,
                field: self.field(Some(name)),
            },
            Problem::Missing(name) => DomainError::MissingField {
                event,
                field: self.field(Some(name)),
            },
            Problem::WrongType { expected, found } => DomainError::WrongType {
                event,
                field: self.field(None),
                expected: expected.clone(),
                found: found.clone(),
            },
            Problem::Other(reason) => DomainError::Rejected {
                event,
                field: self.field(None),
                reason: reason.clone(),
            },
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at {}", self.problem, self.field(None))
    }
}

impl std::error::Error for FieldError {}

impl de::Error for FieldError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FieldError::new(Problem::Other(msg.to_string()))
    }

    fn invalid_type(found: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        FieldError::new(Problem::WrongType {
            expected: expected.to_string(),
            found: found.to_string(),
        })
    }

    fn invalid_value(found: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::invalid_type(found, expected)
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        FieldError::new(Problem::Unknown(field.to_owned()))
    }

    fn missing_field(field: &'static str) -> Self {
        FieldError::new(Problem::Missing(field))
    }
}

/// A borrowed JSON value as a serde deserializer with [`FieldError`]s.
struct ValueRef<'de>(&'de Value);

impl<'de> de::Deserializer<'de> for ValueRef<'de> {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else if let Some(f) = n.as_f64() {
                    visitor.visit_f64(f)
                } else {
                    Err(de::Error::custom(format!("unsupported number {n}")))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = Seq {
                    items: items.iter().enumerate(),
                };
                let value = visitor.visit_seq(&mut seq)?;
                match seq.items.len() {
                    0 => Ok(value),
                    left => Err(de::Error::invalid_length(
                        items.len(),
                        &format!("{} elements", items.len() - left).as_str(),
                    )),
                }
            }
            Value::Object(map) => visitor.visit_map(Map {
                entries: map.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        visitor.visit_newtype_struct(self)
    }

    /// Enums are left to serde_json (their errors arrive as text).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        de::Deserializer::deserialize_enum(self.0, name, variants, visitor)
            .map_err(<FieldError as de::Error>::custom)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct Seq<'de> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Value>>,
}

impl<'de> de::SeqAccess<'de> for Seq<'de> {
    type Error = FieldError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, FieldError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, item)) => seed
                .deserialize(ValueRef(item))
                .map(Some)
                .map_err(|err| err.within(Step::Index(i))),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// An object's key as a serde deserializer: a string, or the number or
/// boolean whose text it is (serde_json writes a map's integer keys as
/// `"12"`, and reads them back so; so does this).
struct KeyRef<'de>(&'de str);

/// Deserializer methods that parse the key's text as their type, spelled
/// only as serde_json writes it: `"05"`, `"+5"` or `"-0"` would let two
/// keys of one object name one number, and one of their values would be
/// lost without a word.
macro_rules! parse_key {
    ($($method:ident => $visit:ident($ty:ty)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
            match self.0.parse::<$ty>() {
                Ok(value) if serde_json::to_string(&value).is_ok_and(|text| text == self.0) => {
                    visitor.$visit(value)
                }
                _ => Err(de::Error::invalid_type(de::Unexpected::Str(self.0), &visitor)),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for KeyRef<'de> {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        visitor.visit_borrowed_str(self.0)
    }

    parse_key! {
        deserialize_bool => visit_bool(bool),
        deserialize_i8 => visit_i8(i8),
        deserialize_i16 => visit_i16(i16),
        deserialize_i32 => visit_i32(i32),
        deserialize_i64 => visit_i64(i64),
        deserialize_i128 => visit_i128(i128),
        deserialize_u8 => visit_u8(u8),
        deserialize_u16 => visit_u16(u16),
        deserialize_u32 => visit_u32(u32),
        deserialize_u64 => visit_u64(u64),
        deserialize_u128 => visit_u128(u128),
        deserialize_f32 => visit_f32(f32),
        deserialize_f64 => visit_f64(f64),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        visitor.visit_newtype_struct(self)
    }

    /// A unit variant, by name.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        BorrowedStrDeserializer::new(self.0).deserialize_enum(name, variants, visitor)
    }

    forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct Map<'de> {
    entries: serde_json::map::Iter<'de>,
    /// The entry whose key was just read.
    value: Option<(&'de str, &'de Value)>,
}

impl<'de> de::MapAccess<'de> for Map<'de> {
    type Error = FieldError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FieldError> {
        match self.entries.next() {
            None => Ok(None),
            Some((key, value)) => {
                self.value = Some((key, value));
                // A bad key is the map's error (its text tells which).
                seed.deserialize(KeyRef(key)).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, FieldError> {
        match self.value.take() {
            Some((key, value)) => seed
                .deserialize(ValueRef(value))
                .map_err(|err| err.within(Step::Key(key.to_owned()))),
            None => Err(de::Error::custom("a map value was read before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
