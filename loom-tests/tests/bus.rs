//! The executor's protocols through the real `Bus`: subscribe and
//! unsubscribe racing dispatch (batch quiescence), and the shutdown drain.
//! Sizes are loom-small: one worker, one shard, a ring of two; the main
//! thread races the bus's own worker thread.
#![cfg(diana_bus_loom)]

use diana_bus::{Bus, Context, Event, HandlerResult};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;

struct Ping;
impl Event for Ping {}
struct Echo;
impl Event for Echo {}

/// A small bus whose Ping handler publishes an Echo, and the count of
/// Echoes handled (Relaxed: the bus must order it for its readers).
fn echoing_bus() -> (Bus, Arc<AtomicUsize>) {
    let bus = loom_tests::loom_bus(1);
    let echoes = Arc::new(AtomicUsize::new(0));
    bus.subscribe(|_: &Ping, ctx: &Context| -> HandlerResult {
        ctx.publish(Echo);
        Ok(())
    });
    let e = echoes.clone();
    bus.subscribe(move |_: &Echo, _: &Context| -> HandlerResult {
        e.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    (bus, echoes)
}

#[test]
fn an_unsubscribed_handler_is_idle_and_never_runs_again() {
    loom::model(|| {
        let bus = loom_tests::loom_bus(1);
        let running = Arc::new(AtomicBool::new(false));
        let returned = Arc::new(AtomicBool::new(false));
        let late_calls = Arc::new(AtomicUsize::new(0));
        let (r, done, late) = (running.clone(), returned.clone(), late_calls.clone());
        let sub = bus.subscribe(move |_: &Ping, _: &Context| -> HandlerResult {
            r.store(true, Ordering::SeqCst);
            if done.load(Ordering::SeqCst) {
                late.fetch_add(1, Ordering::SeqCst);
            }
            r.store(false, Ordering::SeqCst);
            Ok(())
        });
        // the worker may be anywhere in dispatching this while we unsubscribe
        bus.publish(Ping).unwrap();
        assert!(bus.unsubscribe(&sub));
        assert!(
            !running.load(Ordering::SeqCst),
            "the handler is still running"
        );
        returned.store(true, Ordering::SeqCst);
        bus.publish(Ping).unwrap();
        bus.shutdown();
        assert_eq!(
            late_calls.load(Ordering::SeqCst),
            0,
            "called after unsubscribe returned"
        );
    });
}

#[test]
fn an_event_published_after_subscribe_returned_is_delivered() {
    loom::model(|| {
        let bus = loom_tests::loom_bus(1);
        // the worker may be dispatching this one, with the old table, while
        // we subscribe
        bus.publish(Echo).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        bus.subscribe(move |_: &Ping, _: &Context| -> HandlerResult {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        bus.publish(Ping).unwrap();
        bus.shutdown();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn shutdown_drains_every_accepted_event_and_its_follow_ups() {
    loom::model(|| {
        let (bus, echoes) = echoing_bus();
        // races the worker: it may take Ping before, during or after close
        bus.publish(Ping).unwrap();
        let report = bus.shutdown();
        assert!(report.joined);
        assert_eq!(
            echoes.load(Ordering::Relaxed),
            1,
            "an accepted event was lost"
        );
        assert_eq!((report.published, report.delivered), (2, 2));
        assert!(bus.try_publish(Ping).unwrap_err().is_closed());
    });
}

#[test]
fn flush_returns_after_the_handlers_and_their_follow_ups_ran() {
    loom::model(|| {
        let (bus, echoes) = echoing_bus();
        bus.publish(Ping).unwrap();
        bus.flush();
        // Relaxed: flush itself must order the handler's effects before it
        // returns.
        assert_eq!(echoes.load(Ordering::Relaxed), 1, "flush returned early");
        assert_eq!(bus.metrics().delivered, 2);
        bus.shutdown();
    });
}
