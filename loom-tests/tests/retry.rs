//! The retry hand-off through the real `Bus`: a failed run is scheduled,
//! a worker picks it up, and `flush` waits until it has run. Zero pauses:
//! loom has no time, and a parked worker is only woken by events.
#![cfg(diana_bus_loom)]

use std::time::Duration;

use diana_bus::{Bus, Context, Event, HandlerError, HandlerResult, RetryPolicy};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;

struct Job;
impl Event for Job {}

#[test]
fn flush_waits_for_a_scheduled_retry() {
    loom::model(|| {
        let bus = Bus::builder()
            .workers(1)
            .shards(1)
            .capacity(2)
            .build()
            .unwrap();
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
