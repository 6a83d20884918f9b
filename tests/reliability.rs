//! Retries, dead letters and replay through the public API.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::within;
use diana_bus::{Bus, Context, Event, HandlerError, HandlerResult, Meta, RetryPolicy, TenantId};

#[derive(Debug, PartialEq)]
struct Order {
    id: u64,
}
impl Event for Order {
    fn key(&self) -> Option<u64> {
        Some(self.id)
    }
}

const MS: Duration = Duration::from_millis(1);

fn bus() -> Bus {
    Bus::builder().workers(2).build().unwrap()
}

#[test]
fn transient_failures_are_retried_until_success_with_the_attempt_number() {
    within(30, || {
        let bus = bus();
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let a = attempts.clone();
        bus.subscriber::<Order>()
            .retry(RetryPolicy::exponential(5, MS))
            .subscribe(move |_: &Order, ctx: &Context| -> HandlerResult {
                a.lock().unwrap().push(ctx.attempt());
                if ctx.attempt() < 3 {
                    return Err(HandlerError::transient("busy"));
                }
                Ok(())
            });
        bus.publish(Order { id: 1 }).unwrap();
        bus.flush(); // waits for the retries
        assert_eq!(*attempts.lock().unwrap(), [1, 2, 3]);
        let m = bus.metrics();
        assert_eq!(
            (m.delivered, m.failed, m.retried, m.dead_lettered),
            (1, 2, 2, 0)
        );
    });
}

#[test]
fn permanent_errors_go_straight_to_the_dead_letters() {
    within(30, || {
        let bus = bus();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        bus.subscriber::<Order>()
            .name("billing")
            .retry(RetryPolicy::fixed(5, MS))
            .subscribe(move |_: &Order, _: &Context| -> HandlerResult {
                c.fetch_add(1, Ordering::SeqCst);
                Err(HandlerError::permanent("card declined"))
            });
        let id = bus
            .publish_with(Order { id: 7 }, Meta::new().tenant(TenantId(3)))
            .unwrap();
        bus.flush();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let letters = bus.dead_letters();
        assert_eq!(letters.len(), 1);
        let letter = &letters[0];
        assert_eq!(letter.event_name(), "Order");
        assert_eq!(letter.event_id(), id);
        assert_eq!(letter.tenant(), TenantId(3));
        assert_eq!(letter.handler(), "billing");
        assert_eq!(letter.error(), "card declined");
        assert_eq!(letter.attempts(), 1);
        assert_eq!(letter.event::<Order>(), Some(&Order { id: 7 }));
        assert!(format!("{letter:?}").contains("billing"));
    });
}

#[test]
fn panics_are_retried_then_dead_lettered_after_the_last_attempt() {
    within(30, || {
        let bus = bus();
        bus.subscriber::<Order>()
            .retry(RetryPolicy::fixed(3, MS))
            .subscribe(|o: &Order, _: &Context| -> HandlerResult {
                panic!("order {} is cursed", o.id)
            });
        bus.publish(Order { id: 9 }).unwrap();
        bus.flush();
        let letters = bus.take_dead_letters();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].attempts(), 3);
        assert!(
            letters[0].error().contains("order 9 is cursed"),
            "{}",
            letters[0].error()
        );
        assert!(bus.dead_letters().is_empty(), "take drains the store");
        let m = bus.metrics();
        assert_eq!(
            (m.failed, m.panicked, m.retried, m.dead_lettered),
            (3, 3, 2, 1)
        );
    });
}

