//! Load profiles and the runners that drive them: diana-bus, its peers
//! (crossbeam-channel, flume, kanal, thingbuf, tokio's mpsc and broadcast, std's
//! sync_channel, the disruptor crate, and for the Diana flow tokio tasks)
//! and the direct-call floor.
//!
//! A streaming run publishes ids `1..=events` from the profile's publisher
//! threads; every handler folds each id it sees into its own checksum, and
//! the run only counts if each checksum is that of all ids (see `tally`).
//! The clock runs from the moment the publishers are released to the
//! moment every delivery is done. One event in [`SAMPLE_EVERY`] carries
//! its publish time, and its handler records the latency. A round-trip run times every ping
//! from its publish to the arrival of its pong. A flow run has users run
//! Diana interactions ids `1..=events`, each through four services and
//! one completion, and times every interaction from its request to its
//! completion; it only counts if every service answered every interaction
//! once and every interaction completed once (see [`flow`]).
//!
//! This module needs nothing but `diana_bus` and the peer crates: the
//! criterion bench (`benches/profiles.rs`) includes it with `#[path]`, so
//! the CLI and the bench drive the very same code. Its files refer to each
//! other through `super::`, never `crate::`, for that reason.

mod clock;
mod diana;
mod direct;
mod dispatch;
mod flow;
mod handlers;
mod latency;
mod message;
pub mod meter;
mod peers;
mod profile;
mod publishers;
mod reply;
mod round_trip;
mod runner;
mod tally;
mod typed;
mod users;

pub use diana::DianaRunner;
pub use direct::DirectRunner;
pub use dispatch::Dispatch;
pub use flow::{Flow, SERVICES};
pub use handlers::Handlers;
pub use latency::{histogram, merge, Latencies};
pub use message::{Message, Pong, SAMPLE_EVERY};
pub use peers::{Peer, Yield, PEERS};
pub use profile::{Pattern, Profile, Shape, PROFILES};
pub use reply::Reply;
pub use runner::{RunError, Runner, Sample};
pub use tally::{Mismatch, Tally};
pub use typed::MAX_TYPES;
pub use users::User;
