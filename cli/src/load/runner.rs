//! What every implementation under load offers: one timed, checked run.

use std::fmt;
use std::time::Duration;

use super::publishers::Timed;
use super::{Mismatch, Tally};

/// An implementation set up for one [`super::Shape`].
pub trait Runner {
    /// Its name in reports and benchmark ids.
    fn name(&self) -> &'static str;

    /// Moves `events` events through the shape once, and returns the wall
    /// clock from the first publish to the last delivery, after checking
    /// that every handler saw every event exactly once.
    fn run(&mut self, events: u64) -> Result<Duration, RunError>;
}

/// Why a run does not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunError {
    /// The implementation refused events (a closed bus, a vanished consumer).
    Refused {
        /// Events it accepted.
        accepted: u64,
        /// Events published.
        events: u64,
    },
    /// A handler's checksum is wrong.
    Checksum(Mismatch),
    /// The implementation's own count of handler runs is not the expected one.
    Deliveries {
        /// Handler runs the shape implies.
        expected: u64,
        /// Handler runs the implementation counted.
        counted: u64,
    },
}

impl From<Mismatch> for RunError {
    fn from(mismatch: Mismatch) -> Self {
        RunError::Checksum(mismatch)
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Refused { accepted, events } => {
                write!(f, "only {accepted} of {events} events were accepted")
            }
            RunError::Checksum(mismatch) => mismatch.fmt(f),
            RunError::Deliveries { expected, counted } => {
                write!(f, "{counted} deliveries counted, expected {expected}")
            }
        }
    }
}

impl std::error::Error for RunError {}

/// The verdict on one timed run: every event accepted and every handler's
/// checksum right. Settling also zeroes the checksums for the next run, so
/// it happens whatever the outcome.
pub fn verdict(timed: Timed, events: u64, tally: &Tally) -> Result<Duration, RunError> {
    let checksums = tally.settle(events);
    if timed.accepted != events {
        return Err(RunError::Refused {
            accepted: timed.accepted,
            events,
        });
    }
    checksums?;
    Ok(timed.elapsed)
}
