//! The release of a dependent event (`Meta::after`) through the real `Bus`:
//! the dependent and its dependency sit on different shards, owned by
//! different workers, so the dependent's wait (pushed into the
//! dependency's shard, then a fence and a re-check) races the claimer that
//! completes the dependency (progress stored, then a fence and a look for
//! waiters). A lost waiter leaves `flush` waiting forever, which loom
//! reports as a deadlock.
#![cfg(diana_bus_loom)]

use diana_bus::{Context, Event, HandlerResult, Meta};
use loom::sync::{Arc, Mutex};

/// Keys 1 and 2 go to shards 1 and 0 of a 2-shard bus (tenant 0).
struct Keyed(u64);
impl Event for Keyed {
    fn key(&self) -> Option<u64> {
        Some(self.0)
    }
}

/// Three threads (main and two workers) make a large model: one
/// preemption keeps it within CI's budget and still loses the waiter when
/// the wait's re-check is removed.
#[test]
fn a_dependent_runs_after_its_dependency_on_another_worker() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(1);
    model.check(|| {
        let bus = loom_tests::loom_bus(2);
        let runs = Arc::new(Mutex::new(Vec::new()));
        let r = runs.clone();
        bus.subscribe(move |k: &Keyed, _: &Context| -> HandlerResult {
            r.lock().unwrap().push(k.0);
            Ok(())
        });
        let first = bus.publish(Keyed(1)).unwrap();
        bus.publish_with(Keyed(2), Meta::new().after(first))
            .unwrap();
        bus.flush();
        assert_eq!(*runs.lock().unwrap(), [1, 2]);
        bus.shutdown();
    });
}
