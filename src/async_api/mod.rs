//! The async face of the bus: awaitable publish, publish-and-wait,
//! request/reply, scatter/gather, and services.
//!
//! # Runtime
//!
//! Everything here is plain futures driven by wakers: the bus spawns no
//! runtime, and any executor (tokio, async-std, smol, a test's
//! `block_on`) can poll them. A publisher waiting for room leaves its
//! waker with the wait queue of what refused it: the full ring's or the
//! tenant quota's, which the workers notify after batches (see `park`), or
//! the backlog gate's, which the async subscriptions notify when they
//! lower it (see `reliability::backlog`).
//! A deadline is kept by the bus's own timer thread, which wakes the
//! waiting task (see `timer`), so timeouts need no timer from the
//! runtime, and come on time however busy the workers are.
//!
//! Do not block a sync handler on one of these futures (with a
//! `block_on`): its worker may be the one that must handle the event
//! waited for, and the wait would be for itself. From a sync handler,
//! publish with `ctx.publish`; an async handler may await them, but not
//! for an event that its own subscription handles with the same (tenant,
//! key), nor for more such events than its `concurrency` leaves room for:
//! the subscription runs one job per key at a time and at most
//! `concurrency` at once, so the awaited job would wait for its awaiter.
//!
//! # Cancel safety
//!
//! - [`crate::Bus::publish_async`] holds the event until it is accepted.
//!   Dropping the future before it completes drops the event unpublished;
//!   once it has completed the event is published. It is never half
//!   published: acceptance is one push, made inside one `poll`.
//! - [`crate::Bus::publish_and_wait`], [`crate::Bus::request`] and a
//!   [`Gather`] publish, then wait. Dropped while waiting, the event stays
//!   published and is handled in full; only the report or the answers are
//!   lost. (A request whose deadline passes while it waits for room is
//!   dropped unpublished, as when its future is dropped.)
//!
//! # Request/reply
//!
//! A responder ([`crate::Bus::respond`], [`crate::Bus::responder`]) is a
//! subscription to [`Request<Req, Resp>`], an event that carries the
//! request and the slot its answers go to, so responders get retries,
//! dead letters, tenants and per-key order like any handler. A request
//! waits for the first answer, a gather for every expected responder;
//! both learn of failures from the event's [`crate::DeliveryReport`].

#[cfg(all(test, not(diana_bus_loom)))]
mod counting_waker;
mod deadline;
mod gather;
// Async handlers hold the bus weakly; loom's `Arc` has no `Weak`.
#[cfg(not(diana_bus_loom))]
mod handler;
mod publish;
mod request;
mod service;
pub(crate) mod timer;

pub use gather::{Expect, Gather, Gathered, UNSUBSCRIBED};
#[cfg(not(diana_bus_loom))]
pub(crate) use handler::runs_handler_of;
#[cfg(not(diana_bus_loom))]
pub use handler::AsyncContext;
pub use request::{Request, RequestError};
pub use service::Service;
