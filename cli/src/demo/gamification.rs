//! Gamification: points for reactions, levels for points.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use diana_bus::diana::{
    DianaInteraction, JsonObject, LevelUp, PointsAwarded, ReactionAdded, ServiceResponse,
};
use diana_bus::{Bus, ConfigError, Context, HandlerError, HandlerResult, Service, TenantId};
use serde_json::json;

use super::per_user::{PerUser, Sequence};

/// Points for a level.
pub const POINTS_PER_LEVEL: i64 = 20;

/// Keeps each user's balance: a reaction adds its points, announced as
/// `PointsAwarded`, and a new level is announced as `LevelUp`. Answers
/// interactions with the points and level (a user's reaction published
/// before an interaction is always counted in it: same user, same order).
#[derive(Debug, Default)]
pub struct Gamification {
    ledgers: PerUser<Ledger>,
    out_of_order: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Ledger {
    points: i64,
    reactions: Sequence,
}

fn level(points: i64) -> i64 {
    1 + points / POINTS_PER_LEVEL
}

impl Gamification {
    /// The balance of `user` of `tenant`.
    pub fn points(&self, tenant: TenantId, user: i64) -> i64 {
        self.ledgers.with(tenant, user, |ledger| ledger.points)
    }

    /// Reactions that came out of order (message ids are numbered 1, 2,
    /// ... per user).
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order.load(Ordering::Relaxed)
    }
}

impl Service for Gamification {
    fn register(self: Arc<Self>, bus: &Bus) -> Result<(), ConfigError> {
        let this = self.clone();
        bus.subscriber::<ReactionAdded>()
            .name("gamification")
            .subscribe(
                move |reaction: &ReactionAdded, ctx: &Context| -> HandlerResult {
                    let user = reaction.user_id().get();
                    let points = reaction.points_to_award();
                    let (in_order, before, after) =
                        this.ledgers.with(ctx.tenant(), user, |ledger| {
                            let in_order = ledger.reactions.next(reaction.message_id());
                            let before = ledger.points;
                            ledger.points += points;
                            (in_order, before, ledger.points)
                        });
                    if !in_order {
                        this.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                    let permanent =
                        |e: diana_bus::diana::DomainError| HandlerError::permanent(e.to_string());
                    ctx.publish(
                        PointsAwarded::new(user, points, "ReactionAdded").map_err(permanent)?,
                    );
                    if level(after) > level(before) {
                        let mut rewards = JsonObject::new();
                        rewards.insert("badge".into(), json!(format!("level-{}", level(after))));
                        ctx.publish(LevelUp::new(user, level(after), rewards).map_err(permanent)?);
                    }
                    Ok(())
                },
            );
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("gamification")
            .respond(move |interaction: &DianaInteraction, ctx: &Context| {
                let points = self.points(ctx.tenant(), interaction.user_id().get());
                super::reply(
                    interaction,
                    "gamification",
                    json!({"points": points, "level": level(points)}),
                )
            });
        Ok(())
    }
}
