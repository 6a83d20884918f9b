//! `Meta::after`: an event waits until the event it names is fully handled.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, within, Gate};
use diana_bus::{
    Bus, Context, Event, EventId, HandlerError, HandlerResult, Meta, RetryPolicy, TenantId,
};

/// A step of some flow, keyed by `key`, logged by name when handled.
struct Step {
    name: &'static str,
    key: u64,
}
impl Event for Step {
    fn key(&self) -> Option<u64> {
        Some(self.key)
    }
}

fn step(name: &'static str, key: u64) -> Step {
    Step { name, key }
}

type Log = Arc<Mutex<Vec<&'static str>>>;

/// A bus whose one handler logs each step, and stops at `gate` for the
/// step called "gated" until the gate opens.
fn logging_bus(workers: usize, gate: &Gate) -> (Bus, Log) {
    let bus = Bus::builder().workers(workers).shards(8).build().unwrap();
    let log = Log::default();
    let (seen, gate) = (log.clone(), gate.clone());
    bus.subscribe(move |s: &Step, _: &Context| -> HandlerResult {
        if s.name == "gated" {
            gate.wait();
        }
        seen.lock().unwrap().push(s.name);
        Ok(())
    });
    (bus, log)
}

fn logged(log: &Log, name: &str) -> bool {
    log.lock().unwrap().contains(&name)
}

#[test]
fn a_dependent_waits_without_blocking_its_worker() {
    within(30, || {
        // One worker: had the wait blocked it, nothing else would run.
        let bus = Bus::builder().workers(1).shards(8).build().unwrap();
        let log = Log::default();
        let gate = Arc::new(AtomicBool::new(false));
        let (seen, open) = (log.clone(), gate.clone());
        bus.subscriber::<Step>()
            .retry(RetryPolicy::fixed(u32::MAX, Duration::from_millis(2)))
            .subscribe(move |s: &Step, _: &Context| -> HandlerResult {
                if s.name == "retrying" && !open.load(Ordering::Acquire) {
                    return Err(HandlerError::transient("gate closed"));
                }
                seen.lock().unwrap().push(s.name);
                Ok(())
            });
        let first = bus.publish(step("retrying", 1)).unwrap();
        bus.publish_with(step("dependent", 2), Meta::new().after(first))
            .unwrap();
        // Key 1 too: a retry holds no key unless asked to.
        for key in [1, 3, 4, 5, 6, 7, 8, 9, 10] {
            bus.publish(step("other", key)).unwrap();
        }
        wait_until(10, || {
            log.lock()
                .unwrap()
                .iter()
                .filter(|n| **n == "other")
                .count()
                == 9
        });
        assert!(!logged(&log, "dependent"));
        gate.store(true, Ordering::Release);
        bus.flush();
        let log = log.lock().unwrap();
        let at = |name| log.iter().position(|n| *n == name).unwrap();
        assert!(at("retrying") < at("dependent"), "{log:?}");
    });
}

#[test]
fn later_events_of_a_waiting_key_stay_behind_it() {
    within(30, || {
        let gate = Gate::default();
        let (bus, log) = logging_bus(2, &gate);
        let first = bus.publish(step("gated", 1)).unwrap();
        bus.publish_with(step("dependent", 2), Meta::new().after(first))
            .unwrap();
        bus.publish(step("same key, later", 2)).unwrap();
        bus.publish(step("other key", 3)).unwrap();
        wait_until(10, || logged(&log, "other key"));
        assert!(!logged(&log, "same key, later"));
        gate.open();
        bus.flush();
        let log = log.lock().unwrap();
        let at = |name| log.iter().position(|n| *n == name).unwrap();
        assert!(at("gated") < at("dependent"));
        assert!(at("dependent") < at("same key, later"), "{log:?}");
    });
}

