//! Full rings: try_publish, Reject, Block, and publishing from handlers.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{wait_until, within, Gate};
use diana_bus::{Backpressure, Bus, Context, Event, HandlerResult, PublishError};

#[derive(Debug, PartialEq)]
struct Job(u64);
impl Event for Job {}

/// A one-worker, one-shard bus whose handler holds the worker at `gate`
/// for the first event; returns the bus once its ring of 4 is full: the
/// first event keeps its slot while its handler runs, three more wait.
fn stalled_bus(backpressure: Backpressure, gate: &Gate, handled: &Arc<AtomicU64>) -> Bus {
    let bus = Bus::builder()
        .workers(1)
        .shards(1)
        .capacity(4)
        .backpressure(backpressure)
        .build()
        .unwrap();
    let entered = Arc::new(AtomicU64::new(0));
    let (gate, handled, e) = (gate.clone(), handled.clone(), entered.clone());
    bus.subscribe(move |_: &Job, _: &Context| -> HandlerResult {
        e.fetch_add(1, Ordering::SeqCst);
        gate.wait();
        handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    bus.publish(Job(0)).unwrap();
    // the worker runs Job(0) in its slot and waits at the gate
    wait_until(10, || entered.load(Ordering::SeqCst) == 1);
    for i in 1..=3 {
        bus.try_publish(Job(i)).unwrap();
    }
    bus
}

#[test]
fn try_publish_on_a_full_ring_returns_the_event() {
    within(30, || {
        let (gate, handled) = (Gate::default(), Arc::new(AtomicU64::new(0)));
        let bus = stalled_bus(Backpressure::Block, &gate, &handled);
        match bus.try_publish(Job(99)) {
            Err(PublishError::Full(job)) => assert_eq!(job, Job(99)),
            other => panic!("expected Full(Job(99)), got {other:?}"),
        }
        assert_eq!(bus.metrics().rejected, 1);
        gate.open();
        bus.flush();
        assert_eq!(handled.load(Ordering::SeqCst), 4);
    });
}

#[test]
fn reject_policy_refuses_publish_on_a_full_ring() {
    within(30, || {
        let (gate, handled) = (Gate::default(), Arc::new(AtomicU64::new(0)));
        let bus = stalled_bus(Backpressure::Reject, &gate, &handled);
        let refused = bus.publish(Job(7)).unwrap_err();
        assert!(refused.is_full());
        assert_eq!(refused.into_inner(), Job(7));
        gate.open();
        bus.flush();
        bus.publish(Job(8)).unwrap();
        bus.flush();
        assert_eq!(handled.load(Ordering::SeqCst), 5);
    });
}

#[test]
fn block_policy_waits_for_room_then_publishes() {
    within(30, || {
        let (gate, handled) = (Gate::default(), Arc::new(AtomicU64::new(0)));
        let bus = stalled_bus(Backpressure::Block, &gate, &handled);
        let publisher = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.publish(Job(5)).is_ok())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !publisher.is_finished(),
            "publish must wait while the ring is full"
        );
        gate.open();
        assert!(publisher.join().unwrap());
        bus.flush();
        assert_eq!(handled.load(Ordering::SeqCst), 5);
    });
}

#[test]
fn a_blocked_publisher_gets_closed_when_the_bus_shuts_down() {
    within(30, || {
        let (gate, handled) = (Gate::default(), Arc::new(AtomicU64::new(0)));
        let bus = stalled_bus(Backpressure::Block, &gate, &handled);
        let publisher = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.publish(Job(5)))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        let closer = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.shutdown())
        };
        match publisher.join().unwrap() {
            Err(PublishError::Closed(job)) => assert_eq!(job, Job(5)),
            other => panic!("expected Closed(Job(5)), got {other:?}"),
        }
        gate.open();
        let report = closer.join().unwrap();
        assert_eq!(handled.load(Ordering::SeqCst), 4);
        assert_eq!((report.published, report.delivered), (4, 4));
    });
}

struct Burst(u64);
impl Event for Burst {}
struct Spark(u64);
impl Event for Spark {}

#[test]
fn handlers_publish_into_their_own_full_ring_without_deadlock() {
    within(30, || {
        // one worker, a ring of 4: every follow-up lands in the worker's own
        // full ring, which only that worker could drain
        let bus = Bus::builder()
            .workers(1)
            .shards(1)
            .capacity(4)
            .build()
            .unwrap();
        bus.subscribe(|b: &Burst, ctx: &Context| -> HandlerResult {
            for i in 0..b.0 {
                ctx.publish(Spark(i));
            }
            Ok(())
        });
        let sum = Arc::new(AtomicU64::new(0));
        let s = sum.clone();
        bus.subscribe(move |spark: &Spark, _: &Context| -> HandlerResult {
            s.fetch_add(spark.0 + 1, Ordering::Relaxed);
            Ok(())
        });
        for _ in 0..10 {
            bus.publish(Burst(100)).unwrap();
        }
        bus.flush();
        assert_eq!(sum.load(Ordering::Relaxed), 10 * (100 * 101 / 2));
        assert_eq!(bus.metrics().published, 10 + 1000);
    });
}

#[test]
fn a_blocking_bus_publish_from_a_handler_does_not_wait_on_its_own_worker() {
    within(30, || {
        let bus = Bus::builder()
            .workers(1)
            .shards(1)
            .capacity(2)
            .build()
            .unwrap();
        let inner = bus.clone();
        bus.subscribe(move |b: &Burst, _: &Context| -> HandlerResult {
            for i in 0..b.0 {
                inner.publish(Spark(i)).expect("the bus is open");
            }
            Ok(())
        });
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        bus.subscribe(move |_: &Spark, _: &Context| -> HandlerResult {
            c.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        bus.publish(Burst(50)).unwrap();
        wait_until(10, || count.load(Ordering::Relaxed) == 50);
        // the handler holds a Bus clone: shut down explicitly
        bus.shutdown();
    });
}
