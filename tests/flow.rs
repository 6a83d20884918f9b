//! Publish and subscribe end to end: counts, sums, order, types, tenants,
//! stages, metrics.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::within;
use diana_bus::{Bus, Context, Event, HandlerResult, Meta, TenantId};

#[derive(Clone, Copy)]
struct Tick {
    publisher: u64,
    seq: u64,
    user: u64,
}
impl Event for Tick {
    fn key(&self) -> Option<u64> {
        Some(self.user)
    }
}

/// `publishers` threads each publish `per` ticks, for users `seq % users`.
fn publish_from_threads(bus: &Bus, publishers: u64, per: u64, users: u64) {
    let threads: Vec<_> = (0..publishers)
        .map(|publisher| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for seq in 0..per {
                    let tick = Tick {
                        publisher,
                        seq,
                        user: seq % users,
                    };
                    bus.publish(tick).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn many_publishers_and_subscribers_get_exact_counts_and_sums() {
    within(60, || {
        const PUBLISHERS: u64 = 4;
        const PER: u64 = 20_000;
        const SUBSCRIBERS: usize = 3;
        let bus = Bus::builder()
            .workers(3)
            .shards(8)
            .capacity(256)
            .build()
            .unwrap();
        let sums: Vec<Arc<AtomicU64>> = (0..SUBSCRIBERS).map(|_| Arc::default()).collect();
        let counts: Vec<Arc<AtomicU64>> = (0..SUBSCRIBERS).map(|_| Arc::default()).collect();
        for (sum, count) in sums.iter().zip(&counts) {
            let (sum, count) = (sum.clone(), count.clone());
            bus.subscribe(move |t: &Tick, _: &Context| -> HandlerResult {
                sum.fetch_add(t.seq, Ordering::Relaxed);
                count.fetch_add(1, Ordering::Relaxed);
                Ok(())
            });
        }
        publish_from_threads(&bus, PUBLISHERS, PER, 97);
        bus.flush();
        let expected_sum = PUBLISHERS * PER * (PER - 1) / 2;
        for (sum, count) in sums.iter().zip(&counts) {
            assert_eq!(count.load(Ordering::Relaxed), PUBLISHERS * PER);
            assert_eq!(sum.load(Ordering::Relaxed), expected_sum);
        }
        let metrics = bus.metrics();
        assert_eq!(metrics.published, PUBLISHERS * PER);
        assert_eq!(metrics.dispatched, PUBLISHERS * PER);
        assert_eq!(metrics.delivered, PUBLISHERS * PER * SUBSCRIBERS as u64);
        assert_eq!(metrics.failed, 0);
        let row = metrics.event("Tick").unwrap();
        assert_eq!(row.delivered, metrics.delivered);
    });
}

#[test]
fn one_keys_events_arrive_in_publish_order_from_each_publisher() {
    within(60, || {
        const PER: u64 = 10_000;
        let bus = Bus::builder()
            .workers(2)
            .shards(4)
            .capacity(64)
            .build()
            .unwrap();
        // last seq seen per (publisher, user)
        let last = Arc::new(Mutex::new(
            std::collections::HashMap::<(u64, u64), u64>::new(),
        ));
        let violations = Arc::new(AtomicU64::new(0));
        let (l, v) = (last.clone(), violations.clone());
        bus.subscribe(move |t: &Tick, ctx: &Context| -> HandlerResult {
            assert_eq!(ctx.key(), t.user);
            let mut last = l.lock().unwrap();
            if let Some(prev) = last.insert((t.publisher, t.user), t.seq) {
                if prev >= t.seq {
                    v.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        });
        publish_from_threads(&bus, 3, PER, 5);
        bus.flush();
        assert_eq!(violations.load(Ordering::Relaxed), 0);
        assert_eq!(last.lock().unwrap().len(), 15);
    });
}

struct Small(u8);
impl Event for Small {}
struct Inline64([u64; 8]);
impl Event for Inline64 {}
struct Large(Vec<u64>, [u64; 32]);
impl Event for Large {}
struct Empty;
impl Event for Empty {}

#[test]
fn mixed_event_types_and_sizes_reach_only_their_own_handlers() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let s = seen.clone();
        bus.subscribe(move |e: &Small, _: &Context| -> HandlerResult {
            s.lock().unwrap().push(format!("small {}", e.0));
            Ok(())
        });
        let s = seen.clone();
        bus.subscribe(move |e: &Inline64, _: &Context| -> HandlerResult {
            s.lock()
                .unwrap()
                .push(format!("inline {}", e.0.iter().sum::<u64>()));
            Ok(())
        });
        let s = seen.clone();
        bus.subscribe(move |e: &Large, _: &Context| -> HandlerResult {
            s.lock()
                .unwrap()
                .push(format!("large {} {}", e.0.len(), e.1[31]));
            Ok(())
        });
        let s = seen.clone();
        bus.subscribe(move |_: &Empty, _: &Context| -> HandlerResult {
            s.lock().unwrap().push("empty".into());
            Ok(())
        });
        bus.publish(Small(7)).unwrap();
        bus.publish(Inline64([1; 8])).unwrap();
        bus.publish(Large(vec![1, 2, 3], [9; 32])).unwrap();
        bus.publish(Empty).unwrap();
        bus.publish(Unhandled)
            .unwrap_or_else(|_| panic!("a type nobody handles is still accepted"));
        bus.flush();
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, ["empty", "inline 8", "large 3 9", "small 7"]);
        let metrics = bus.metrics();
        assert_eq!(metrics.published, 5);
        assert_eq!(metrics.delivered, 4);
        assert_eq!(
            metrics
                .event("Unhandled")
                .map(|r| (r.dispatched, r.delivered)),
            Some((1, 0))
        );
    });
}

struct Unhandled;
impl Event for Unhandled {}

#[test]
fn tenant_scoped_subscriptions_see_only_their_tenant() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        let tenants = Arc::new(Mutex::new(Vec::new()));
        let t = tenants.clone();
        bus.subscriber::<Small>().tenant(TenantId(7)).subscribe(
            move |_: &Small, ctx: &Context| -> HandlerResult {
                t.lock().unwrap().push(ctx.tenant());
                Ok(())
            },
        );
        let all = Arc::new(AtomicU64::new(0));
        let a = all.clone();
        bus.subscribe(move |_: &Small, _: &Context| -> HandlerResult {
            a.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        for tenant in [7, 8, 7, 0, 9, 7] {
            bus.publish_with(Small(1), Meta::new().tenant(TenantId(tenant)))
                .unwrap();
        }
        bus.publish(Small(2)).unwrap();
        bus.flush();
        assert_eq!(*tenants.lock().unwrap(), [TenantId(7); 3]);
        assert_eq!(all.load(Ordering::Relaxed), 7);
    });
}