#[test]
fn only_the_failed_handler_is_retried() {
    within(30, || {
        let bus = bus();
        let steady = Arc::new(AtomicU32::new(0));
        let s = steady.clone();
        bus.subscribe(move |_: &Order, _: &Context| -> HandlerResult {
            s.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let flaky = Arc::new(AtomicU32::new(0));
        let f = flaky.clone();
        bus.subscriber::<Order>()
            .retry(RetryPolicy::fixed(4, MS))
            .subscribe(move |_: &Order, ctx: &Context| -> HandlerResult {
                f.fetch_add(1, Ordering::SeqCst);
                if ctx.attempt() < 4 {
                    Err(HandlerError::transient("flaky"))
                } else {
                    Ok(())
                }
            });
        for id in 0..10 {
            bus.publish(Order { id }).unwrap();
        }
        bus.flush();
        assert_eq!(
            steady.load(Ordering::SeqCst),
            10,
            "the handler that succeeded saw each event once"
        );
        assert_eq!(flaky.load(Ordering::SeqCst), 40);
        assert_eq!(bus.metrics().delivered, 20);
    });
}

#[test]
fn a_waiting_retry_holds_up_neither_its_worker_nor_other_events() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        bus.subscriber::<Order>()
            .retry(RetryPolicy::fixed(2, 300 * MS))
            .subscribe(move |o: &Order, ctx: &Context| -> HandlerResult {
                l.lock().unwrap().push((o.id, ctx.attempt()));
                if o.id == 1 && ctx.attempt() == 1 {
                    return Err(HandlerError::transient("later"));
                }
                Ok(())
            });
        let start = Instant::now();
        // 1 and 3 share a key; 2 has another
        bus.publish_with(Order { id: 1 }, Meta::new().key(5))
            .unwrap();
        bus.publish_with(Order { id: 2 }, Meta::new().key(6))
            .unwrap();
        bus.publish_with(Order { id: 3 }, Meta::new().key(5))
            .unwrap();
        bus.flush();
        assert!(start.elapsed() >= 300 * MS, "flush waited for the retry");
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 4);
        assert_eq!(log[3], (1, 2), "the retry comes last: {log:?}");
        let first = |id| log.iter().position(|&e| e == (id, 1)).unwrap();
        assert!(first(1) < first(3), "same key, publish order: {log:?}");
        assert!(first(2) < 3, "the other key ran before the retry: {log:?}");
    });
}

#[test]
fn the_dead_letter_store_is_bounded_and_counts_what_it_drops() {
    within(30, || {
        let bus = Bus::builder()
            .workers(1)
            .dead_letter_capacity(2)
            .build()
            .unwrap();
        bus.subscribe(|_: &Order, _: &Context| -> HandlerResult {
            Err(HandlerError::permanent("no"))
        });
        for id in 0..5 {
            // one key: handled, and dead-lettered, in publish order
            bus.publish_with(Order { id }, Meta::new().key(1)).unwrap();
        }
        bus.flush();
        let kept: Vec<u64> = bus
            .dead_letters()
            .iter()
            .map(|l| l.event::<Order>().unwrap().id)
            .collect();
        assert_eq!(kept, [3, 4], "the newest are kept");
        let m = bus.metrics();
        assert_eq!((m.dead_lettered, m.dead_letters_dropped), (5, 3));
        assert!(Bus::builder().dead_letter_capacity(0).build().is_err());
    });
}

