//! The Diana domain: the bot's events and Diana's, typed and validated,
//! with the JSON wire format the Python services speak.
//!
//! # The events
//!
//! - What users do ([`UserMessage`], [`CommandExecuted`],
//!   [`UserStartedBot`], [`ReactionAdded`]) and what the game makes of it
//!   ([`PointsAwarded`], [`NarrativeProgression`], [`PieceUnlocked`],
//!   [`MissionCompleted`], [`LevelUp`]).
//! - Diana's: [`DianaInterfaceRequested`], [`DianaActionExecuted`].
//! - The interaction flow of a coordinator: [`DianaInteraction`] fanned out
//!   to the services, one [`ServiceResponse`] per answering service, one
//!   [`DianaInteractionCompleted`] per interaction.
//!
//! # The interaction flow
//!
//! A [`Coordinator`] runs the flow on a [`Bus`](crate::Bus) in four steps:
//! it publishes a [`DianaInteraction`] to the services (responders of
//! `DianaInteraction` answering [`ServiceResponse`]), collects and
//! aggregates their answers within a deadline (who answered, who failed
//! after its retries, who timed out), coordinates the final response, and
//! publishes one [`DianaInteractionCompleted`]. See [`Coordinator`] and
//! the `diana_bot` example, which `diana-bus demo` also runs.
//!
//! Every event is keyed by its user ([`Event::key`](crate::Event::key) is
//! the user id), so one user's events are handled in publish order, and
//! [`Event::name`](crate::Event::name) is the Python class name. Tenants
//! are given at publish time with [`Meta::tenant`](crate::Meta::tenant).
//!
//! # Validity
//!
//! Fields are private. Constructors check the rules (a positive user id,
//! a non-empty command, action, interface type or service name, points not
//! negative, a level of at least 1) and return a [`DomainError`] naming the
//! event, the field and the [`Rule`] broken. Deserialization reads the
//! JSON into a raw struct and then calls the same constructor, so an
//! invalid event can be neither built nor decoded.
//!
//! # The wire format
//!
//! An event's JSON object has exactly the fields of its Python class, with
//! the same names and JSON types; unknown fields are refused. Integers are
//! `i64`. Timestamps are strings kept exactly as received, never parsed or
//! reformatted. An event serializes back to the fields it was read from;
//! a field with a default that was absent on input (`points_to_award`: 5,
//! `reward_points`: 0, `rewards`: `{}`) is written with that value, and
//! `"username": null` stays `null`. Object fields (`context`, `data`,
//! `rewards`, `result`, `responses`) are [`JsonObject`]s. An event's data
//! nests at most [`MAX_DATA_DEPTH`] levels, both ways. A map keyed by
//! numbers (a user's own event may have one) takes its keys only as
//! serde_json writes them: `"5"`, not `"05"` or `"+5"`, which would name
//! the same number twice.
//!
//! Between services an event travels in an envelope,
//! `{"event": "<Name>", "data": {...}}`. A [`WireRegistry`] decodes an
//! envelope by name into a [`DecodedEvent`], which can be downcast to its
//! type or published onto a [`Bus`](crate::Bus) as it; and it encodes
//! registered events. Register your own types by implementing
//! [`WireEvent`].
//!
//! # Examples
//!
//! A message from a Python service, for tenant 7, to the handler of that
//! tenant's messages:
//!
//! ```
//! use diana_bus::diana::{UserMessage, WireRegistry};
//! use diana_bus::{Bus, Context, HandlerResult, Meta, TenantId};
//! use std::sync::{Arc, Mutex};
//!
//! let bus = Bus::builder().workers(2).build()?;
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let log = seen.clone();
//! bus.subscriber::<UserMessage>()
//!     .tenant(TenantId(7))
//!     .subscribe(move |m: &UserMessage, ctx: &Context| -> HandlerResult {
//!         log.lock().unwrap().push((ctx.tenant(), ctx.key(), m.message().to_owned()));
//!         Ok(())
//!     });
//!
//! let registry = WireRegistry::diana();
//! let json = r#"{"event": "UserMessage",
//!                "data": {"user_id": 42, "message": "hola", "timestamp": "2025-08-05T10:00:00"}}"#;
//! let event = registry.decode(json)?;
//! event.publish(&bus, Meta::new().tenant(TenantId(7)))?;
//! bus.flush();
//! assert_eq!(*seen.lock().unwrap(), [(TenantId(7), 42, "hola".to_owned())]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// A JSON object, the type of the free-form fields (`context`, `data`,
/// `rewards`, `result`).
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// Implements [`Event`](crate::Event) (named by the type, keyed by
/// `user_id`) and [`WireEvent`] (read through `$fields` and the type's
/// `TryFrom<$fields>`, that is its constructor) for an event type.
macro_rules! wire_event {
    ($event:ident, $fields:ident) => {
        impl $crate::Event for $event {
            fn name(&self) -> &'static str {
                <Self as $crate::diana::WireEvent>::NAME
            }

            fn key(&self) -> Option<u64> {
                Some(self.user_id.key())
            }
        }

        impl $crate::diana::WireEvent for $event {
            const NAME: &'static str = stringify!($event);

            fn from_data(data: &serde_json::Value) -> Result<Self, $crate::diana::DomainError> {
                $crate::diana::decode_fields::<$fields>(
                    <Self as $crate::diana::WireEvent>::NAME,
                    data,
                )
                .and_then(Self::try_from)
            }
        }
    };
}

mod activity;
mod coordinator;
mod error;
mod fields;
mod interface;
mod json;
mod progress;
mod rules;
mod user_id;
mod wire;

pub use activity::{CommandExecuted, ReactionAdded, UserMessage, UserStartedBot};
pub use coordinator::{Coordinator, CoordinatorError, Outcome};
pub use error::{DomainError, Rule};
pub use fields::{decode_fields, MAX_DATA_DEPTH};
pub use interface::{
    DianaActionExecuted, DianaInteraction, DianaInteractionCompleted, DianaInterfaceRequested,
    ServiceResponse,
};
pub use progress::{LevelUp, MissionCompleted, NarrativeProgression, PieceUnlocked, PointsAwarded};
pub use user_id::UserId;
pub use wire::{DecodedEvent, WireEvent, WireRegistry};
