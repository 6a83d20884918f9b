//! Per-tenant quotas keep one noisy tenant from filling the rings for all.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, within, Gate};
use diana_bus::{
    Backpressure, Bus, ConfigError, Context, Event, HandlerResult, Meta, PublishError, TenantId,
};

#[derive(Debug, PartialEq)]
struct Msg(u64);
impl Event for Msg {}
struct Echo;
impl Event for Echo {}

const NOISY: TenantId = TenantId(1);
const QUIET: TenantId = TenantId(2);

/// A one-worker bus with a quota of 2 whose worker is held at `gate` by
/// the noisy tenant's first event (which counts until its batch ends).
fn held_bus(backpressure: Backpressure, gate: &Gate) -> (Bus, Arc<AtomicU64>) {
    let bus = Bus::builder()
        .workers(1)
        .batch(1)
        .tenant_quota(2)
        .backpressure(backpressure)
        .build()
        .unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let (g, h) = (gate.clone(), handled.clone());
    bus.subscribe(move |m: &Msg, _: &Context| -> HandlerResult {
        if m.0 == 0 {
            g.wait();
        }
        h.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    bus.publish_with(Msg(0), Meta::new().tenant(NOISY)).unwrap();
    bus.publish_with(Msg(1), Meta::new().tenant(NOISY)).unwrap();
    (bus, handled)
}

#[test]
fn over_its_quota_a_tenant_is_refused_while_others_flow() {
    within(30, || {
        let gate = Gate::default();
        let (bus, handled) = held_bus(Backpressure::Reject, &gate);
        match bus.publish_with(Msg(2), Meta::new().tenant(NOISY)) {
            Err(PublishError::QuotaExceeded(m)) => assert_eq!(m, Msg(2)),
            other => panic!("expected QuotaExceeded, got {other:?}"),
        }
        assert!(
            bus.try_publish(Msg(3)).is_ok(),
            "the default tenant has its own budget"
        );
        bus.publish_with(Msg(4), Meta::new().tenant(QUIET)).unwrap();
        assert_eq!(bus.metrics().rejected, 1);
        gate.open();
        bus.flush();
        bus.publish_with(Msg(5), Meta::new().tenant(NOISY)).unwrap();
        bus.flush();
        assert_eq!(handled.load(Ordering::SeqCst), 5);
    });
}

#[test]
fn under_block_a_tenant_over_its_quota_waits_for_room() {
    within(30, || {
        let gate = Gate::default();
        let (bus, handled) = held_bus(Backpressure::Block, &gate);
        let waiting = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.publish_with(Msg(2), Meta::new().tenant(NOISY)).is_ok())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiting.is_finished(),
            "the publish waits for the tenant's budget"
        );
        bus.publish_with(Msg(3), Meta::new().tenant(QUIET)).unwrap();
        gate.open();
        assert!(waiting.join().unwrap());
        bus.flush();
        assert_eq!(handled.load(Ordering::SeqCst), 4);
    });
}

#[test]
fn a_publish_waiting_for_budget_gets_closed_at_shutdown() {
    within(30, || {
        let gate = Gate::default();
        let (bus, _) = held_bus(Backpressure::Block, &gate);
        let waiting = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.publish_with(Msg(2), Meta::new().tenant(NOISY)))
        };
        std::thread::sleep(Duration::from_millis(20));
        let closer = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.shutdown())
        };
        wait_until(10, || bus.is_closed());
        match waiting.join().unwrap() {
            Err(PublishError::Closed(m)) => assert_eq!(m, Msg(2)),
            other => panic!("expected Closed, got {other:?}"),
        }
        gate.open();
        assert_eq!(closer.join().unwrap().delivered, 2);
    });
}

#[test]
fn follow_ups_count_but_are_never_refused() {
    within(30, || {
        let bus = Bus::builder()
            .workers(1)
            .tenant_quota(1)
            .backpressure(Backpressure::Reject)
            .build()
            .unwrap();
        bus.subscribe(|_: &Msg, ctx: &Context| -> HandlerResult {
            for _ in 0..10 {
                ctx.publish(Echo);
            }
            Ok(())
        });
        let echoes = Arc::new(AtomicU64::new(0));
        let e = echoes.clone();
        bus.subscribe(move |_: &Echo, ctx: &Context| -> HandlerResult {
            assert_eq!(ctx.tenant(), NOISY);
            e.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        bus.publish_with(Msg(0), Meta::new().tenant(NOISY)).unwrap();
        bus.flush();
        assert_eq!(echoes.load(Ordering::SeqCst), 10);
        // all units came back: the tenant can publish again
        bus.publish_with(Msg(1), Meta::new().tenant(NOISY)).unwrap();
        bus.flush();
        assert_eq!(echoes.load(Ordering::SeqCst), 20);
        assert_eq!(
            Bus::builder().tenant_quota(0).build().unwrap_err(),
            ConfigError::TenantQuota(0)
        );
    });
}
