//! What users do: [`UserMessage`], [`CommandExecuted`], [`UserStartedBot`],
//! [`ReactionAdded`].
//!
//! Each mirrors the Python class of the same name field for field. Fields
//! are private: the constructors check the rules, and deserialization
//! reads a raw struct and goes through the same constructor.

use serde::{Deserialize, Serialize};

use super::error::DomainError;
use super::rules;
use super::user_id::UserId;
use super::wire::WireEvent;

/// A user sent the bot a message.
///
/// Wire: `{"user_id": int, "message": str, "timestamp": str}`. The
/// timestamp is kept as the sender wrote it, unparsed.
///
/// # Examples
///
/// ```
/// use diana_bus::diana::UserMessage;
/// use diana_bus::Event;
///
/// let json = r#"{"user_id": 7, "message": "hola", "timestamp": "2025-08-05T10:00:00"}"#;
/// let message: UserMessage = serde_json::from_str(json)?;
/// assert_eq!(message.timestamp(), "2025-08-05T10:00:00");
/// assert_eq!(message.key(), Some(7)); // one user's events stay in order
/// assert_eq!(
///     serde_json::to_value(&message)?,
///     serde_json::from_str::<serde_json::Value>(json)?,
/// );
/// assert!(serde_json::from_str::<UserMessage>(&json.replace('7', "0")).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UserMessageFields")]
pub struct UserMessage {
    user_id: UserId,
    message: String,
    timestamp: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserMessageFields {
    user_id: i64,
    message: String,
    timestamp: String,
}

impl UserMessage {
    /// Fails unless `user_id` is positive.
    pub fn new(
        user_id: i64,
        message: impl Into<String>,
        timestamp: impl Into<String>,
    ) -> Result<Self, DomainError> {
        Ok(UserMessage {
            user_id: UserId::parse(Self::NAME, "user_id", user_id)?,
            message: message.into(),
            timestamp: timestamp.into(),
        })
    }

    /// Who sent it.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// When, as the sender wrote it.
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }
}

impl TryFrom<UserMessageFields> for UserMessage {
    type Error = DomainError;

    fn try_from(f: UserMessageFields) -> Result<Self, DomainError> {
        Self::new(f.user_id, f.message, f.timestamp)
    }
}

wire_event!(UserMessage, UserMessageFields);

/// A user ran a bot command.
///
/// Wire: `{"user_id": int, "command": str, "args": [str], "timestamp": str}`;
/// the command must not be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CommandExecutedFields")]
pub struct CommandExecuted {
    user_id: UserId,
    command: String,
    args: Vec<String>,
    timestamp: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandExecutedFields {
    user_id: i64,
    command: String,
    args: Vec<String>,
    timestamp: String,
}

impl CommandExecuted {
    /// Fails unless `user_id` is positive and `command` is not empty.
    pub fn new(
        user_id: i64,
        command: impl Into<String>,
        args: Vec<String>,
        timestamp: impl Into<String>,
    ) -> Result<Self, DomainError> {
        let user_id = UserId::parse(Self::NAME, "user_id", user_id)?;
        let command = command.into();
        rules::non_empty(Self::NAME, "command", &command)?;
        Ok(CommandExecuted {
            user_id,
            command,
            args,
            timestamp: timestamp.into(),
        })
    }

    /// Who ran it.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The command, never empty.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Its arguments, in order.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// When, as the sender wrote it.
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }
}

impl TryFrom<CommandExecutedFields> for CommandExecuted {
    type Error = DomainError;

    fn try_from(f: CommandExecutedFields) -> Result<Self, DomainError> {
        Self::new(f.user_id, f.command, f.args, f.timestamp)
    }
}

wire_event!(CommandExecuted, CommandExecutedFields);

/// A user started the bot.
///
/// Wire: `{"user_id": int, "username": str | null}`. `username` is
/// required, and `null` when the user has none (it stays `null` on the way
/// out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UserStartedBotFields")]
pub struct UserStartedBot {
    user_id: UserId,
    username: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserStartedBotFields {
    user_id: i64,
    // `deserialize_with` makes serde require the key (a bare `Option`
    // field would read a missing key as None).
    #[serde(deserialize_with = "Option::deserialize")]
    username: Option<String>,
}

impl UserStartedBot {
    /// Fails unless `user_id` is positive.
    pub fn new(user_id: i64, username: Option<String>) -> Result<Self, DomainError> {
        Ok(UserStartedBot {
            user_id: UserId::parse(Self::NAME, "user_id", user_id)?,
            username,
        })
    }

    /// Who started it.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// Their Telegram username, if they have one.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }
}

impl TryFrom<UserStartedBotFields> for UserStartedBot {
    type Error = DomainError;

    fn try_from(f: UserStartedBotFields) -> Result<Self, DomainError> {
        Self::new(f.user_id, f.username)
    }
}

wire_event!(UserStartedBot, UserStartedBotFields);

/// A user reacted to a message.
///
/// Wire: `{"user_id": int, "message_id": int, "points_to_award": int}`;
/// `points_to_award` may be absent (it is then
/// [`DEFAULT_POINTS_TO_AWARD`](Self::DEFAULT_POINTS_TO_AWARD), and written
/// out as such) and must not be negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ReactionAddedFields")]
pub struct ReactionAdded {
    user_id: UserId,
    message_id: i64,
    points_to_award: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReactionAddedFields {
    user_id: i64,
    message_id: i64,
    #[serde(default = "default_points_to_award")]
    points_to_award: i64,
}

fn default_points_to_award() -> i64 {
    ReactionAdded::DEFAULT_POINTS_TO_AWARD
}

impl ReactionAdded {
    /// The points a reaction is worth when the sender does not say.
    pub const DEFAULT_POINTS_TO_AWARD: i64 = 5;

    /// Fails unless `user_id` is positive and `points_to_award` is not
    /// negative.
    pub fn new(user_id: i64, message_id: i64, points_to_award: i64) -> Result<Self, DomainError> {
        Ok(ReactionAdded {
            user_id: UserId::parse(Self::NAME, "user_id", user_id)?,
            message_id,
            points_to_award: rules::non_negative(Self::NAME, "points_to_award", points_to_award)?,
        })
    }

    /// Who reacted.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The message reacted to.
    pub fn message_id(&self) -> i64 {
        self.message_id
    }

    /// The points to award, never negative.
    pub fn points_to_award(&self) -> i64 {
        self.points_to_award
    }
}

impl TryFrom<ReactionAddedFields> for ReactionAdded {
    type Error = DomainError;

    fn try_from(f: ReactionAddedFields) -> Result<Self, DomainError> {
        Self::new(f.user_id, f.message_id, f.points_to_award)
    }
}

wire_event!(ReactionAdded, ReactionAddedFields);
