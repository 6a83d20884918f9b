//! A snapshot taken while a worker counts: each of the worker's rows is
//! read backwards from the order it is written (Acquire against Release),
//! so related counters stay consistent, and after `flush` it is exact.
#![cfg(diana_bus_loom)]

use diana_bus::{Context, Event, HandlerResult};

struct Tick;
impl Event for Tick {}

#[test]
fn a_snapshot_racing_the_count_never_shows_a_run_before_its_dispatch() {
    loom::model(|| {
        let bus = loom_tests::loom_bus(1);
        bus.subscribe(|_: &Tick, _: &Context| -> HandlerResult { Ok(()) });
        bus.publish(Tick).unwrap();
        // Races the worker's count: one handler, so every delivered run
        // belongs to an event already counted as dispatched.
        let racing = bus.metrics();
        assert!(
            racing.delivered <= racing.dispatched,
            "a run counted before its dispatch: {racing:?}"
        );
        bus.flush();
        let settled = bus.metrics();
        assert_eq!((settled.dispatched, settled.delivered), (1, 1));
        bus.shutdown();
    });
}
