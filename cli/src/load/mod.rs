//! Load profiles and the runners that drive them, on diana-bus and on
//! crossbeam-channel.
//!
//! A run publishes ids `1..=events` from the profile's publisher threads;
//! every handler folds each id it sees into its own checksum, and the run
//! only counts if each checksum is the sum of all ids. The clock runs from
//! the moment the publishers are released to the moment every delivery is
//! done.
//!
//! This module needs nothing but `diana_bus` and `crossbeam_channel`: the
//! criterion bench (`benches/profiles.rs`) includes it with `#[path]`, so
//! the CLI and the bench drive the very same code. Its files refer to each
//! other through `super::`, never `crate::`, for that reason.

mod crossbeam;
mod diana;
mod message;
mod profile;
mod publishers;
mod runner;
mod tally;

pub use crossbeam::CrossbeamRunner;
pub use diana::DianaRunner;
pub use message::Message;
pub use profile::{Profile, Shape, PROFILES};
pub use runner::{RunError, Runner};
pub use tally::{Mismatch, Tally};