#[test]
fn replay_reruns_only_the_failed_handler_of_the_selected_letters() {
    within(30, || {
        let bus = bus();
        let healthy = Arc::new(AtomicU64::new(0));
        let h = healthy.clone();
        bus.subscribe(move |_: &Order, _: &Context| -> HandlerResult {
            h.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let recovered = Arc::new(Mutex::new(Vec::new()));
        let (d, r) = (down.clone(), recovered.clone());
        bus.subscriber::<Order>().name("crm").subscribe(
            move |o: &Order, ctx: &Context| -> HandlerResult {
                if d.load(Ordering::SeqCst) {
                    return Err(HandlerError::transient("crm down"));
                }
                r.lock().unwrap().push((o.id, ctx.attempt()));
                Ok(())
            },
        );
        for id in 0..4 {
            bus.publish(Order { id }).unwrap();
        }
        bus.flush();
        assert_eq!(bus.dead_letters().len(), 4);
        down.store(false, Ordering::SeqCst);
        let replayed =
            bus.replay_dead_letters(|l| l.event::<Order>().is_some_and(|o| o.id % 2 == 0));
        assert_eq!(replayed, 2);
        bus.flush();
        let mut recovered = recovered.lock().unwrap().clone();
        recovered.sort();
        assert_eq!(recovered, [(0, 1), (2, 1)]);
        assert_eq!(
            healthy.load(Ordering::SeqCst),
            4,
            "the healthy handler is not replayed"
        );
        let mut left: Vec<u64> = bus
            .dead_letters()
            .iter()
            .map(|l| l.event::<Order>().unwrap().id)
            .collect();
        left.sort();
        assert_eq!(left, [1, 3]);
    });
}

#[test]
fn shutdown_waits_for_retries_and_reports_dead_letters() {
    within(30, || {
        let bus = bus();
        let successes = Arc::new(AtomicU32::new(0));
        let s = successes.clone();
        bus.subscriber::<Order>()
            .retry(RetryPolicy::exponential(3, 20 * MS))
            .subscribe(move |o: &Order, ctx: &Context| -> HandlerResult {
                if o.id == 0 {
                    return Err(HandlerError::transient("never"));
                }
                if ctx.attempt() < 2 {
                    return Err(HandlerError::transient("once"));
                }
                s.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
        for id in 0..5 {
            bus.publish(Order { id }).unwrap();
        }
        let report = bus.shutdown();
        assert_eq!(successes.load(Ordering::SeqCst), 4);
        assert_eq!((report.delivered, report.dead_lettered), (4, 1));
        assert_eq!(bus.dead_letters()[0].attempts(), 3);
        assert_eq!(
            bus.replay_dead_letters(|_| true),
            0,
            "nothing is replayed on a closed bus"
        );
    });
}

#[test]
fn a_later_stage_waits_until_the_earlier_stage_succeeded_or_was_dead_lettered() {
    within(30, || {
        let bus = bus();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        bus.subscriber::<Order>()
            .name("reserve")
            .stage(0)
            .retry(RetryPolicy::fixed(3, 20 * MS))
            .subscribe(move |o: &Order, ctx: &Context| -> HandlerResult {
                l.lock()
                    .unwrap()
                    .push(format!("reserve {} #{}", o.id, ctx.attempt()));
                // order 1 succeeds on its second run, order 2 never does
                if o.id == 2 || ctx.attempt() < 2 {
                    return Err(HandlerError::transient("stock service busy"));
                }
                Ok(())
            });
        let l = log.clone();
        bus.subscriber::<Order>().name("notify").stage(1).subscribe(
            move |o: &Order, ctx: &Context| -> HandlerResult {
                l.lock()
                    .unwrap()
                    .push(format!("notify {} #{}", o.id, ctx.attempt()));
                Ok(())
            },
        );
        bus.publish(Order { id: 1 }).unwrap();
        bus.flush();
        assert_eq!(
            *log.lock().unwrap(),
            ["reserve 1 #1", "reserve 1 #2", "notify 1 #1"]
        );
        log.lock().unwrap().clear();
        bus.publish(Order { id: 2 }).unwrap();
        bus.flush();
        assert_eq!(
            *log.lock().unwrap(),
            [
                "reserve 2 #1",
                "reserve 2 #2",
                "reserve 2 #3",
                "notify 2 #1"
            ],
            "the dead-lettered stage releases the next"
        );
        assert_eq!(bus.dead_letters().len(), 1);
    });
}

#[test]
fn strict_order_holds_a_key_behind_its_retry_while_other_keys_flow() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        bus.subscriber::<Order>()
            .strict_order(true)
            .retry(RetryPolicy::fixed(2, 100 * MS))
            .subscribe(move |o: &Order, ctx: &Context| -> HandlerResult {
                l.lock().unwrap().push((o.id, ctx.attempt()));
                if o.id == 1 && ctx.attempt() == 1 {
                    return Err(HandlerError::transient("later"));
                }
                Ok(())
            });
        // 1 and 3 share key 5; 2 has key 6
        bus.publish_with(Order { id: 1 }, Meta::new().key(5))
            .unwrap();
        bus.publish_with(Order { id: 2 }, Meta::new().key(6))
            .unwrap();
        bus.publish_with(Order { id: 3 }, Meta::new().key(5))
            .unwrap();
        bus.flush();
        let log = log.lock().unwrap().clone();
        let at = |entry| log.iter().position(|&e| e == entry).unwrap();
        assert_eq!(log.len(), 4, "{log:?}");
        assert!(
            at((1, 1)) < at((1, 2)) && at((1, 2)) < at((3, 1)),
            "3 waits behind 1's retry: {log:?}"
        );
        assert!(
            at((2, 1)) < at((1, 2)),
            "the other key flowed meanwhile: {log:?}"
        );
    });
}

#[test]
fn another_tenants_later_stage_does_not_make_a_retry_hold_the_key() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        bus.subscriber::<Order>()
            .stage(0)
            .retry(RetryPolicy::fixed(2, 300 * MS))
            .subscribe(move |o: &Order, ctx: &Context| -> HandlerResult {
                l.lock().unwrap().push((o.id, ctx.attempt()));
                if o.id == 1 && ctx.attempt() == 1 {
                    return Err(HandlerError::transient("busy"));
                }
                Ok(())
            });
        // A later stage, for tenant 7 only.
        bus.subscriber::<Order>()
            .tenant(TenantId(7))
            .stage(1)
            .subscribe(|_: &Order, _: &Context| -> HandlerResult { Ok(()) });
        // Tenant 3's events, one key: no later stage runs them.
        let meta = Meta::new().tenant(TenantId(3)).key(5);
        bus.publish_with(Order { id: 1 }, meta).unwrap();
        bus.publish_with(Order { id: 2 }, meta).unwrap();
        bus.flush();
        let log = log.lock().unwrap().clone();
        let at = |entry| log.iter().position(|&e| e == entry).unwrap();
        assert!(at((2, 1)) < at((1, 2)), "2 passed 1's retry: {log:?}");
    });
}

