//! A failing or panicking handler affects nothing else.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{within, Volatile};
use diana_bus::{Bus, Context, Event, HandlerError, HandlerResult, RetryPolicy, Subscription};

struct Reading(u64);
impl Event for Reading {
    fn key(&self) -> Option<u64> {
        Some(self.0 % 8)
    }
}

#[test]
fn panics_and_errors_are_caught_counted_and_isolated() {
    within(60, || {
        let bus = Bus::builder().workers(2).capacity(32).build().unwrap();
        bus.subscriber::<Reading>().name("flaky").subscribe(
            |r: &Reading, _: &Context| -> HandlerResult {
                match r.0 % 3 {
                    0 => panic!("reading {} is cursed", r.0),
                    1 => Err(HandlerError::transient("sensor busy")),
                    _ => Ok(()),
                }
            },
        );
        let steady = Arc::new(AtomicU64::new(0));
        let s = steady.clone();
        bus.subscribe(move |r: &Reading, _: &Context| -> HandlerResult {
            s.fetch_add(r.0, Ordering::Relaxed);
            Ok(())
        });
        const N: u64 = 3000;
        for i in 0..N {
            bus.publish(Reading(i)).unwrap();
        }
        bus.flush();
        assert_eq!(steady.load(Ordering::Relaxed), N * (N - 1) / 2);
        let metrics = bus.metrics();
        assert_eq!(metrics.panicked, N / 3);
        assert_eq!(metrics.failed, 2 * N / 3);
        assert_eq!(metrics.delivered, N + N / 3);
        // the workers survived: the bus still works
        bus.publish(Reading(2)).unwrap();
        bus.flush();
        assert_eq!(bus.metrics().delivered, N + N / 3 + 2);
    });
}

/// An event whose drop panics (every third one).
struct Fragile(u64);
impl Event for Fragile {}
impl Drop for Fragile {
    fn drop(&mut self) {
        if self.0.is_multiple_of(3) {
            panic!("fragile event {} broke on drop", self.0);
        }
    }
}

#[test]
fn an_event_whose_drop_panics_does_not_stop_its_worker() {
    within(30, || {
        // One worker, so a worker lost to the panic would hang the flush.
        let bus = Bus::builder().workers(1).shards(1).build().unwrap();
        let sum = Arc::new(AtomicU64::new(0));
        let s = sum.clone();
        bus.subscribe(move |f: &Fragile, _: &Context| -> HandlerResult {
            s.fetch_add(f.0, Ordering::Relaxed);
            Ok(())
        });
        const N: u64 = 100;
        for i in 0..N {
            bus.publish(Fragile(i)).ok().unwrap();
        }
        bus.flush();
        assert_eq!(sum.load(Ordering::Relaxed), N * (N - 1) / 2);
        let metrics = bus.metrics();
        assert_eq!((metrics.published, metrics.delivered), (N, N));
    });
}

/// An event whose `name` panics (every third one).
struct Nameless(u64);
impl Event for Nameless {
    fn name(&self) -> &'static str {
        if self.0.is_multiple_of(3) {
            panic!("nameless event {} has no name", self.0);
        }
        "Named"
    }
}

#[test]
fn an_event_whose_name_panics_is_handled_under_its_type_name() {
    within(30, || {
        // One worker, so a worker lost to the panic would hang the flush.
        let bus = Bus::builder().workers(1).shards(1).build().unwrap();
        let sum = Arc::new(AtomicU64::new(0));
        let s = sum.clone();
        bus.subscribe(move |n: &Nameless, _: &Context| -> HandlerResult {
            s.fetch_add(n.0, Ordering::Relaxed);
            // A failure logs the event's name.
            Err(HandlerError::permanent("logged by name"))
        });
        const N: u64 = 100;
        for i in 0..N {
            bus.publish(Nameless(i)).ok().unwrap();
        }
        bus.flush();
        assert_eq!(sum.load(Ordering::Relaxed), N * (N - 1) / 2);
        // The first event's name panicked when its metrics row was made:
        // the row carries the type's default name.
        let metrics = bus.metrics();
        assert_eq!(metrics.event("Nameless").map(|row| row.failed), Some(N));
        assert_eq!(metrics.failed, N);
        assert_eq!(bus.dead_letters().len(), N as usize);
    });
}

/// Panics when dropped (unless already unwinding).
struct BrittleState;
impl Drop for BrittleState {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a handler's state broke on drop");
        }
    }
}

#[test]
fn a_handler_whose_state_panics_on_drop_can_unsubscribe_itself() {
    within(30, || {
        // One worker: its batch holds the table the handler was in, so
        // the handler is dropped there, at the batch's end.
        let bus = Bus::builder().workers(1).shards(1).build().unwrap();
        let own = Arc::new(std::sync::Mutex::new(None::<Subscription>));
        let (b, o, state) = (bus.clone(), own.clone(), BrittleState);
        let subscription = bus.subscribe(move |_: &Reading, _: &Context| -> HandlerResult {
            let _state = &state;
            if let Some(me) = o.lock().unwrap().take() {
                b.unsubscribe(&me);
            }
            Ok(())
        });
        *own.lock().unwrap() = Some(subscription);
        bus.publish(Reading(1)).ok().unwrap();
        bus.flush();
        assert_eq!(bus.subscribers::<Reading>(), 0);
        // The worker went on: a new subscriber gets the next event.
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        bus.subscribe(move |r: &Reading, _: &Context| -> HandlerResult {
            s.fetch_add(r.0, Ordering::Relaxed);
            Ok(())
        });
        bus.publish(Reading(2)).ok().unwrap();
        bus.flush();
        assert_eq!(seen.load(Ordering::Relaxed), 2);
    });
}

#[test]
fn a_panic_whose_payload_panics_on_drop_fails_its_run() {
    within(30, || {
        // One worker, so a worker lost to the payload's drop would hang
        // the flush.
        let bus = Bus::builder().workers(1).shards(1).build().unwrap();
        bus.subscriber::<Reading>()
            .retry(RetryPolicy::none())
            .subscribe(|r: &Reading, _: &Context| -> HandlerResult {
                if r.0.is_multiple_of(2) {
                    std::panic::panic_any(Volatile);
                }
                Ok(())
            });
        const N: u64 = 10;
        for i in 0..N {
            bus.publish(Reading(i)).ok().unwrap();
        }
        bus.flush();
        let metrics = bus.metrics();
        assert_eq!(
            (metrics.delivered, metrics.panicked, metrics.dead_lettered),
            (N / 2, N / 2, N / 2)
        );
    });
}
