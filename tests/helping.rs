//! An idle worker takes over the backlog of a shard whose owner is busy,
//! without breaking per-key order.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, within, Gate, OpenOnDrop};
use diana_bus::{Bus, Context, Event, HandlerResult};

struct Keyed {
    key: u64,
    round: u64,
    seq: u64,
}
impl Event for Keyed {
    fn key(&self) -> Option<u64> {
        Some(self.key)
    }
}

/// (key, round) -> the workers that handled its events, in handling order.
type Handled = Arc<Mutex<HashMap<(u64, u64), Vec<String>>>>;

fn worker_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

#[test]
fn an_idle_worker_takes_over_a_shard_whose_owner_is_stuck() {
    take_over_a_stuck_shard(Duration::ZERO);
}

#[test]
fn a_worker_drowsy_from_a_second_of_idleness_still_takes_over() {
    // Past a second of empty wake-ups, helpers look for backlogs ten times
    // less often (the executor's DROWSY_AFTER).
    take_over_a_stuck_shard(Duration::from_millis(1500));
}

/// Worker 0 is held in a handler, after the bus has been idle for `idle`;
/// worker 1 must take over the backlog of worker 0's other shard.
fn take_over_a_stuck_shard(idle: Duration) {
    within(60, move || {
        const KEYS: u64 = 64;
        const BACKLOG: u64 = 300; // above the default batch of 256
        let bus = Bus::builder()
            .workers(2)
            .shards(4)
            .capacity(8192)
            .build()
            .unwrap();
        let handled: Handled = Arc::default();
        let out_of_order = Arc::new(AtomicU64::new(0));
        let blocked_key = Arc::new(AtomicU64::new(u64::MAX));
        let entered = Arc::new(AtomicBool::new(false));
        let gate = Gate::default();
        let _open = OpenOnDrop(gate.clone());
        {
            let (handled, out_of_order, blocked_key, entered, gate) = (
                handled.clone(),
                out_of_order.clone(),
                blocked_key.clone(),
                entered.clone(),
                gate.clone(),
            );
            bus.subscribe(move |e: &Keyed, _: &Context| -> HandlerResult {
                {
                    let mut handled = handled.lock().unwrap();
                    let seen = handled.entry((e.key, e.round)).or_default();
                    if seen.len() as u64 != e.seq {
                        out_of_order.fetch_add(1, Ordering::SeqCst);
                    }
                    seen.push(worker_name());
                }
                if e.key == blocked_key.load(Ordering::SeqCst) && e.round == 1 && e.seq == 0 {
                    entered.store(true, Ordering::SeqCst);
                    gate.wait();
                }
                Ok(())
            });
        }
        // round 0, one event at a time: too little backlog to steal, so each
        // key is handled by the owner of its shard
        for key in 0..KEYS {
            bus.publish(Keyed {
                key,
                round: 0,
                seq: 0,
            })
            .unwrap();
            bus.flush();
        }
        let owner: HashMap<u64, String> = handled
            .lock()
            .unwrap()
            .iter()
            .map(|(&(key, _), w)| (key, w[0].clone()))
            .collect();
        let owned_by_0: Vec<u64> = (0..KEYS)
            .filter(|k| owner[k] == "diana-bus-worker-0")
            .collect();
        assert!(owned_by_0.len() > 4, "worker 0 owns some keys: {owner:?}");

        std::thread::sleep(idle);
        // round 1: hold worker 0 inside the handler of one of its keys
        let stuck = owned_by_0[0];
        blocked_key.store(stuck, Ordering::SeqCst);
        bus.publish(Keyed {
            key: stuck,
            round: 1,
            seq: 0,
        })
        .unwrap();
        wait_until(10, || entered.load(Ordering::SeqCst));
        // a backlog on each of worker 0's other keys: those sharing the
        // stuck shard wait behind it; those in worker 0's other shard can
        // only be handled if worker 1 takes that shard over
        for &key in &owned_by_0[1..] {
            for seq in 0..BACKLOG {
                bus.publish(Keyed { key, round: 1, seq }).unwrap();
            }
        }
        wait_until(10, || {
            let handled = handled.lock().unwrap();
            owned_by_0[1..].iter().any(|&k| {
                handled.get(&(k, 1)).is_some_and(|w| {
                    w.len() as u64 == BACKLOG && w.iter().all(|n| n == "diana-bus-worker-1")
                })
            })
        });
        gate.open();
        bus.flush();
        assert_eq!(
            out_of_order.load(Ordering::SeqCst),
            0,
            "per-key order broken"
        );
        let handled = handled.lock().unwrap();
        for &key in &owned_by_0[1..] {
            assert_eq!(handled[&(key, 1)].len() as u64, BACKLOG);
        }
    });
}