#[test]
fn flush_waits_for_dependents() {
    within(30, || {
        let gate = Gate::default();
        let (bus, log) = logging_bus(2, &gate);
        let first = bus.publish(step("gated", 1)).unwrap();
        bus.publish_with(step("dependent", 2), Meta::new().after(first))
            .unwrap();
        let opener = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                gate.open();
            })
        };
        bus.flush();
        assert!(
            logged(&log, "dependent"),
            "flush returned before the dependent ran"
        );
        opener.join().unwrap();
    });
}

#[test]
fn a_dependency_is_handled_only_once_its_retries_succeed() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        let log = Log::default();
        let seen = log.clone();
        bus.subscriber::<Step>()
            .retry(RetryPolicy::fixed(4, Duration::from_millis(20)))
            .subscribe(move |s: &Step, ctx: &Context| -> HandlerResult {
                if s.name == "flaky" && ctx.attempt() < 3 {
                    seen.lock().unwrap().push("flaky failed");
                    return Err(HandlerError::transient("not yet"));
                }
                seen.lock().unwrap().push(s.name);
                Ok(())
            });
        let flaky = bus.publish(step("flaky", 1)).unwrap();
        bus.publish_with(step("dependent", 2), Meta::new().after(flaky))
            .unwrap();
        bus.flush();
        assert_eq!(
            *log.lock().unwrap(),
            ["flaky failed", "flaky failed", "flaky", "dependent"]
        );
    });
}

#[test]
fn a_dead_lettered_dependency_releases_its_dependents() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        let log = Log::default();
        let seen = log.clone();
        bus.subscriber::<Step>()
            .retry(RetryPolicy::fixed(2, Duration::from_millis(10)))
            .subscribe(move |s: &Step, _: &Context| -> HandlerResult {
                seen.lock().unwrap().push(s.name);
                match s.name {
                    "doomed" => Err(HandlerError::transient("always")),
                    _ => Ok(()),
                }
            });
        let doomed = bus.publish(step("doomed", 1)).unwrap();
        bus.publish_with(step("dependent", 2), Meta::new().after(doomed))
            .unwrap();
        bus.flush();
        assert_eq!(*log.lock().unwrap(), ["doomed", "doomed", "dependent"]);
        assert_eq!(bus.dead_letters().len(), 1);
    });
}

#[test]
fn dependencies_chain() {
    within(30, || {
        let gate = Gate::default();
        let (bus, log) = logging_bus(2, &gate);
        let first = bus.publish(step("gated", 1)).unwrap();
        let second = bus
            .publish_with(step("second", 2), Meta::new().after(first))
            .unwrap();
        bus.publish_with(step("third", 3), Meta::new().after(second))
            .unwrap();
        gate.open();
        bus.flush();
        assert_eq!(*log.lock().unwrap(), ["gated", "second", "third"]);
    });
}

#[test]
fn an_explicit_id_in_flight_is_waited_for() {
    within(30, || {
        let gate = Gate::default();
        let (bus, log) = logging_bus(2, &gate);
        bus.publish_with(step("gated", 1), Meta::new().id(EventId(7)))
            .unwrap();
        bus.publish_with(step("dependent", 2), Meta::new().after(EventId(7)))
            .unwrap();
        bus.publish(step("other", 3)).unwrap();
        wait_until(10, || logged(&log, "other"));
        assert!(!logged(&log, "dependent"));
        gate.open();
        bus.flush();
        let log = log.lock().unwrap();
        let at = |name| log.iter().position(|n| *n == name).unwrap();
        assert!(at("gated") < at("dependent"), "{log:?}");
    });
}

