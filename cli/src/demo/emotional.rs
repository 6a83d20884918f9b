//! Emotional: reads each user's mood from their messages. Its analysis is
//! sometimes slow.

use std::sync::Arc;
use std::time::Duration;

use diana_bus::diana::{DianaInteraction, ServiceResponse, UserMessage};
use diana_bus::{AsyncContext, Bus, ConfigError, Context, HandlerResult, Service};
use serde_json::json;

use super::per_user::PerUser;

/// Tracks each user's mood from their messages (`UserMessage`) and
/// answers interactions with it, from an async responder that takes
/// `slow_for` on every `slow_every`-th interaction (by id), which a
/// deadline shorter than that reports as timed out. Needs a bus built
/// with a runtime ([`diana_bus::BusBuilder::runtime`]).
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
    fn register(self: Arc<Self>, bus: &Bus) -> Result<(), ConfigError> {
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
        // Async: a slow analysis waits on the runtime, holding neither a
        // bus worker nor the other services' handlers of the interaction.
        let this = self.clone();
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("emotional")
            // Its slowness is waiting (a model behind an API, say), not
            // work: many may wait at once.
            .concurrency(256)
            .respond_async(
                move |interaction: Arc<DianaInteraction>, ctx: AsyncContext| {
                    let this = this.clone();
                    async move {
                        let id = interaction.interaction_id();
                        if this.slow_every > 0 && id % this.slow_every == 0 {
                            tokio::time::sleep(this.slow_for).await;
                        }
                        let user = interaction.user_id().get();
                        let mood = this.moods.with(ctx.tenant(), user, |mood| mood.clone());
                        super::reply(&interaction, "emotional", json!({"mood": mood}))
                    }
                },
            )?;
        Ok(())
    }
}
