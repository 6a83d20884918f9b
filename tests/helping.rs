//! An idle worker takes over the backlog of a shard whose owner is busy,
//! without breaking per-key order.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{wait_until, within, Gate};
use diana_bus::{Bus, Context, Event, HandlerResult};

struct Keyed {
    key: u64,
    round: u64,
}
impl Event for Keyed {
    fn key(&self) -> Option<u64> {
        Some(self.key)
    }
}

fn worker_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

#[test]
fn an_idle_worker_takes_over_a_shard_whose_owner_is_stuck() {
    within(60, || {
        // batch(1): any waiting event is a backlog worth helping with
        let bus = Bus::builder()
            .workers(2)
            .shards(4)
            .batch(1)
            .build()
            .unwrap();
        let handled: Arc<Mutex<HashMap<(u64, u64), String>>> = Arc::default();
        let blocked_key = Arc::new(AtomicU64::new(u64::MAX));
        let entered = Arc::new(AtomicBool::new(false));
        let gate = Gate::default();
        {
            let (handled, blocked_key, entered, gate) = (
                handled.clone(),
                blocked_key.clone(),
                entered.clone(),
                gate.clone(),
            );
            bus.subscribe(move |e: &Keyed, _: &Context| -> HandlerResult {
                handled
                    .lock()
                    .unwrap()
                    .insert((e.key, e.round), worker_name());
                if e.key == blocked_key.load(Ordering::SeqCst) && e.round == 1 {
                    entered.store(true, Ordering::SeqCst);
                    gate.wait();
                }
                Ok(())
            });
        }
        // round 0, quiet: each key is handled by the owner of its shard
        for key in 0..64 {
            bus.publish(Keyed { key, round: 0 }).unwrap();
        }
        bus.flush();
        let owner: HashMap<u64, String> = handled
            .lock()
            .unwrap()
            .iter()
            .map(|(&(key, _), w)| (key, w.clone()))
            .collect();
        let owned_by_0: Vec<u64> = (0..64)
            .filter(|k| owner[k] == "diana-bus-worker-0")
            .collect();
        assert!(owned_by_0.len() > 4, "worker 0 owns some keys: {owner:?}");

        // round 1: block worker 0 inside the handler of one of its keys
        let stuck = owned_by_0[0];
        blocked_key.store(stuck, Ordering::SeqCst);
        bus.publish(Keyed {
            key: stuck,
            round: 1,
        })
        .unwrap();
        wait_until(10, || entered.load(Ordering::SeqCst));
        // worker 0's other keys: those in the stuck shard wait behind it,
        // those in its other shard must be taken over by worker 1
        for &key in &owned_by_0[1..] {
            bus.publish(Keyed { key, round: 1 }).unwrap();
        }
        wait_until(10, || {
            let handled = handled.lock().unwrap();
            owned_by_0[1..].iter().any(|&k| {
                handled
                    .get(&(k, 1))
                    .is_some_and(|w| w == "diana-bus-worker-1")
            })
        });
        gate.open();
        bus.flush();
        let handled = handled.lock().unwrap();
        assert!(owned_by_0.iter().all(|&k| handled.contains_key(&(k, 1))));
    });
}
