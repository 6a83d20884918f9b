//! The timed part of every round-trip run, the same for every
//! implementation: on the calling thread, send ping `id`, wait for its
//! pong, record the round trip, and on to the next.

use super::latency;
use super::meter::Reading;
use super::runner::Timed;
use super::{clock, Message, Shape};

/// Runs round trips for the ids `1..=events` of `shape` through `ask`,
/// which sends a ping and returns the id of the pong that came back (None
/// when the implementation refused or closed: the run stops there). Then
/// `ask` is dropped (closing the channels it owns) and `settle` waits for
/// the implementation to wind down; the clock stops when it returns.
pub fn run<A, F>(shape: &Shape, events: u64, mut ask: A, settle: F) -> Timed
where
    A: FnMut(Message) -> Option<u64>,
    F: FnOnce(),
{
    let mut round_trips = latency::histogram();
    let mut accepted = 0;
    let start = Reading::now();
    for id in 1..=events {
        let sent = clock::now();
        if ask(shape.message(id)) != Some(id) {
            break;
        }
        round_trips.saturating_record(clock::since(sent).max(1));
        accepted += 1;
    }
    drop(ask);
    settle();
    Timed {
        window: start.window(),
        accepted,
        latency: round_trips,
    }
}