#[test]
fn stages_run_in_order_within_an_event() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        for (stage, label) in [(2, "c"), (0, "a"), (1, "b1"), (1, "b2")] {
            let o = order.clone();
            bus.subscriber::<Small>()
                .stage(stage)
                .name(label)
                .subscribe(move |_: &Small, _: &Context| -> HandlerResult {
                    o.lock().unwrap().push(label);
                    Ok(())
                });
        }
        bus.publish(Small(0)).unwrap();
        bus.flush();
        assert_eq!(*order.lock().unwrap(), ["a", "b1", "b2", "c"]);
    });
}

#[test]
fn context_carries_identity_and_follow_ups_inherit_the_tenant_and_cause() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        let parent_ids = Arc::new(Mutex::new(Vec::new()));
        let p = parent_ids.clone();
        bus.subscribe(move |_: &Tick, ctx: &Context| -> HandlerResult {
            assert_eq!(ctx.attempt(), 1);
            assert_eq!(ctx.cause(), None);
            p.lock().unwrap().push(ctx.event_id());
            ctx.publish(Small(1));
            Ok(())
        });
        let children = Arc::new(Mutex::new(Vec::new()));
        let c = children.clone();
        bus.subscribe(move |_: &Small, ctx: &Context| -> HandlerResult {
            c.lock()
                .unwrap()
                .push((ctx.cause(), ctx.tenant(), ctx.key()));
            Ok(())
        });
        let id = bus
            .publish_with(
                Tick {
                    publisher: 0,
                    seq: 0,
                    user: 5,
                },
                Meta::new().tenant(TenantId(3)).id(diana_bus::EventId(77)),
            )
            .unwrap();
        assert_eq!(id, diana_bus::EventId(77));
        bus.flush();
        assert_eq!(*parent_ids.lock().unwrap(), [id]);
        assert_eq!(*children.lock().unwrap(), [(Some(id), TenantId(3), 0)]);
    });
}

#[test]
fn a_follow_up_of_an_event_with_explicit_id_zero_has_that_cause() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        bus.subscribe(|_: &Tick, ctx: &Context| -> HandlerResult {
            ctx.publish(Small(1));
            Ok(())
        });
        let causes = Arc::new(Mutex::new(Vec::new()));
        let c = causes.clone();
        bus.subscribe(move |_: &Small, ctx: &Context| -> HandlerResult {
            c.lock().unwrap().push(ctx.cause());
            Ok(())
        });
        let zero = diana_bus::EventId(0);
        let tick = Tick {
            publisher: 0,
            seq: 0,
            user: 5,
        };
        assert_eq!(bus.publish_with(tick, Meta::new().id(zero)).unwrap(), zero);
        bus.flush();
        assert_eq!(*causes.lock().unwrap(), [Some(zero)]);
    });
}

#[test]
fn flush_waits_for_chains_of_follow_ups() {
    within(60, || {
        struct Hop(u32);
        impl Event for Hop {
            fn key(&self) -> Option<u64> {
                Some(u64::from(self.0))
            }
        }
        let bus = Bus::builder()
            .workers(2)
            .shards(4)
            .capacity(4)
            .build()
            .unwrap();
        let reached = Arc::new(AtomicU64::new(0));
        let r = reached.clone();
        bus.subscribe(move |h: &Hop, ctx: &Context| -> HandlerResult {
            if h.0 < 50 {
                ctx.publish(Hop(h.0 + 1));
            } else {
                r.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        for _ in 0..20 {
            bus.publish(Hop(0)).unwrap();
        }
        bus.flush();
        assert_eq!(reached.load(Ordering::Relaxed), 20);
        assert_eq!(bus.metrics().published, 20 * 51);
    });
}

mod alpha {
    pub struct Ping;
    impl diana_bus::Event for Ping {}
}
mod beta {
    pub struct Ping;
    impl diana_bus::Event for Ping {}
}

#[test]
fn two_event_types_of_one_name_get_a_metrics_row_each() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        bus.subscribe(|_: &alpha::Ping, _: &Context| -> HandlerResult { Ok(()) });
        bus.subscribe(|_: &beta::Ping, _: &Context| -> HandlerResult {
            Err(diana_bus::HandlerError::permanent("no"))
        });
        bus.publish(alpha::Ping).unwrap();
        for _ in 0..2 {
            bus.publish(beta::Ping).unwrap();
        }
        bus.flush();
        let mut rows: Vec<_> = bus
            .metrics()
            .per_type
            .iter()
            .map(|row| (row.name, row.dispatched, row.delivered, row.failed))
            .collect();
        rows.sort();
        assert_eq!(rows, [("Ping", 1, 1, 0), ("Ping", 2, 0, 2)]);
    });
}
