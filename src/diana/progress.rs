//! What the game makes of what users do: [`PointsAwarded`],
//! [`NarrativeProgression`], [`PieceUnlocked`], [`MissionCompleted`],
//! [`LevelUp`].
//!
//! Each mirrors the Python class of the same name field for field. Fields
//! are private: the constructors check the rules, and deserialization
//! reads a raw struct and goes through the same constructor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::DomainError;
use super::rules;
use super::user_id::UserId;
use super::wire::WireEvent;
use super::JsonObject;

/// A user was awarded points.
///
/// Wire: `{"user_id": int, "points": int, "source_event": str}`. `points`
/// may be negative (a deduction); `source_event` names the event that
/// earned them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PointsAwardedFields")]
pub struct PointsAwarded {
    user_id: UserId,
    points: i64,
    source_event: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointsAwardedFields {
    user_id: i64,
    points: i64,
    source_event: String,
}

impl PointsAwarded {
    /// Fails unless `user_id` is positive.
    pub fn new(
        user_id: i64,
        points: i64,
        source_event: impl Into<String>,
    ) -> Result<Self, DomainError> {
        Ok(PointsAwarded {
            user_id: UserId::parse(Self::NAME, "user_id", user_id)?,
            points,
            source_event: source_event.into(),
        })
    }

    /// Who got them.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// How many.
    pub fn points(&self) -> i64 {
        self.points
    }

    /// The name of the event that earned them.
    pub fn source_event(&self) -> &str {
        &self.source_event
    }
}

impl TryFrom<PointsAwardedFields> for PointsAwarded {
    type Error = DomainError;

    fn try_from(f: PointsAwardedFields) -> Result<Self, DomainError> {
        Self::new(f.user_id, f.points, f.source_event)
    }
}

wire_event!(PointsAwarded, PointsAwardedFields);

/// A user reached a narrative fragment.
///
/// Wire: `{"user_id": int, "fragment_id": str, "choices_made": {str: [int]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "NarrativeProgressionFields")]
pub struct NarrativeProgression {
    user_id: UserId,
    fragment_id: String,
    choices_made: BTreeMap<String, Vec<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NarrativeProgressionFields {
    user_id: i64,
    fragment_id: String,
    choices_made: BTreeMap<String, Vec<i64>>,
}

impl NarrativeProgression {
    /// Fails unless `user_id` is positive.
    pub fn new(
        user_id: i64,
        fragment_id: impl Into<String>,
        choices_made: BTreeMap<String, Vec<i64>>,
    ) -> Result<Self, DomainError> {
        Ok(NarrativeProgression {
            user_id: UserId::parse(Self::NAME, "user_id", user_id)?,
            fragment_id: fragment_id.into(),
            choices_made,
        })
    }

    /// Whose story.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The fragment reached.
    pub fn fragment_id(&self) -> &str {
        &self.fragment_id
    }

    /// The choices made so far, by fragment.
    pub fn choices_made(&self) -> &BTreeMap<String, Vec<i64>> {
        &self.choices_made
    }
}

impl TryFrom<NarrativeProgressionFields> for NarrativeProgression {
    type Error = DomainError;

    fn try_from(f: NarrativeProgressionFields) -> Result<Self, DomainError> {
        Self::new(f.user_id, f.fragment_id, f.choices_made)
    }
}

wire_event!(NarrativeProgression, NarrativeProgressionFields);

/// A user unlocked a story piece.
///
/// Wire: `{"user_id": int, "piece_id": str, "unlock_method": str}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PieceUnlockedFields")]
pub struct PieceUnlocked {
    user_id: UserId,
    piece_id: String,
    unlock_method: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PieceUnlockedFields {
    user_id: i64,
    piece_id: String,
    unlock_method: String,
}

impl PieceUnlocked {
    /// Fails unless `user_id` is positive.
    pub fn new(
        user_id: i64,
        piece_id: impl Into<String>,
        unlock_method: impl Into<String>,
    ) -> Result<Self, DomainError> {
        Ok(PieceUnlocked {
            user_id: UserId::parse(Self::NAME, "user_id", user_id)?,
            piece_id: piece_id.into(),
            unlock_method: unlock_method.into(),
        })
    }

