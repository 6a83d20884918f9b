//! The timed part of every streaming run, the same for every
//! implementation: publisher threads released together, then a wait for
//! the last delivery.

use std::ops::RangeInclusive;
use std::panic::resume_unwind;
use std::sync::Barrier;
use std::thread;

use super::latency;
use super::meter::Reading;
use super::runner::Timed;
use super::Shape;

/// Publishes the ids `1..=events` of `shape` from one thread per sender,
/// each a contiguous share of them, through its sender, which returns false
/// when it refuses an event (that thread then stops). Each sender is
/// dropped when its thread is done (closing the channels it owns), then
/// `settle` waits until every delivery is done.
///
/// The threads start before the clock does and wait at a barrier; the clock
/// starts when the barrier releases them and stops when `settle` returns.
pub fn run<S, F>(shape: &Shape, events: u64, senders: Vec<S>, settle: F) -> Timed
where
    S: FnMut(super::Message) -> bool + Send,
    F: FnOnce(),
{
    let publishers = senders.len();
    let barrier = Barrier::new(publishers + 1);
    let (start, accepted) = thread::scope(|scope| {
        let threads: Vec<_> = senders
            .into_iter()
            .enumerate()
            .map(|(publisher, mut send)| {
                let ids = share(events, publishers, publisher);
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let mut accepted = 0;
                    for id in ids {
                        if !send(shape.message(id)) {
                            break;
                        }
                        accepted += 1;
                    }
                    accepted
                })
            })
            .collect();
        barrier.wait();
        let start = Reading::now();
        let accepted: u64 = threads
            .into_iter()
            .map(|thread| thread.join().unwrap_or_else(|panic| resume_unwind(panic)))
            .sum();
        (start, accepted)
    });
    settle();
    Timed {
        window: start.window(),
        accepted,
        latency: latency::histogram(),
    }
}

/// The ids publisher `index` of `publishers` sends: shares of `1..=events`
/// that differ by at most one id.
pub fn share(events: u64, publishers: usize, index: usize) -> RangeInclusive<u64> {
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
