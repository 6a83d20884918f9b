//! The retry hand-off through the real `Bus`: a failed run is scheduled,
//! a worker picks it up, and `flush` waits until it has run. Zero pauses:
//! loom has no time, and a parked worker is only woken by events.
#![cfg(diana_bus_loom)]

use std::time::Duration;

use diana_bus::{Context, Event, HandlerError, HandlerResult, RetryPolicy};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;

struct Job;
impl Event for Job {}

#[test]
fn flush_waits_for_a_scheduled_retry() {
    loom::model(|| {
        let bus = loom_tests::loom_bus(1);
        let successes = Arc::new(AtomicUsize::new(0));
        let s = successes.clone();
        bus.subscriber::<Job>()
            .retry(RetryPolicy::fixed(2, Duration::ZERO))
            .subscribe(move |_: &Job, ctx: &Context| -> HandlerResult {
                if ctx.attempt() == 1 {
                    return Err(HandlerError::transient("once"));
                }
                s.fetch_add(1, Ordering::Relaxed);
                Ok(())
            });
        bus.publish(Job).unwrap();
        bus.flush();
        assert_eq!(
            successes.load(Ordering::Relaxed),
            1,
            "flush returned before the retry ran"
        );
        let metrics = bus.metrics();
        assert_eq!((metrics.delivered, metrics.retried), (1, 1));
        bus.shutdown();
    });
}

/// Held keys: a strict-order handler fails on the first of two events of
/// one key; the second must wait behind the retry, and flush must wait for
/// both. Two workers, so the retry may run on the one that does not hold
/// the shard while the other defers, and a release may race a deferral.
///
/// Three threads (main and two workers) make a large model: one
/// preemption keeps it within CI's budget, and still finds the lost
/// release when a deferral stops checking whether its key was released.
#[test]
fn a_held_key_releases_its_queue_in_order() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(1);
    model.check(|| {
        let bus = loom_tests::loom_bus(2);
        let runs = Arc::new(loom::sync::Mutex::new(Vec::new()));
        let r = runs.clone();
        bus.subscriber::<Keyed>()
            .strict_order(true)
            .retry(RetryPolicy::fixed(2, Duration::ZERO))
            .subscribe(move |k: &Keyed, ctx: &Context| -> HandlerResult {
                r.lock().unwrap().push((k.0, ctx.attempt()));
                if k.0 == 1 && ctx.attempt() == 1 {
                    return Err(HandlerError::transient("once"));
                }
                Ok(())
            });
        bus.publish(Keyed(1)).unwrap();
        bus.publish(Keyed(2)).unwrap();
        bus.flush();
        assert_eq!(*runs.lock().unwrap(), [(1, 1), (1, 2), (2, 1)]);
        bus.shutdown();
    });
}

struct Keyed(u32);
impl Event for Keyed {
    fn key(&self) -> Option<u64> {
        Some(7)
    }
}
