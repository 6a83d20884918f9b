#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod async_api;
mod bus;
mod caught;
mod context;
mod delivery;
pub mod diana;
mod envelope;
mod error;
mod event;
mod executor;
mod metrics;
mod park;
mod payload;
mod place;
mod registry;
mod reliability;
mod ring;
mod shard;
mod sync;

#[cfg(not(diana_bus_loom))]
pub use async_api::AsyncContext;
pub use async_api::{Expect, Gather, Gathered, Request, RequestError, Service};
pub use bus::{Backpressure, Bus, BusBuilder, ShutdownReport, SubscriberBuilder};
pub use bus::{MAX_CAPACITY, MAX_SHARDS, MAX_SLOTS, MAX_WORKERS};
pub use context::Context;
pub use delivery::{DeliveryReport, RunFailure};
pub use error::{ConfigError, HandlerError, HandlerResult, PublishError};
pub use event::{Event, EventId, Meta, TenantId};
pub use metrics::{LatencyHistogram, MetricsSnapshot, TypeMetrics};
pub use payload::{INLINE_ALIGN, INLINE_SIZE};
pub use registry::Subscription;
pub use reliability::dead_letter::DeadLetter;
pub use reliability::retry::RetryPolicy;

/// The building blocks the loom models in `loom-tests/` check directly.
/// Only built with `--cfg diana_bus_loom`; not part of the API.
#[cfg(diana_bus_loom)]
#[doc(hidden)]
pub mod model {
    pub use crate::async_api::timer::Timer;
    pub use crate::park::{Sleeper, WaitQueue, WaiterId};
    pub use crate::reliability::backlog::{BacklogGate, Closed};
    pub use crate::ring::{InSlot, PushError, Ring};
}
