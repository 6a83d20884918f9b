//! No lost wake-up: a worker that parks on an empty ring is always woken
//! for a pushed event, and a publisher waiting on a full ring when the
//! worker frees it. Loom reports a deadlock (a thread parked forever, the
//! main thread joining it) if a wake-up can be lost.
#![cfg(diana_bus_loom)]

use diana_bus::model::{Ring, Sleeper, WaitQueue};
use loom::sync::atomic::{fence, Ordering};
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
/// fence is the loom build's claim fence, inside `push`; see `ring`,
/// "Memory orderings").
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

#[test]
fn a_publisher_waiting_on_a_full_ring_is_woken_when_it_drains() {
    loom::model(|| {
        // The full-ring wait of `Executor::push_blocking` against the
        // worker's pop, fence and notify in `Executor::drain`: the waiter
        // re-checks room (`room_until`, then `head`) after counting itself.
        let ring = Arc::new(Ring::<_>::new(2));
        let space = Arc::new(WaitQueue::default());
        ring.push(1).unwrap();
        ring.push(2).unwrap();
        let publisher = {
            let (ring, space) = (ring.clone(), space.clone());
            thread::spawn(move || space.wait_for(|| ring.push(3).ok()))
        };
        let mut got = Vec::new();
        // SAFETY: this thread is the ring's one consumer.
        unsafe { ring.pop_batch(&mut got, 2) };
        fence(Ordering::SeqCst);
        space.notify();
        publisher.join().unwrap();
        // SAFETY: as above.
        unsafe { ring.pop_batch(&mut got, 2) };
        assert_eq!(got, [1, 2, 3]);
    });
}

/// An async waiter (registers its waker, then re-checks) against the side
/// that makes room, fences and notifies, while another task's future
/// registers and is cancelled (`forget`), and the waiter, if it saw room,
/// takes its own waker back as a completed publish does. No wake-up is
/// lost, and the waiter count ends at zero (neither underflowed nor left
/// high).
#[test]
fn an_async_waiter_is_woken_while_other_futures_forget() {
    use diana_bus::model::WaiterId;
    use loom::sync::atomic::AtomicBool;

    struct Flag(AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    loom::model(|| {
        let space = Arc::new(WaitQueue::default());
        let room = Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
        let waiter = {
            let (space, room) = (space.clone(), room.clone());
            let waker = std::task::Waker::from(flag.clone());
            thread::spawn(move || {
                let id = WaiterId::unique();
                space.register(id, &waker);
                let saw = room.load(Ordering::Relaxed);
                if saw {
                    space.forget(id);
                }
                saw
            })
        };
        let other = {
            let space = space.clone();
            let waker = std::task::Waker::from(std::sync::Arc::new(Flag(AtomicBool::new(false))));
            thread::spawn(move || {
                let id = WaiterId::unique();
                space.register(id, &waker);
                space.forget(id);
            })
        };
        room.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        space.notify();
        let saw = waiter.join().unwrap();
        other.join().unwrap();
        if !saw {
            assert!(flag.0.load(Ordering::SeqCst), "lost wake-up");
        }
        assert!(!space.has_waiters(), "waiter count left high");
    });
}