#[test]
fn another_tenant_reusing_an_explicit_id_does_not_satisfy_a_dependency() {
    within(30, || {
        let (bus, log) = logging_bus(2, &Gate::default());
        // Keeps tenant 1's "held" in flight, waiting out an hour's retry
        // pause, without holding a worker.
        let flaky = bus
            .subscriber::<Step>()
            .retry(RetryPolicy::fixed(2, Duration::from_secs(3600)))
            .subscribe(|s: &Step, _: &Context| -> HandlerResult {
                match s.name {
                    "held" => Err(HandlerError::transient("later")),
                    _ => Ok(()),
                }
            });
        let tenant = |tenant| Meta::new().tenant(TenantId(tenant));
        bus.publish_with(step("held", 1), tenant(1).id(EventId(7)))
            .unwrap();
        wait_until(10, || logged(&log, "held"));
        // Dedup is per tenant: tenant 2 may use the id too.
        bus.publish_with(step("theirs", 2), tenant(2).id(EventId(7)))
            .unwrap();
        wait_until(10, || logged(&log, "theirs"));
        bus.publish_with(step("dependent", 3), tenant(1).after(EventId(7)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!logged(&log, "dependent"), "ran before tenant 1's event 7");
        // Tenant 1's event 7 ends with its retries.
        assert!(bus.unsubscribe(&flaky));
        bus.flush();
        assert!(logged(&log, "dependent"));
    });
}

#[test]
fn unknown_finished_and_not_yet_published_ids_are_satisfied_at_once() {
    within(30, || {
        let gate = Gate::default();
        let (bus, log) = logging_bus(2, &gate);
        // Finished: handled before the dependent is published.
        let done = bus.publish(step("done", 1)).unwrap();
        bus.flush();
        bus.publish_with(step("after finished", 2), Meta::new().after(done))
            .unwrap();
        // Unknown: never published, or another bus's id.
        bus.publish_with(step("after unknown", 3), Meta::new().after(EventId(99)))
            .unwrap();
        let other_bus = Bus::builder().workers(1).build().unwrap();
        let foreign = other_bus.publish(step("elsewhere", 1)).unwrap();
        bus.publish_with(step("after foreign", 4), Meta::new().after(foreign))
            .unwrap();
        // Not yet published: the id is given to a gated event afterwards,
        // and the dependent does not wait for it.
        bus.publish_with(step("after later", 5), Meta::new().after(EventId(5)))
            .unwrap();
        bus.publish_with(step("gated", 6), Meta::new().id(EventId(5)))
            .unwrap();
        wait_until(10, || {
            [
                "after finished",
                "after unknown",
                "after foreign",
                "after later",
            ]
            .iter()
            .all(|name| logged(&log, name))
        });
        assert!(!logged(&log, "gated"));
        gate.open();
        bus.flush();
    });
}

#[test]
fn handlers_can_publish_dependents_and_shutdown_waits_for_them() {
    within(30, || {
        let gate = Gate::default();
        let bus = Bus::builder().workers(2).build().unwrap();
        let log = Log::default();
        let (seen, g) = (log.clone(), gate.clone());
        bus.subscribe(move |s: &Step, ctx: &Context| -> HandlerResult {
            if s.name == "gated" {
                g.wait();
            }
            if s.name == "parent" {
                let first = ctx.publish(step("gated", 10));
                ctx.publish_with(step("child", 11), Meta::new().after(first));
            }
            seen.lock().unwrap().push(s.name);
            Ok(())
        });
        bus.publish(step("parent", 1)).unwrap();
        let opener = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                gate.open();
            })
        };
        let report = bus.shutdown();
        opener.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["parent", "gated", "child"]);
        assert_eq!(report.delivered, 3);
    });
}

