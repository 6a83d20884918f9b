//! Idempotent republish: an explicit id seen recently for the same tenant
//! is acknowledged and not handled again.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, within, Gate};
use diana_bus::{Backpressure, Bus, Context, Event, EventId, HandlerResult, Meta, TenantId};

#[derive(Debug, PartialEq)]
struct Payment(u64);
impl Event for Payment {}
struct Refund(u64);
impl Event for Refund {}

fn counting(bus: &Bus) -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    bus.subscribe(move |p: &Payment, _: &Context| -> HandlerResult {
        c.fetch_add(p.0, Ordering::SeqCst);
        Ok(())
    });
    count
}

#[test]
fn a_republished_id_is_acknowledged_but_handled_once_per_tenant() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        let total = counting(&bus);
        let meta = Meta::new().id(EventId(42)).tenant(TenantId(1));
        assert_eq!(bus.publish_with(Payment(10), meta), Ok(EventId(42)));
        assert_eq!(bus.publish_with(Payment(10), meta), Ok(EventId(42)));
        // the same id in another tenant is another event
        bus.publish_with(
            Payment(100),
            Meta::new().id(EventId(42)).tenant(TenantId(2)),
        )
        .unwrap();
        // events without an explicit id are never deduplicated
        bus.publish(Payment(1000)).unwrap();
        bus.publish(Payment(1000)).unwrap();
        bus.flush();
        assert_eq!(total.load(Ordering::SeqCst), 10 + 100 + 2000);
        let m = bus.metrics();
        assert_eq!((m.published, m.deduplicated), (4, 1));
    });
}

#[test]
fn ids_leave_the_window_after_its_time_to_live() {
    within(30, || {
        let bus = Bus::builder()
            .workers(1)
            .dedup_window(100, Duration::from_millis(20))
            .build()
            .unwrap();
        let total = counting(&bus);
        bus.publish_with(Payment(1), Meta::new().id(EventId(7)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(40));
        bus.publish_with(Payment(1), Meta::new().id(EventId(7)))
            .unwrap();
        bus.flush();
        assert_eq!(total.load(Ordering::SeqCst), 2);
        let off = Bus::builder()
            .workers(1)
            .dedup_window(0, Duration::from_secs(60))
            .build()
            .unwrap();
        let total = counting(&off);
        for _ in 0..3 {
            off.publish_with(Payment(1), Meta::new().id(EventId(7)))
                .unwrap();
        }
        off.flush();
        assert_eq!(
            total.load(Ordering::SeqCst),
            3,
            "size 0 turns deduplication off"
        );
    });
}

#[test]
fn a_refused_publish_does_not_burn_its_id() {
    within(30, || {
        let bus = Bus::builder()
            .workers(1)
            .shards(1)
            .capacity(2)
            .backpressure(Backpressure::Reject)
            .build()
            .unwrap();
        let gate = Gate::default();
        let entered = Arc::new(AtomicU64::new(0));
        let (g, e) = (gate.clone(), entered.clone());
        bus.subscribe(move |_: &Refund, _: &Context| -> HandlerResult {
            e.fetch_add(1, Ordering::SeqCst);
            g.wait();
            Ok(())
        });
        let total = counting(&bus);
        bus.publish(Refund(0)).unwrap();
        wait_until(10, || entered.load(Ordering::SeqCst) == 1);
        // Refund(0) keeps its slot while its handler runs: with one more,
        // the ring of 2 is full
        bus.publish(Refund(1)).unwrap();
        let meta = Meta::new().id(EventId(9));
        let refused = bus.publish_with(Payment(5), meta).unwrap_err();
        assert!(refused.is_full());
        gate.open();
        bus.flush();
        assert_eq!(bus.publish_with(refused.into_inner(), meta), Ok(EventId(9)));
        bus.flush();
        assert_eq!(
            total.load(Ordering::SeqCst),
            5,
            "the retried publish was handled"
        );
        assert_eq!(bus.metrics().deduplicated, 0);
    });
}

#[test]
fn follow_ups_with_explicit_ids_are_deduplicated_too() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        bus.subscribe(|r: &Refund, ctx: &Context| -> HandlerResult {
            for _ in 0..3 {
                ctx.publish_with(Payment(r.0), Meta::new().id(EventId(u128::from(r.0))));
            }
            Ok(())
        });
        let total = counting(&bus);
        bus.publish(Refund(5)).unwrap();
        bus.publish(Refund(6)).unwrap();
        bus.flush();
        assert_eq!(total.load(Ordering::SeqCst), 11);
        assert_eq!(bus.metrics().deduplicated, 4);
    });
}

#[test]
fn a_closed_bus_refuses_a_republished_id_as_closed() {
    let bus = Bus::builder().workers(1).build().unwrap();
    bus.publish_with(Payment(1), Meta::new().id(EventId(7)))
        .unwrap();
    bus.shutdown();
    let rejected = bus.metrics().rejected;
    match bus.publish_with(Payment(1), Meta::new().id(EventId(7))) {
        Err(diana_bus::PublishError::Closed(Payment(1))) => {}
        other => panic!("a closed bus answered {other:?}"),
    }
    assert_eq!(bus.metrics().rejected, rejected + 1);
}