#[test]
fn a_strict_handlers_hold_ends_with_its_own_retries_not_a_siblings() {
    within(30, || {
        let bus = bus();
        let log = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        for (name, strict, pause) in [("strict", true, 20), ("slow", false, 2_000)] {
            let l = log.clone();
            bus.subscriber::<Order>()
                .name(name)
                .strict_order(strict)
                .retry(RetryPolicy::fixed(2, pause * MS))
                .subscribe(move |o: &Order, ctx: &Context| -> HandlerResult {
                    l.lock()
                        .unwrap()
                        .push((name, o.id, ctx.attempt(), start.elapsed()));
                    if o.id == 1 && ctx.attempt() == 1 {
                        return Err(HandlerError::transient("busy"));
                    }
                    Ok(())
                });
        }
        bus.publish_with(Order { id: 1 }, Meta::new().key(5))
            .unwrap();
        bus.publish_with(Order { id: 2 }, Meta::new().key(5))
            .unwrap();
        bus.flush();
        let log = log.lock().unwrap().clone();
        let when = |name, id, attempt| {
            log.iter()
                .find(|e| e.0 == name && e.1 == id && e.2 == attempt)
                .unwrap()
                .3
        };
        assert!(when("strict", 1, 2) < when("strict", 2, 1), "{log:?}");
        assert!(
            when("strict", 2, 1) < when("slow", 1, 2),
            "2 waited for the non-strict handler's retry: {log:?}"
        );
    });
}

#[test]
fn a_retry_pause_too_long_for_an_instant_does_not_stop_the_worker() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        let failing: Vec<_> = [
            RetryPolicy::fixed(2, Duration::MAX),
            RetryPolicy::exponential(3, Duration::from_secs(u64::MAX / 2)).cap(Duration::MAX),
        ]
        .into_iter()
        .map(|policy| {
            bus.subscriber::<Order>().retry(policy).subscribe(
                |_: &Order, _: &Context| -> HandlerResult {
                    Err(HandlerError::transient("try again in a while"))
                },
            )
        })
        .collect();
        let handled = Arc::new(AtomicU64::new(0));
        let h = handled.clone();
        bus.subscribe(move |o: &Order, _: &Context| -> HandlerResult {
            h.fetch_add(o.id, Ordering::SeqCst);
            Ok(())
        });
        bus.publish(Order { id: 1 }).unwrap();
        bus.publish(Order { id: 2 }).unwrap();
        common::wait_until(10, || handled.load(Ordering::SeqCst) == 3);
        let metrics = bus.metrics();
        assert_eq!((metrics.failed, metrics.retried), (4, 0));
        // The drain would wait a century for the retries; unsubscribing
        // their handlers ends them, unrun, so the bus shuts down at once.
        for subscription in &failing {
            assert!(bus.unsubscribe(subscription));
        }
        let report = bus.shutdown();
        assert!(report.joined);
        assert_eq!((report.failed, report.delivered), (4, 2));
    });
}

/// A bus whose "billing" handler dead-letters every order, counting its
/// runs, with one dead letter in store; and the subscription.
fn bus_with_one_dead_letter() -> (Bus, Arc<AtomicU64>, diana_bus::Subscription) {
    let bus = Bus::builder().workers(1).build().unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let r = runs.clone();
    let billing = bus.subscriber::<Order>().name("billing").subscribe(
        move |_: &Order, _: &Context| -> HandlerResult {
            r.fetch_add(1, Ordering::SeqCst);
            Err(HandlerError::permanent("card declined"))
        },
    );
    bus.publish(Order { id: 1 }).unwrap();
    bus.flush();
    assert_eq!(bus.dead_letters().len(), 1);
    (bus, runs, billing)
}

