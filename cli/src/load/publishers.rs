//! The timed part of every run, the same for every implementation:
//! publisher threads released together, then a wait for the last delivery.

use std::ops::RangeInclusive;
use std::panic::resume_unwind;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use super::Message;

/// What one timed run did.
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    /// From the publishers' release to the return of `settle`.
    pub elapsed: Duration,
    /// Events `send` accepted.
    pub accepted: u64,
}

/// Publishes the ids `1..=events` from `publishers` threads, each a
/// contiguous share of them, through `send`, which returns false when it
/// refuses an event (that thread then stops). `send` is dropped once every
/// publisher is done, then `settle` waits until every delivery is done.
///
/// The threads start before the clock does and wait at a barrier; the clock
/// starts when the barrier releases them and stops when `settle` returns.
pub fn run<S, F>(publishers: usize, events: u64, keys: u64, send: S, settle: F) -> Timed
where
    S: Fn(Message) -> bool + Sync,
    F: FnOnce(),
{
    let barrier = Barrier::new(publishers + 1);
    let (start, accepted) = thread::scope(|scope| {
        let threads: Vec<_> = (0..publishers)
            .map(|publisher| {
                let ids = share(events, publishers, publisher);
                let (send, barrier) = (&send, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let mut accepted = 0;
                    for id in ids {
                        if !send(Message::new(id, keys)) {
                            break;
                        }
                        accepted += 1;
                    }
                    accepted
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let accepted: u64 = threads
            .into_iter()
            .map(|thread| thread.join().unwrap_or_else(|panic| resume_unwind(panic)))
            .sum();
        (start, accepted)
    });
    // Closes the channels a `send` may own, so their consumers can finish.
    drop(send);
    settle();
    Timed {
        elapsed: start.elapsed(),
        accepted,
    }
}

/// The ids publisher `index` of `publishers` sends: shares of `1..=events`
/// that differ by at most one id.
fn share(events: u64, publishers: usize, index: usize) -> RangeInclusive<u64> {
    let bound = |i: usize| (u128::from(events) * i as u128 / publishers as u128) as u64;
    bound(index) + 1..=bound(index + 1)
}

#[cfg(test)]
mod tests {
    // Paths instead of a `use`: the bench includes this file with cfg(test)
    // set but no test harness, which drops the test and would leave the
    // import unused.
    #[test]
    fn shares_cover_every_id_once() {
        for (events, publishers) in [(10, 1), (10, 3), (2, 4), (0, 2)] {
            let ids: Vec<u64> = (0..publishers)
                .flat_map(|p| super::share(events, publishers, p))
                .collect();
            assert_eq!(ids, (1..=events).collect::<Vec<_>>());
        }
    }
}
