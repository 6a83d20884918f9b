//! What every implementation under load offers: one timed, checked run.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::latency;
use super::meter::Window;
use super::{Handlers, Mismatch, Pattern};

/// An implementation set up for one [`super::Shape`].
pub trait Runner {
    /// Its name in reports and benchmark ids.
    fn name(&self) -> &'static str;

    /// Moves `events` events (a flow's interactions) through the shape
    /// once, and returns what the run took, after checking that every
    /// handler saw every event exactly once.
    fn run(&mut self, events: u64) -> Result<Sample, RunError>;
}

/// What one checked run took.
#[derive(Clone, Debug)]
pub struct Sample {
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
    /// Process CPU time over the same window.
    pub cpu: Duration,
    /// Process heap allocations over the same window (0 unless the host
    /// counts them: see [`super::meter::ALLOCATIONS`]).
    pub allocations: u64,
    /// Nanoseconds from publish to handler for the sampled events of a
    /// stream, or of every round trip, or from request to completion of
    /// every interaction of a flow.
    pub latency: Histogram<u64>,
}

/// The timed part of a run, before its verdict.
#[derive(Clone, Debug)]
pub struct Timed {
    /// Wall clock, CPU and allocations from the first publish to the last
    /// delivery.
    pub window: Window,
    /// Events the implementation accepted (or, for round trips, answered;
    /// for flows, completed).
    pub accepted: u64,
    /// Latencies the publisher recorded (round trips, interactions); the
    /// handlers' own samples are added by [`verdict`].
    pub latency: Histogram<u64>,
}

/// Why a run does not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunError {
    /// The implementation refused events (a closed bus, a vanished consumer)
    /// or a round trip got no right answer.
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
    /// Interactions of a flow completed without an answer from every
    /// service (one failed, or missed the deadline).
    Incomplete {
        /// Interactions completed without every answer.
        interactions: u64,
        /// Interactions run.
        events: u64,
    },
    /// The async runtime that drives a flow's users did not start.
    Runtime(String),
    /// The implementation has no way to run this pattern (a bare queue has
    /// no flow); `diana-bus run` never asks it to.
    Unsupported {
        /// The implementation.
        implementation: &'static str,
        /// The pattern asked for.
        pattern: Pattern,
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
            RunError::Incomplete {
                interactions,
                events,
            } => write!(
                f,
                "{interactions} of {events} interactions completed without every service's answer"
            ),
            RunError::Runtime(error) => write!(f, "the async runtime did not start: {error}"),
            RunError::Unsupported {
                implementation,
                pattern,
            } => write!(f, "{implementation} cannot run a {} load", pattern.name()),
        }
    }
}

impl std::error::Error for RunError {}

/// The verdict on one timed run: every event accepted and every handler's
/// checksum right. Settling also empties the handlers for the next run, so
/// it happens whatever the outcome.
pub fn verdict(timed: Timed, events: u64, handlers: &Handlers) -> Result<Sample, RunError> {
    let (checksums, sampled) = handlers.settle(events);
    if timed.accepted != events {
        return Err(RunError::Refused {
            accepted: timed.accepted,
            events,
        });
    }
    checksums?;
    let mut latency = timed.latency;
    latency::merge(&mut latency, &sampled);
    Ok(Sample {
        elapsed: timed.window.elapsed,
        cpu: timed.window.cpu,
        allocations: timed.window.allocations,
        latency,
    })
}
