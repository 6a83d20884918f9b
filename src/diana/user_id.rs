//! [`UserId`]: a Telegram user id, always positive.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::error::DomainError;
use super::rules;

/// A Telegram user id: a positive integer. It is the ordering key of every
/// Diana event, so one user's events are handled in the order they were
/// published.
///
/// On the wire it is a plain JSON integer; deserializing 0 or a negative
/// number fails.
///
/// # Examples
///
/// ```
/// use diana_bus::diana::UserId;
///
/// let id = UserId::new(42).unwrap();
/// assert_eq!(id.get(), 42);
/// assert_eq!(serde_json::to_string(&id).unwrap(), "42");
/// assert!(UserId::new(0).is_none());
/// assert!(serde_json::from_str::<UserId>("-3").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct UserId(i64);

impl UserId {
    /// The id, or `None` unless it is positive.
    pub fn new(id: i64) -> Option<UserId> {
        Self::parse("UserId", "id", id).ok()
    }

    /// Checks the `field` of `event`.
    pub(crate) fn parse(
        event: &'static str,
        field: &'static str,
        id: i64,
    ) -> Result<UserId, DomainError> {
        rules::positive(event, field, id).map(UserId)
    }

    /// The id.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The id as the bus's ordering key (lossless: the id is positive).
    pub fn key(self) -> u64 {
        self.0.unsigned_abs()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<UserId> for i64 {
    fn from(id: UserId) -> i64 {
        id.0
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = i64::deserialize(deserializer)?;
        UserId::new(id).ok_or_else(|| {
            de::Error::invalid_value(de::Unexpected::Signed(id), &"a positive user id")
        })
    }
}
