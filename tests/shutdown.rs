//! Shutdown drains everything accepted; later publishes are refused.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::within;
use diana_bus::{Bus, Context, Event, HandlerResult, PublishError};

#[derive(Debug, PartialEq)]
struct Order(u64);
impl Event for Order {
    fn key(&self) -> Option<u64> {
        Some(self.0 % 16)
    }
}
struct Receipt;
impl Event for Receipt {}

fn counting(bus: &Bus, delay: Duration) -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    bus.subscribe(move |_: &Order, _: &Context| -> HandlerResult {
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        c.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    count
}

#[test]
fn shutdown_handles_every_accepted_event_then_refuses_with_the_event() {
    within(60, || {
        let bus = Bus::builder().workers(2).capacity(64).build().unwrap();
        let count = counting(&bus, Duration::from_micros(20));
        for i in 0..2000 {
            bus.publish(Order(i)).unwrap();
        }
        let report = bus.shutdown();
        assert!(report.joined);
        assert_eq!(count.load(Ordering::SeqCst), 2000);
        assert_eq!(
            (report.published, report.delivered, report.failed),
            (2000, 2000, 0)
        );
        assert!(bus.is_closed());
        match bus.publish(Order(5)) {
            Err(PublishError::Closed(order)) => assert_eq!(order, Order(5)),
            other => panic!("expected Closed, got {other:?}"),
        }
        assert!(bus.try_publish(Order(6)).unwrap_err().is_closed());
        assert_eq!(bus.metrics().rejected, 2);
        // a second shutdown is harmless, and joins nothing
        let again = bus.shutdown();
        assert_eq!((again.delivered, again.joined), (2000, false));
    });
}

#[test]
fn follow_ups_published_during_the_drain_are_handled_too() {
    within(60, || {
        let bus = Bus::builder().workers(2).capacity(8).build().unwrap();
        bus.subscribe(|_: &Order, ctx: &Context| -> HandlerResult {
            std::thread::sleep(Duration::from_micros(50));
            ctx.publish(Receipt);
            Ok(())
        });
        let receipts = Arc::new(AtomicU64::new(0));
        let r = receipts.clone();
        bus.subscribe(move |_: &Receipt, _: &Context| -> HandlerResult {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        for i in 0..500 {
            bus.publish(Order(i)).unwrap();
        }
        let report = bus.shutdown();
        assert_eq!(receipts.load(Ordering::SeqCst), 500);
        assert_eq!(report.published, 1000);
        assert_eq!(report.delivered, 1000);
    });
}

#[test]
fn dropping_the_last_handle_drains_and_joins() {
    within(60, || {
        let bus = Bus::builder().workers(2).capacity(16).build().unwrap();
        let count = counting(&bus, Duration::from_micros(20));
        let clone = bus.clone();
        for i in 0..300 {
            bus.publish(Order(i)).unwrap();
        }
        drop(bus);
        // a clone keeps the bus alive
        clone.publish(Order(300)).unwrap();
        drop(clone);
        assert_eq!(count.load(Ordering::SeqCst), 301);
    });
}

#[test]
fn shutdown_from_inside_a_handler_does_not_deadlock_or_lose_events() {
    within(60, || {
        let bus = Bus::builder().workers(1).capacity(64).build().unwrap();
        let count = counting(&bus, Duration::ZERO);
        let inner = bus.clone();
        let report = Arc::new(std::sync::Mutex::new(None));
        let r = report.clone();
        bus.subscribe(move |_: &Receipt, _: &Context| -> HandlerResult {
            *r.lock().unwrap() = Some(inner.shutdown());
            Ok(())
        });
        for i in 0..50 {
            bus.publish(Order(i)).unwrap();
        }
        bus.publish(Receipt).unwrap();
        common::wait_until(10, || report.lock().unwrap().is_some());
        assert!(!report.lock().unwrap().as_ref().unwrap().joined);
        // the drain finishes in the background; shutdown from here joins
        let outer = bus.shutdown();
        assert_eq!(count.load(Ordering::SeqCst), 50);
        assert_eq!(outer.published, 51);
    });
}

/// Counts its drops.
struct DropCount(Arc<AtomicU64>);
impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn shutdown_lets_go_of_handlers_that_hold_the_bus() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        let dropped = Arc::new(AtomicU64::new(0));
        let (held, counted) = (bus.clone(), DropCount(dropped.clone()));
        bus.subscribe(move |_: &Order, _: &Context| -> HandlerResult {
            let _keep = (&held, &counted);
            Ok(())
        });
        bus.publish(Order(1)).unwrap();
        assert!(bus.shutdown().joined);
        // The handler, and with it its bus handle, is gone: the cycle
        // through the bus no longer keeps the bus's memory and threads.
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(bus.subscribers::<Order>(), 0);
    });
}

#[test]
fn a_subscription_after_shutdown_is_let_go_at_once() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        bus.shutdown();
        let dropped = Arc::new(AtomicU64::new(0));
        let (held, counted) = (bus.clone(), DropCount(dropped.clone()));
        let subscription = bus.subscribe(move |_: &Order, _: &Context| -> HandlerResult {
            let _keep = (&held, &counted);
            Ok(())
        });
        // Nothing could ever call it: it is dropped, with its bus handle,
        // instead of holding the bus's memory in a cycle through it.
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(bus.subscribers::<Order>(), 0);
        assert!(!bus.unsubscribe(&subscription));
    });
}
