//! No lost wake-up: a worker that parks on an empty ring is always woken
//! for a pushed event. Loom reports a deadlock (the worker parked forever,
//! the main thread joining it) if a wake-up can be lost.
#![cfg(diana_bus_loom)]

use diana_bus::model::{Ring, Sleeper};
use loom::sync::Arc;
use loom::thread;

/// The worker side, as `executor::run_worker` does it: pop, announce
/// sleep, re-check, park.
fn worker(ring: Arc<Ring<u32>>, sleeper: Arc<Sleeper>, expected: usize) -> Vec<u32> {
    sleeper.register_current();
    let mut got = Vec::new();
    while got.len() < expected {
        // SAFETY: this thread is the ring's one consumer.
        if unsafe { ring.pop_batch(&mut got, 2) } > 0 {
            continue;
        }
        sleeper.prepare();
        if !ring.is_empty() {
            sleeper.cancel();
            // as the executor does: the push may still be being written
            thread::yield_now();
            continue;
        }
        sleeper.park(std::time::Duration::MAX);
    }
    got
}

/// The producer side, as `Executor::push` and `after_push` do it (the
/// fence is the ring's claim fence, inside `push`).
fn publish(ring: &Ring<u32>, sleeper: &Sleeper, value: u32) {
    ring.push(value).unwrap();
    sleeper.wake_if_sleeping();
}

#[test]
fn one_producer_always_wakes_the_parked_worker() {
    loom::model(|| {
        let ring = Arc::new(Ring::<_>::new(2));
        let sleeper = Arc::new(Sleeper::default());
        let consumer = {
            let (ring, sleeper) = (ring.clone(), sleeper.clone());
            thread::spawn(move || worker(ring, sleeper, 1))
        };
        publish(&ring, &sleeper, 1);
        assert_eq!(consumer.join().unwrap(), [1]);
    });
}

#[test]
fn two_producers_always_wake_the_parked_worker() {
    loom::model(|| {
        let ring = Arc::new(Ring::<_>::new(2));
        let sleeper = Arc::new(Sleeper::default());
        let consumer = {
            let (ring, sleeper) = (ring.clone(), sleeper.clone());
            thread::spawn(move || worker(ring, sleeper, 2))
        };
        let other = {
            let (ring, sleeper) = (ring.clone(), sleeper.clone());
            thread::spawn(move || publish(&ring, &sleeper, 2))
        };
        publish(&ring, &sleeper, 1);
        other.join().unwrap();
        let mut got = consumer.join().unwrap();
        got.sort();
        assert_eq!(got, [1, 2]);
    });
}
