//! The field rules, each written once: every constructor checks its fields
//! with these, and decoding goes through the constructors, so a rule holds
//! the same way for events built in Rust and events read from JSON.

use std::collections::BTreeSet;

use super::error::{DomainError, Rule};

/// An integer of at least 1.
pub(crate) fn positive(
    event: &'static str,
    field: &'static str,
    value: i64,
) -> Result<i64, DomainError> {
    check(value >= 1, event, field, Rule::Positive, || {
        value.to_string()
    })?;
    Ok(value)
}

/// An integer of at least 0.
pub(crate) fn non_negative(
    event: &'static str,
    field: &'static str,
    value: i64,
) -> Result<i64, DomainError> {
    check(value >= 0, event, field, Rule::NonNegative, || {
        value.to_string()
    })?;
    Ok(value)
}

/// A string with at least one character.
pub(crate) fn non_empty(
    event: &'static str,
    field: &'static str,
    value: &str,
) -> Result<(), DomainError> {
    check(!value.is_empty(), event, field, Rule::NonEmpty, || {
        quoted(value)
    })
}

/// A name not in `seen` yet; adds it.
pub(crate) fn distinct<'a>(
    event: &'static str,
    field: &'static str,
    seen: &mut BTreeSet<&'a str>,
    name: &'a str,
) -> Result<(), DomainError> {
    check(seen.insert(name), event, field, Rule::Distinct, || {
        quoted(name)
    })
}

fn check(
    holds: bool,
    event: &'static str,
    field: &'static str,
    rule: Rule,
    value: impl FnOnce() -> String,
) -> Result<(), DomainError> {
    if holds {
        Ok(())
    } else {
        Err(DomainError::Invalid {
            event,
            field,
            rule,
            value: value(),
        })
    }
}

/// The string as JSON shows it.
fn quoted(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_draw_the_line_where_they_say() {
        assert_eq!(positive("E", "f", 1), Ok(1));
        assert!(positive("E", "f", 0).is_err());
        assert_eq!(non_negative("E", "f", 0), Ok(0));
        assert!(non_negative("E", "f", -1).is_err());
        assert!(non_empty("E", "f", "x").is_ok());
        let err = non_empty("E", "f", "").unwrap_err();
        assert_eq!(err.to_string(), r#"E.f = "": must not be empty"#);
        let mut seen = BTreeSet::new();
        assert!(distinct("E", "f", &mut seen, "a").is_ok());
        assert!(matches!(
            distinct("E", "g", &mut seen, "a"),
            Err(DomainError::Invalid {
                field: "g",
                rule: Rule::Distinct,
                ..
            })
        ));
    }
}
