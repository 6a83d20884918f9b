//! Admin: one tenant's moderators. Its backend is flaky.

use std::sync::Arc;
use std::time::Duration;

use diana_bus::diana::{DianaInteraction, ServiceResponse};
use diana_bus::{Bus, ConfigError, Context, HandlerError, RetryPolicy, Service, TenantId};
use serde_json::json;

/// Answers interactions of one tenant with the user's role. Each tenant
/// registers its own (the subscription is scoped to the tenant).
///
/// Its backend is flaky, by interaction id: it is busy on the first try of
/// every third interaction (the retry answers) and down for every eighth
/// (three tries, then the interaction reports admin as failed).
#[derive(Debug)]
pub struct Admin {
    tenant: TenantId,
    moderators: Vec<i64>,
}

impl Admin {
    /// The admin service of `tenant`, whose moderators are `moderators`.
    pub fn new(tenant: TenantId, moderators: Vec<i64>) -> Self {
        Admin { tenant, moderators }
    }
}

impl Service for Admin {
    fn register(self: Arc<Self>, bus: &Bus) -> Result<(), ConfigError> {
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("admin")
            .tenant(self.tenant)
            .retry(RetryPolicy::fixed(3, Duration::from_millis(5)))
            .respond(move |interaction: &DianaInteraction, ctx: &Context| {
                let id = interaction.interaction_id();
                if id % 8 == 0 {
                    return Err(HandlerError::transient("moderation backend unavailable"));
                }
                if id % 3 == 0 && ctx.attempt() == 1 {
                    return Err(HandlerError::transient("moderation backend busy"));
                }
                let user = interaction.user_id().get();
                let role = if self.moderators.contains(&user) {
                    "moderator"
                } else {
                    "member"
                };
                super::reply(interaction, "admin", json!({"role": role}))
            });
        Ok(())
    }
}
