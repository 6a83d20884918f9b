//! Users: who each user is and how much they have said.

use std::sync::Arc;

use diana_bus::diana::{DianaInteraction, ServiceResponse, UserMessage, UserStartedBot};
use diana_bus::{Bus, ConfigError, Context, HandlerResult, Service};
use serde_json::json;

use super::per_user::PerUser;

/// Registers users (`UserStartedBot`), counts their messages
/// (`UserMessage`), and answers interactions with the name and count.
#[derive(Debug, Default)]
pub struct Users {
    profiles: PerUser<Profile>,
}

#[derive(Debug, Default, Clone)]
struct Profile {
    name: Option<String>,
    messages: u64,
}

impl Service for Users {
    fn register(self: Arc<Self>, bus: &Bus) -> Result<(), ConfigError> {
        let this = self.clone();
        bus.subscriber::<UserStartedBot>().name("user").subscribe(
            move |started: &UserStartedBot, ctx: &Context| -> HandlerResult {
                let user = started.user_id().get();
                this.profiles.with(ctx.tenant(), user, |profile| {
                    profile.name = started.username().map(str::to_owned);
                });
                Ok(())
            },
        );
        let this = self.clone();
        bus.subscriber::<UserMessage>().name("user").subscribe(
            move |message: &UserMessage, ctx: &Context| -> HandlerResult {
                let user = message.user_id().get();
                this.profiles
                    .with(ctx.tenant(), user, |profile| profile.messages += 1);
                Ok(())
            },
        );
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("user")
            .respond(move |interaction: &DianaInteraction, ctx: &Context| {
                let user = interaction.user_id().get();
                let profile = self.profiles.with(ctx.tenant(), user, |p| p.clone());
                super::reply(
                    interaction,
                    "user",
                    json!({"name": profile.name, "messages": profile.messages}),
                )
            });
        Ok(())
    }
}
