//! A simulated Diana bot: five independent services driven through the
//! Diana interaction flow for many users of several tenants, with a
//! readable trace. `diana-bus demo` and `examples/diana_bot.rs` both run
//! it.
//!
//! # The services
//!
//! `Gamification`, `Narrative`, `Users`, `Admin` and
//! `Emotional` are independent [`Service`](diana_bus::Service)s: none
//! names another; they meet only through events on the bus. Each
//! subscribes to the bot events it cares about and answers
//! `DianaInteraction` with a `ServiceResponse`. Gamification turns
//! reactions into `PointsAwarded` and levels into `LevelUp`, which the
//! narrative turns into `PieceUnlocked`: real follow-up traffic, published
//! through the handler's context. Admin is scoped to one tenant, so each
//! tenant registers its own. Two of them misbehave on purpose: admin fails
//! now and then (retried, and reported failed when its retries run out),
//! and emotional is sometimes slower than the deadline (reported timed
//! out).
//!
//! # The driver
//!
//! `run` plays every user of every tenant at once, each user's steps in
//! order: start the bot, then per interaction a message, a reaction, a
//! chapter of the story and a Diana interface request, which a
//! [`Coordinator`](diana_bus::diana::Coordinator) runs through the four
//! steps. It traces a few users in full and summarises the rest, and it
//! checks what the flow promises: one completion per interaction, each
//! user's events in order, tenants kept apart.
//!
//! This module needs only `diana_bus`, `serde_json` and `tokio`:
//! `examples/diana_bot.rs` includes it with `#[path]`, so the CLI and the
//! example run the very same code. Its files refer to each other through
//! `super::`, never `crate::`, for that reason.

mod admin;
mod driver;
mod emotional;
mod gamification;
mod narrative;
mod observer;
mod per_user;
mod trace;
mod user;

pub use driver::{run, Settings};

use diana_bus::diana::{DianaInteraction, ServiceResponse};
use diana_bus::HandlerError;

/// The answer of service `name` to `interaction`: `data`, which must be a
/// JSON object.
fn reply(
    interaction: &DianaInteraction,
    name: &str,
    data: serde_json::Value,
) -> Result<ServiceResponse, HandlerError> {
    let serde_json::Value::Object(data) = data else {
        return Err(HandlerError::permanent("a service answers with an object"));
    };
    ServiceResponse::new(
        interaction.interaction_id(),
        interaction.user_id().get(),
        name,
        data,
    )
    .map_err(|error| HandlerError::permanent(error.to_string()))
}