/// A key other than `key` that the bus runs on the same worker: found by
/// asking (each key's shard has one owner; a handful of probe events is
/// too few for another worker to help with).
fn key_beside(bus: &Bus, key: u64) -> u64 {
    struct Probe(u64);
    impl Event for Probe {
        fn key(&self) -> Option<u64> {
            Some(self.0)
        }
    }
    let ran_on = Arc::new(Mutex::new(Vec::new()));
    let r = ran_on.clone();
    let probe = bus.subscribe(move |p: &Probe, _: &Context| -> HandlerResult {
        let worker = std::thread::current().name().map(str::to_owned);
        r.lock().unwrap().push((p.0, worker));
        Ok(())
    });
    for k in 0..64 {
        bus.publish(Probe(k)).unwrap();
    }
    bus.flush();
    bus.unsubscribe(&probe);
    let ran_on = ran_on.lock().unwrap();
    let worker_of = |k| {
        ran_on
            .iter()
            .find(|(probed, _)| *probed == k)
            .unwrap()
            .1
            .clone()
    };
    (0..64)
        .find(|&k| k != key && worker_of(k) == worker_of(key))
        .expect("two of 64 keys share a worker")
}

#[test]
fn an_event_released_from_a_key_then_waiting_for_its_dependency_keeps_the_key() {
    within(30, || {
        #[derive(Clone, Copy)]
        struct Stall(bool);
        impl Event for Stall {}
        struct Dependency;
        impl Event for Dependency {}

        let bus = Bus::builder().workers(2).shards(2).build().unwrap();
        const KEY: u64 = 1;
        let beside = key_beside(&bus, KEY);
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        // Strict: "held" fails its first run and holds KEY for 300 ms.
        bus.subscriber::<Step>()
            .strict_order(true)
            .retry(RetryPolicy::fixed(2, Duration::from_millis(300)))
            .subscribe(move |s: &Step, ctx: &Context| -> HandlerResult {
                l.lock().unwrap().push((s.name, ctx.attempt()));
                if s.name == "held" && ctx.attempt() == 1 {
                    return Err(HandlerError::transient("later"));
                }
                Ok(())
            });
        // The dependency stays in flight for a second (a retry pause).
        bus.subscriber::<Dependency>()
            .retry(RetryPolicy::fixed(2, Duration::from_secs(1)))
            .subscribe(|_: &Dependency, ctx: &Context| -> HandlerResult {
                match ctx.attempt() {
                    1 => Err(HandlerError::transient("later")),
                    _ => Ok(()),
                }
            });
        let (first_stall, second_stall) = (Gate::default(), Gate::default());
        let _open = (
            common::OpenOnDrop(first_stall.clone()),
            common::OpenOnDrop(second_stall.clone()),
        );
        let stalled = Arc::new(AtomicBool::new(false));
        let (g1, g2, st) = (first_stall.clone(), second_stall.clone(), stalled.clone());
        bus.subscribe(move |s: &Stall, _: &Context| -> HandlerResult {
            match s.0 {
                false => {
                    st.store(true, Ordering::SeqCst);
                    g1.wait()
                }
                true => g2.wait(),
            }
            Ok(())
        });

        let dependency = bus.publish_with(Dependency, Meta::new().key(99)).unwrap();
        bus.publish(step("held", KEY)).unwrap();
        // KEY's worker stalls; "waits" (after the dependency) and a second
        // stall queue behind, to make one batch.
        bus.publish_with(Stall(false), Meta::new().key(beside))
            .unwrap();
        wait_until(10, || stalled.load(Ordering::SeqCst));
        bus.publish_with(step("waits", KEY), Meta::new().after(dependency))
            .unwrap();
        bus.publish_with(Stall(true), Meta::new().key(beside))
            .unwrap();
        first_stall.open();
        // "waits" is deferred behind "held", whose retry runs on the other
        // worker and releases KEY while the batch is stalled.
        wait_until(10, || log.lock().unwrap().contains(&("held", 2)));
        std::thread::sleep(Duration::from_millis(50));
        second_stall.open();
        std::thread::sleep(Duration::from_millis(50));
        // "waits" now waits for its dependency: "later" stays behind it.
        bus.publish(step("later", KEY)).unwrap();
        bus.flush();
        let firsts: Vec<_> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, attempt)| *attempt == 1)
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(
            firsts,
            ["held", "waits", "later"],
            "the key's publish order"
        );
    });
}