    /// Who unlocked it.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The piece.
    pub fn piece_id(&self) -> &str {
        &self.piece_id
    }

    /// How it was unlocked.
    pub fn unlock_method(&self) -> &str {
        &self.unlock_method
    }
}

impl TryFrom<PieceUnlockedFields> for PieceUnlocked {
    type Error = DomainError;

    fn try_from(f: PieceUnlockedFields) -> Result<Self, DomainError> {
        Self::new(f.user_id, f.piece_id, f.unlock_method)
    }
}

wire_event!(PieceUnlocked, PieceUnlockedFields);

/// A user completed a mission.
///
/// Wire: `{"user_id": int, "mission_id": str, "completion_time": str,
/// "reward_points": int}`; `reward_points` may be absent (it is then
/// [`DEFAULT_REWARD_POINTS`](Self::DEFAULT_REWARD_POINTS), and written out
/// as such) and must not be negative. The completion time is kept as the
/// sender wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MissionCompletedFields")]
pub struct MissionCompleted {
    user_id: UserId,
    mission_id: String,
    completion_time: String,
    reward_points: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MissionCompletedFields {
    user_id: i64,
    mission_id: String,
    completion_time: String,
    #[serde(default = "default_reward_points")]
    reward_points: i64,
}

fn default_reward_points() -> i64 {
    MissionCompleted::DEFAULT_REWARD_POINTS
}

impl MissionCompleted {
    /// The reward when the sender does not say.
    pub const DEFAULT_REWARD_POINTS: i64 = 0;

    /// Fails unless `user_id` is positive and `reward_points` is not
    /// negative.
    pub fn new(
        user_id: i64,
        mission_id: impl Into<String>,
        completion_time: impl Into<String>,
        reward_points: i64,
    ) -> Result<Self, DomainError> {
        Ok(MissionCompleted {
            user_id: UserId::parse(Self::NAME, "user_id", user_id)?,
            mission_id: mission_id.into(),
            completion_time: completion_time.into(),
            reward_points: rules::non_negative(Self::NAME, "reward_points", reward_points)?,
        })
    }

    /// Who completed it.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The mission.
    pub fn mission_id(&self) -> &str {
        &self.mission_id
    }

    /// When, as the sender wrote it.
    pub fn completion_time(&self) -> &str {
        &self.completion_time
    }

    /// The reward, never negative.
    pub fn reward_points(&self) -> i64 {
        self.reward_points
    }
}

impl TryFrom<MissionCompletedFields> for MissionCompleted {
    type Error = DomainError;

    fn try_from(f: MissionCompletedFields) -> Result<Self, DomainError> {
        Self::new(f.user_id, f.mission_id, f.completion_time, f.reward_points)
    }
}

wire_event!(MissionCompleted, MissionCompletedFields);

/// A user reached a new level.
///
/// Wire: `{"user_id": int, "new_level": int, "rewards": object}`;
/// `new_level` is at least 1; `rewards` may be absent (it is then `{}`,
/// and written out as such).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LevelUpFields")]
pub struct LevelUp {
    user_id: UserId,
    new_level: i64,
    rewards: JsonObject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelUpFields {
    user_id: i64,
    new_level: i64,
    #[serde(default)]
    rewards: JsonObject,
}

impl LevelUp {
    /// Fails unless `user_id` and `new_level` are positive.
    pub fn new(user_id: i64, new_level: i64, rewards: JsonObject) -> Result<Self, DomainError> {
        Ok(LevelUp {
            user_id: UserId::parse(Self::NAME, "user_id", user_id)?,
            new_level: rules::positive(Self::NAME, "new_level", new_level)?,
            rewards,
        })
    }

    /// Who levelled up.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The level reached, at least 1.
    pub fn new_level(&self) -> i64 {
        self.new_level
    }

    /// What comes with it.
    pub fn rewards(&self) -> &JsonObject {
        &self.rewards
    }
}

impl TryFrom<LevelUpFields> for LevelUp {
    type Error = DomainError;

    fn try_from(f: LevelUpFields) -> Result<Self, DomainError> {
        Self::new(f.user_id, f.new_level, f.rewards)
    }
}

wire_event!(LevelUp, LevelUpFields);