/// Starts a replay of every letter whose filter waits at a gate; returns
/// once the filter runs, with the gate and the replay's thread.
fn replay_held_in_its_filter(bus: &Bus) -> (common::Gate, std::thread::JoinHandle<usize>) {
    let (gate, in_filter) = (common::Gate::default(), Arc::new(AtomicU32::new(0)));
    let replayer = {
        let (bus, gate, in_filter) = (bus.clone(), gate.clone(), in_filter.clone());
        std::thread::spawn(move || {
            bus.replay_dead_letters(|_| {
                in_filter.store(1, Ordering::SeqCst);
                gate.wait(); // a slow filter: logging, a lookup
                true
            })
        })
    };
    common::wait_until(10, || in_filter.load(Ordering::SeqCst) == 1);
    (gate, replayer)
}

#[test]
fn a_replay_racing_shutdown_keeps_its_letter_and_holds_nothing_open() {
    within(30, || {
        let (bus, runs, _billing) = bus_with_one_dead_letter();
        let (gate, replayer) = replay_held_in_its_filter(&bus);
        assert!(bus.shutdown().joined);
        gate.open();
        assert_eq!(replayer.join().unwrap(), 0, "the bus closed first");
        assert_eq!(bus.dead_letters().len(), 1, "the letter stays");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        bus.flush(); // before, it waited for good for the lost replay
    });
}

#[test]
fn a_letter_whose_subscription_goes_while_the_filter_runs_stays() {
    within(30, || {
        let (bus, runs, billing) = bus_with_one_dead_letter();
        let (gate, replayer) = replay_held_in_its_filter(&bus);
        assert!(bus.unsubscribe(&billing));
        gate.open();
        assert_eq!(replayer.join().unwrap(), 0);
        bus.flush();
        assert_eq!(bus.dead_letters().len(), 1, "the letter stays");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        bus.shutdown();
    });
}

#[test]
fn a_dead_letter_does_not_keep_its_unsubscribed_handler_alive() {
    within(30, || {
        /// Counts its drops.
        struct DropCount(Arc<AtomicU64>);
        impl Drop for DropCount {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let bus = Bus::builder().workers(1).build().unwrap();
        let dropped = Arc::new(AtomicU64::new(0));
        // What the handler holds: a resource, or a handle of the bus itself
        // (which kept the whole bus alive after its last handle was dropped).
        let (held, counted) = (bus.clone(), DropCount(dropped.clone()));
        let billing = bus.subscriber::<Order>().name("billing").subscribe(
            move |_: &Order, _: &Context| -> HandlerResult {
                let _keep = (&held, &counted);
                Err(HandlerError::permanent("card declined"))
            },
        );
        bus.publish(Order { id: 1 }).unwrap();
        bus.flush();
        assert!(bus.unsubscribe(&billing));
        common::wait_until(10, || dropped.load(Ordering::SeqCst) == 1);
        let letters = bus.dead_letters();
        assert_eq!(letters.len(), 1, "the letter stays");
        assert_eq!(letters[0].handler(), "billing");
        assert_eq!(bus.replay_dead_letters(|_| true), 0, "to no one");
    });
}

/// A bus whose only handler has dead-lettered `letters` orders.
fn bus_with_dead_letters(letters: u64) -> Bus {
    let bus = Bus::builder().workers(1).build().unwrap();
    bus.subscriber::<Order>()
        .name("broken")
        .subscribe(|_: &Order, _: &Context| -> HandlerResult {
            Err(HandlerError::permanent("down"))
        });
    for id in 0..letters {
        bus.publish(Order { id }).unwrap();
    }
    bus.flush();
    assert_eq!(bus.dead_letters().len() as u64, letters);
    bus
}

#[test]
fn a_replay_filter_that_panics_leaves_every_dead_letter() {
    within(30, || {
        let bus = bus_with_dead_letters(5);
        let mut seen = 0;
        let replay = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            bus.replay_dead_letters(|_| {
                seen += 1;
                assert!(seen < 3, "the filter broke");
                true
            })
        }));
        assert!(replay.is_err());
        assert_eq!(bus.dead_letters().len(), 5);
        assert_eq!(
            bus.replay_dead_letters(|letter| letter.event::<Order>().unwrap().id < 2),
            2
        );
        bus.flush();
        assert_eq!(bus.dead_letters().len(), 5, "replayed, and failed again");
    });
}

#[test]
fn a_replay_filter_may_look_at_the_dead_letters() {
    within(30, || {
        let bus = bus_with_dead_letters(3);
        let store = bus.clone();
        // the newest letter only
        let replayed = bus.replay_dead_letters(|letter| {
            store.dead_letters().last().map(|newest| newest.event_id()) == Some(letter.event_id())
        });
        assert_eq!(replayed, 1);
        assert_eq!(bus.dead_letters().len(), 2);
    });
}
