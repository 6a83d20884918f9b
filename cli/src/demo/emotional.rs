//! Emotional: reads each user's mood from their messages. Its analysis is
//! sometimes slow.

use std::sync::Arc;
use std::time::Duration;

use diana_bus::diana::{DianaInteraction, ServiceResponse, UserMessage};
use diana_bus::{Bus, Context, HandlerResult, Service};
use serde_json::json;

use super::per_user::PerUser;

/// Tracks each user's mood from their messages (`UserMessage`) and
/// answers interactions with it, taking `slow_for` on every
/// `slow_every`-th interaction (by id), which a deadline shorter than
/// that reports as timed out.
#[derive(Debug)]
pub struct Emotional {
    moods: PerUser<String>,
    slow_every: i64,
    slow_for: Duration,
}

impl Emotional {
    /// An emotional service that is slow (`slow_for`) on every
    /// `slow_every`-th interaction; 0 means never.
    pub fn new(slow_every: i64, slow_for: Duration) -> Self {
        Emotional {
            moods: PerUser::default(),
            slow_every,
            slow_for,
        }
    }
}

fn mood(message: &str) -> &'static str {
    if message.ends_with('!') {
        "excited"
    } else if message.ends_with('?') {
        "curious"
    } else {
        "calm"
    }
}

impl Service for Emotional {
    fn register(self: Arc<Self>, bus: &Bus) {
        let this = self.clone();
        bus.subscriber::<UserMessage>().name("emotional").subscribe(
            move |message: &UserMessage, ctx: &Context| -> HandlerResult {
                let user = message.user_id().get();
                let felt = mood(message.message());
                this.moods
                    .with(ctx.tenant(), user, |mood| *mood = felt.to_owned());
                Ok(())
            },
        );
        // A sync responder holds its worker, and the later handlers of the
        // same event, while it sleeps: the driver registers this service
        // last.
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("emotional")
            .respond(move |interaction: &DianaInteraction, ctx: &Context| {
                if self.slow_every > 0 && interaction.interaction_id() % self.slow_every == 0 {
                    std::thread::sleep(self.slow_for);
                }
                let user = interaction.user_id().get();
                let mood = self.moods.with(ctx.tenant(), user, |mood| mood.clone());
                super::reply(interaction, "emotional", json!({"mood": mood}))
            });
    }
}
