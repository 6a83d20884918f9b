//! Every event a publish hands over is dropped exactly once: by the bus
//! once its handlers have run, by the bus when its id is a duplicate, or
//! by the caller, to whom a refusal gives it back. Events inline in their
//! ring slot and boxed ones alike.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, within, Gate};
use diana_bus::{
    Backpressure, Bus, Context, Event, EventId, HandlerResult, Meta, PublishError, TenantId,
};

/// Counts its drops; `N` bytes of padding decide whether the bus keeps it
/// inline in its slot or boxes it.
struct Counted<const N: usize>(Arc<AtomicU64>, [u8; N]);
impl<const N: usize> Event for Counted<N> {}

impl<const N: usize> Drop for Counted<N> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Padding that keeps the event inline, and padding that boxes it.
const INLINE: usize = 8;
const BOXED: usize = 256;

fn drops() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(0))
}

/// A one-worker, one-shard bus with rings of 2, a handler for `E` that
/// counts its runs, and a dedup window.
fn bus_of<E: Event>(backpressure: Backpressure) -> (Bus, Arc<AtomicU64>) {
    let bus = Bus::builder()
        .workers(1)
        .shards(1)
        .capacity(2)
        .backpressure(backpressure)
        .dedup_window(64, Duration::from_secs(60))
        .build()
        .unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    bus.subscribe(move |_: &E, _: &Context| -> HandlerResult {
        r.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    (bus, ran)
}

/// Subscribes a handler for `E` that counts its runs and waits at the
/// returned gate, holding the worker there.
fn hold<E: Event>(bus: &Bus) -> (Gate, Arc<AtomicU64>) {
    let (gate, entered) = (Gate::default(), Arc::new(AtomicU64::new(0)));
    let (g, e) = (gate.clone(), entered.clone());
    bus.subscribe(move |_: &E, _: &Context| -> HandlerResult {
        e.fetch_add(1, Ordering::SeqCst);
        g.wait();
        Ok(())
    });
    (gate, entered)
}

fn handled_events_are_dropped_once_each<const N: usize>() {
    within(30, || {
        let (bus, ran) = bus_of::<Counted<N>>(Backpressure::Block);
        let dropped = drops();
        for _ in 0..100 {
            bus.publish(Counted::<N>(dropped.clone(), [0; N])).unwrap();
        }
        bus.flush();
        assert_eq!(ran.load(Ordering::SeqCst), 100);
        assert_eq!(dropped.load(Ordering::SeqCst), 100);
    });
}

#[test]
fn handled_events_are_dropped_once_each_inline_or_boxed() {
    handled_events_are_dropped_once_each::<INLINE>();
    handled_events_are_dropped_once_each::<BOXED>();
}

fn a_duplicate_is_dropped_by_the_bus_once<const N: usize>() {
    within(30, || {
        let (bus, ran) = bus_of::<Counted<N>>(Backpressure::Block);
        let dropped = drops();
        let meta = Meta::new().id(EventId(7)).tenant(TenantId(1));
        for _ in 0..3 {
            let sent = bus.publish_with(Counted::<N>(dropped.clone(), [0; N]), meta);
            assert!(matches!(sent, Ok(EventId(7))));
        }
        // The two duplicates are dropped before their publishes return.
        assert!(dropped.load(Ordering::SeqCst) >= 2);
        bus.flush();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(dropped.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn a_duplicate_is_dropped_by_the_bus_once_inline_or_boxed() {
    a_duplicate_is_dropped_by_the_bus_once::<INLINE>();
    a_duplicate_is_dropped_by_the_bus_once::<BOXED>();
}

fn a_refused_event_comes_back_undropped<const N: usize>() {
    within(30, || {
        let (bus, _) = bus_of::<Counted<N>>(Backpressure::Reject);
        // A second handler holds the worker, so the ring of 2 fills.
        let (gate, entered) = hold::<Counted<N>>(&bus);
        let dropped = drops();
        let event = || Counted::<N>(dropped.clone(), [0; N]);
        bus.publish(event()).unwrap();
        wait_until(10, || entered.load(Ordering::SeqCst) == 1);
        // The first event keeps its slot while its handler runs.
        bus.publish(event()).unwrap();
        let refused = [
            bus.publish(event()).unwrap_err(),
            bus.try_publish(event()).unwrap_err(),
            bus.publish_with(event(), Meta::new().id(EventId(9)))
                .unwrap_err(),
        ];
        assert!(refused.iter().all(PublishError::is_full));
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            0,
            "refusals keep the events"
        );
        drop(refused);
        assert_eq!(dropped.load(Ordering::SeqCst), 3);
        gate.open();
        bus.flush();
        assert_eq!(dropped.load(Ordering::SeqCst), 5);
        // Refused for good after shutdown, and given back likewise.
        bus.shutdown();
        let closed = bus.publish(event()).unwrap_err();
        assert!(closed.is_closed());
        assert_eq!(dropped.load(Ordering::SeqCst), 5);
        drop(closed);
        assert_eq!(dropped.load(Ordering::SeqCst), 6);
    });
}

#[test]
fn a_refused_event_comes_back_undropped_inline_or_boxed() {
    a_refused_event_comes_back_undropped::<INLINE>();
    a_refused_event_comes_back_undropped::<BOXED>();
}

fn over_its_quota_an_event_comes_back_undropped<const N: usize>() {
    within(30, || {
        let bus = Bus::builder()
            .workers(1)
            .tenant_quota(1)
            .backpressure(Backpressure::Reject)
            .build()
            .unwrap();
        let (gate, entered) = hold::<Counted<N>>(&bus);
        let dropped = drops();
        let tenant = Meta::new().tenant(TenantId(3));
        bus.publish_with(Counted::<N>(dropped.clone(), [0; N]), tenant)
            .unwrap();
        wait_until(10, || entered.load(Ordering::SeqCst) == 1);
        let refused = bus
            .publish_with(Counted::<N>(dropped.clone(), [0; N]), tenant)
            .unwrap_err();
        assert!(refused.is_quota_exceeded());
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        drop(refused);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        gate.open();
        bus.flush();
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn over_its_quota_an_event_comes_back_undropped_inline_or_boxed() {
    over_its_quota_an_event_comes_back_undropped::<INLINE>();
    over_its_quota_an_event_comes_back_undropped::<BOXED>();
}

/// The two kinds really are the two storage paths: one fits the slot's
/// inline bytes, the other does not.
#[test]
fn the_two_event_sizes_straddle_the_inline_limit() {
    assert!(std::mem::size_of::<Counted<INLINE>>() <= 64);
    assert!(std::mem::size_of::<Counted<BOXED>>() > 64);
}
