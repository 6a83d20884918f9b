//! The one error type of the Diana domain: [`DomainError`], returned by the
//! event constructors, by decoding and by the registry, and the [`Rule`] a
//! rejected value broke.

use std::fmt;

/// A rule that a field's value must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// An integer of at least 1 (user ids, interaction ids, levels).
    Positive,
    /// An integer of at least 0 (points).
    NonNegative,
    /// A string with at least one character (commands, actions, interface
    /// types, service names).
    NonEmpty,
    /// A service named only once across the `responses`, `failed` and
    /// `timed_out` of a completed interaction.
    Distinct,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Positive => "must be a positive integer",
            Rule::NonNegative => "must not be negative",
            Rule::NonEmpty => "must not be empty",
            Rule::Distinct => "names a service already named in responses, failed or timed_out",
        })
    }
}

/// Why an event could not be built, decoded, encoded or registered.
///
/// Every variant about an event names it (its wire name, the Python class
/// name), and those about one of its fields name the field: a nested field
/// is given as a path such as `choices_made.intro[1]`.
///
/// # Examples
///
/// ```
/// use diana_bus::diana::{DomainError, Rule, UserMessage, WireRegistry};
///
/// let err = UserMessage::new(0, "hi", "2025-08-05T10:00:00").unwrap_err();
/// assert_eq!(
///     err,
///     DomainError::Invalid {
///         event: "UserMessage",
///         field: "user_id",
///         rule: Rule::Positive,
///         value: "0".into(),
///     }
/// );
/// assert_eq!(err.to_string(), "UserMessage.user_id = 0: must be a positive integer");
///
/// let registry = WireRegistry::diana();
/// let err = registry.decode(r#"{"event": "Nope", "data": {}}"#).unwrap_err();
/// assert!(matches!(err, DomainError::UnknownEvent { ref name } if name == "Nope"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DomainError {
    /// A value breaks a rule of its event (a user id of 0, an empty
    /// command, negative points).
    Invalid {
        /// The event's name.
        event: &'static str,
        /// The field holding the value.
        field: &'static str,
        /// The rule it breaks.
        rule: Rule,
        /// The value, as JSON would show it (strings quoted).
        value: String,
    },
    /// The data has a field the event does not have.
    UnknownField {
        /// The event's name.
        event: &'static str,
        /// The unexpected field (a path when nested).
        field: String,
    },
    /// A required field is absent.
    MissingField {
        /// The event's name.
        event: &'static str,
        /// The absent field (a path when nested).
        field: String,
    },
    /// A field holds the wrong JSON type, or a value its type cannot hold
    /// (a fraction for an integer, an integer beyond 64 bits).
    WrongType {
        /// The event's name.
        event: &'static str,
        /// The field (a path when nested).
        field: String,
        /// What the field takes, in serde's words (`i64`, `a string`).
        expected: String,
        /// What was there, in serde's words (`string "5"`, `null`).
        found: String,
    },
    /// The event's `data` is not a JSON object (or an event serialized to
    /// something else than an object).
    NotAnObject {
        /// The event's name.
        event: &'static str,
        /// The JSON type found instead (`an array`, `null`).
        found: &'static str,
    },
    /// Any other refusal from an event's own deserialization code, such as
    /// a user type's `#[serde(try_from)]`, or a failed serialization.
    Rejected {
        /// The event's name.
        event: &'static str,
        /// The field, when known (empty for the whole event).
        field: String,
        /// The refusal's message.
        reason: String,
    },
    /// No event of this name is registered.
    UnknownEvent {
        /// The name from the envelope.
        name: String,
    },
    /// The JSON is not an envelope `{"event": "<Name>", "data": {...}}`.
    BadEnvelope {
        /// What is wrong with it.
        reason: String,
    },
    /// The text is not JSON, or JSON that a `serde_json::Value` cannot
    /// hold as it is: a key repeated in one object, an integer beyond 64
    /// bits.
    Json {
        /// The parser's message, with line and column.
        reason: String,
    },
    /// The name is already registered to another type.
    NameTaken {
        /// The name.
        name: &'static str,
    },
    /// The event's type is not registered under its name, so the other
    /// side could not decode what would be encoded.
    Unregistered {
        /// The type's wire name.
        name: &'static str,
    },
}

impl DomainError {
    /// The name of the event the error is about, if it is about one.
    pub fn event(&self) -> Option<&str> {
        match self {
            DomainError::Invalid { event, .. }
            | DomainError::UnknownField { event, .. }
            | DomainError::MissingField { event, .. }
            | DomainError::WrongType { event, .. }
            | DomainError::NotAnObject { event, .. }
            | DomainError::Rejected { event, .. } => Some(event),
            DomainError::UnknownEvent { name } => Some(name),
            DomainError::NameTaken { name } | DomainError::Unregistered { name } => Some(name),
            DomainError::BadEnvelope { .. } | DomainError::Json { .. } => None,
        }
    }

    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            DomainError::Invalid { field, .. } => Some(field),
            DomainError::UnknownField { field, .. }
            | DomainError::MissingField { field, .. }
            | DomainError::WrongType { field, .. } => Some(field),
            DomainError::Rejected { field, .. } if !field.is_empty() => Some(field),
            _ => None,
        }
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainError::Invalid {
                event,
                field,
                rule,
                value,
            } => write!(f, "{event}.{field} = {value}: {rule}"),
            DomainError::UnknownField { event, field } => {
                write!(f, "{event}: unknown field `{field}`")
            }
            DomainError::MissingField { event, field } => {
                write!(f, "{event}: missing field `{field}`")
            }
            DomainError::WrongType {
                event,
                field,
                expected,
                found,
            } => write!(f, "{event}.{field}: expected {expected}, found {found}"),
            DomainError::NotAnObject { event, found } => {
                write!(f, "{event}: data must be a JSON object, found {found}")
            }
            DomainError::Rejected {
                event,
                field,
                reason,
            } if field.is_empty() => write!(f, "{event}: {reason}"),
            DomainError::Rejected {
                event,
                field,
                reason,
            } => write!(f, "{event}.{field}: {reason}"),
            DomainError::UnknownEvent { name } => write!(f, "unknown event `{name}`"),
            DomainError::BadEnvelope { reason } => {
                write!(f, "not an event envelope: {reason}")
            }
            DomainError::Json { reason } => write!(f, "malformed JSON: {reason}"),
            DomainError::NameTaken { name } => {
                write!(
                    f,
                    "event name `{name}` is already registered to another type"
                )
            }
            DomainError::Unregistered { name } => {
                write!(f, "event `{name}` is not registered for this type")
            }
        }
    }
}

impl std::error::Error for DomainError {}
