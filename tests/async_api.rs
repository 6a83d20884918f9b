//! The async adapter on tokio: awaitable publish and its cancel safety,
//! publish-and-wait, request/reply, scatter/gather and async handlers.
// Async handlers are not built for loom (see `async_api`).
#![cfg(not(diana_bus_loom))]

mod common;

use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{within, Gate, OpenOnDrop};
use diana_bus::{
    Backpressure, Bus, Context, Event, EventId, HandlerError, HandlerResult, Meta, PublishError,
    RequestError, RetryPolicy, TenantId,
};

struct Job(u64);
impl Event for Job {}

/// Counts its drops, to tell a dropped event from a delivered one.
struct Tracked(Arc<AtomicUsize>);
impl Event for Tracked {}
impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// One worker, one shard of 2 slots, batches of 1, refusing when full:
/// a bus that one held handler fills.
fn tiny_bus() -> diana_bus::BusBuilder {
    Bus::builder()
        .workers(1)
        .shards(1)
        .capacity(2)
        .batch(1)
        .backpressure(Backpressure::Reject)
}

/// One worker, a 2-slot ring, and a handler for `Tracked` that waits at
/// `gate` and counts its runs.
fn gated_bus(gate: &Gate) -> (Bus, Arc<AtomicUsize>) {
    let bus = tiny_bus().build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let (r, g) = (runs.clone(), gate.clone());
    bus.subscribe(move |_: &Tracked, _: &Context| -> HandlerResult {
        g.wait();
        r.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    (bus, runs)
}

/// One worker, one 2-slot shard, batch 1, an optional tenant quota, and a
/// `Job` handler that flags its entry and waits at the gate.
fn held_bus(quota: Option<u64>) -> (Bus, Gate, Arc<AtomicBool>) {
    let bus = match quota {
        Some(quota) => tiny_bus().tenant_quota(quota),
        None => tiny_bus(),
    };
    let bus = bus.build().unwrap();
    let (gate, entered) = (Gate::default(), Arc::new(AtomicBool::new(false)));
    let (g, e) = (gate.clone(), entered.clone());
    bus.subscribe(move |_: &Job, _: &Context| -> HandlerResult {
        e.store(true, Ordering::SeqCst);
        g.wait();
        Ok(())
    });
    (bus, gate, entered)
}

/// Holds the worker in the handler, then fills the ring.
fn hold_and_fill(bus: &Bus, entered: &AtomicBool) {
    bus.publish(Job(0)).unwrap();
    common::wait_until(10, || entered.load(Ordering::SeqCst));
    while bus.try_publish(Job(1)).is_ok() {}
}

/// Counts the polls of the future it wraps.
struct CountPolls<F>(std::pin::Pin<Box<F>>, Arc<AtomicUsize>);
impl<F: std::future::Future> std::future::Future for CountPolls<F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.as_mut().poll(cx)
    }
}

#[test]
fn an_async_publisher_waiting_for_its_ring_sleeps_with_quotas_on_too() {
    within(30, || {
        for quota in [None, Some(1_000)] {
            let (bus, gate, entered) = held_bus(quota);
            let _open = OpenOnDrop(gate.clone());
            hold_and_fill(&bus, &entered);
            let rt = runtime();
            let polls = Arc::new(AtomicUsize::new(0));
            let (b, p) = (bus.clone(), polls.clone());
            let waiting = rt.spawn(async move {
                CountPolls(Box::pin(b.publish_async(Job(2))), p)
                    .await
                    .is_ok()
            });
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
            let polled = polls.load(Ordering::SeqCst);
            gate.open();
            assert!(rt.block_on(waiting).unwrap());
            bus.flush();
            // Before, each try took a quota unit, gave it back on the full
            // ring and woke its own task: some 50,000 polls.
            assert!(
                polled <= 3,
                "{quota:?}: polled {polled} times while the ring stayed full"
            );
        }
    });
}

#[test]
fn an_async_publisher_waiting_for_quota_gets_closed_when_the_bus_closes() {
    within(30, || {
        let (bus, gate, entered) = held_bus(Some(1));
        let _open = OpenOnDrop(gate.clone());
        let tenant = Meta::new().tenant(TenantId(5));
        // Tenant 5's only unit, held in the handler.
        bus.publish_with(Job(1), tenant).unwrap();
        common::wait_until(10, || entered.load(Ordering::SeqCst));
        let rt = runtime();
        let b = bus.clone();
        let waiting = rt.spawn(async move { b.publish_async_with(Job(2), tenant).await });
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
        assert!(!waiting.is_finished(), "over its quota: it waits");
        let b = bus.clone();
        let closer = std::thread::spawn(move || b.shutdown());
        common::wait_until(10, || bus.is_closed());
        let outcome =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), waiting).await });
        gate.open();
        closer.join().unwrap();
        let outcome = outcome.expect("still waiting on a closed bus").unwrap();
        assert!(matches!(outcome, Err(PublishError::Closed(Job(2)))));
    });
}

#[test]
fn a_cancelled_wait_for_quota_leaves_no_waker_with_the_rings() {
    within(30, || {
        struct Watched;
        impl std::task::Wake for Watched {
            fn wake(self: Arc<Self>) {}
        }
        let bus = Bus::builder()
            .workers(1)
            .shards(8)
            .batch(1)
            .tenant_quota(1)
            .build()
            .unwrap();
        let (gate, entered) = (Gate::default(), Arc::new(AtomicBool::new(false)));
        let (g, e) = (gate.clone(), entered.clone());
        bus.subscribe(move |_: &Keyed, _: &Context| -> HandlerResult {
            e.store(true, Ordering::SeqCst);
            g.wait();
            Ok(())
        });
        let _open = OpenOnDrop(gate.clone());
        let tenant = Meta::new().tenant(TenantId(1));
        bus.publish_with(Keyed { key: 0, seq: 0 }, tenant).unwrap();
        common::wait_until(10, || entered.load(Ordering::SeqCst));
        let watched: Vec<_> = (1..20)
            .map(|key| {
                let watched = Arc::new(Watched);
                let waker = std::task::Waker::from(watched.clone());
                let mut publish = Box::pin(bus.publish_async_with(Keyed { key, seq: 0 }, tenant));
                let polled = publish
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(&waker));
                assert!(polled.is_pending(), "over quota: it waits");
                watched
            })
            .collect();
        gate.open();
        bus.flush();
        // The quota's waiters are woken (and let go) by the batch that
        // gives the unit back; a ring's only by a batch of its own shard.
        let kept = watched.iter().filter(|w| Arc::strong_count(w) > 1).count();
        assert_eq!(kept, 0, "wakers of cancelled publishes still held");
    });
}

#[test]
fn publish_async_waits_for_room_without_blocking_the_thread() {
    within(30, || {
        let gate = Gate::default();
        let (bus, runs) = gated_bus(&gate);
        let drops = Arc::new(AtomicUsize::new(0));
        runtime().block_on(async {
            let publisher = async {
                for _ in 0..10 {
                    bus.publish_async(Tracked(drops.clone())).await.unwrap();
                }
            };
            // On the same single thread: runs while the publisher waits
            // for room, which a blocking publish would not allow.
            let opener = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert_eq!(runs.load(Ordering::SeqCst), 0, "the gate is still shut");
                gate.open();
            };
            tokio::join!(publisher, opener);
        });
        bus.flush();
        assert_eq!(runs.load(Ordering::SeqCst), 10);
        let metrics = bus.metrics();
        assert_eq!(
            (metrics.published, metrics.rejected),
            (10, 0),
            "waiting for room is not a refusal"
        );
    });
}

#[test]
fn a_dropped_publish_future_either_published_the_event_or_dropped_it() {
    within(30, || {
        let gate = Gate::default();
        let (bus, runs) = gated_bus(&gate);
        let drops = Arc::new(AtomicUsize::new(0));
        let outcomes: Vec<bool> = runtime().block_on(async {
            let mut outcomes = Vec::new();
            for _ in 0..8 {
                let publish = bus.publish_async(Tracked(drops.clone()));
                let done = tokio::time::timeout(Duration::from_millis(5), publish).await;
                outcomes.push(done.is_ok());
            }
            outcomes
        });
        let published = outcomes.iter().filter(|ok| **ok).count();
        assert!(published >= 2, "the ring holds 2 while the handler waits");
        assert!(
            published < 8,
            "the ring cannot take all 8 with the gate shut"
        );
        let cancelled = 8 - published;
        assert_eq!(
            drops.load(Ordering::SeqCst),
            cancelled,
            "a cancelled publish drops its event at once"
        );
        gate.open();
        bus.flush();
        assert_eq!(runs.load(Ordering::SeqCst), published);
        assert_eq!(bus.metrics().published, published as u64);
        drop(bus);
        assert_eq!(drops.load(Ordering::SeqCst), 8);
    });
}

/// A waker that counts its wakes; its `Arc`'s count tells how many clones
/// of it are alive.
#[derive(Default)]
struct CountingWaker(AtomicUsize);
impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_publish_that_stops_waiting_takes_its_waker_back() {
    within(30, || {
        let (bus, gate, entered) = held_bus(None);
        let _open = OpenOnDrop(gate.clone());
        hold_and_fill(&bus, &entered);
        let state = Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(state.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        // Cancelled while it waits for room.
        let mut cancelled = Box::pin(bus.publish_async(Job(2)));
        assert!(cancelled.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            Arc::strong_count(&state),
            3,
            "the ring's queue holds a clone"
        );
        drop(cancelled);
        assert_eq!(Arc::strong_count(&state), 2, "taken back when cancelled");
        // Completed after a wait: taken back when dropped, even before the
        // queue is next notified.
        let mut waits = Box::pin(bus.publish_async(Job(3)));
        assert!(waits.as_mut().poll(&mut cx).is_pending());
        gate.open();
        common::wait_until(10, || state.0.load(Ordering::SeqCst) > 0);
        assert!(matches!(
            waits.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Ok(_))
        ));
        drop(waits);
        assert_eq!(Arc::strong_count(&state), 2);
    });
}

#[test]
fn one_of_two_waiting_publishes_of_a_task_cancelled_leaves_the_other_woken() {
    within(30, || {
        let (bus, gate, entered) = held_bus(None);
        let _open = OpenOnDrop(gate.clone());
        hold_and_fill(&bus, &entered);
        // Both futures wait with the one waker of their task, as in `join!`.
        let state = Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(state.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut first = Box::pin(bus.publish_async(Job(2)));
        let mut second = Box::pin(bus.publish_async(Job(3)));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        drop(first);
        gate.open();
        common::wait_until(10, || state.0.load(Ordering::SeqCst) > 0);
        assert!(matches!(
            second.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Ok(_))
        ));
    });
}

/// A task as a minimal executor keeps it: its waker owns its future, so
/// the last clone of the waker dropped drops the future.
struct OwningTask {
    _future: std::sync::Mutex<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
}
impl std::task::Wake for OwningTask {
    fn wake(self: Arc<Self>) {}
}

#[test]
fn a_replaced_waker_is_dropped_outside_the_queue_lock() {
    within(10, || {
        let (bus, gate, entered) = held_bus(None);
        let _open = OpenOnDrop(gate.clone());
        hold_and_fill(&bus, &entered);
        let plain = std::task::Waker::from(Arc::new(CountingWaker::default()));
        // Task A's future waits for room in the ring.
        let mine = bus.clone();
        let mut waiting = Box::pin(async move {
            let _ = mine.publish_async(Job(2)).await;
        });
        let polled = waiting
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&plain));
        assert!(polled.is_pending());
        let task_a = std::task::Waker::from(Arc::new(OwningTask {
            _future: std::sync::Mutex::new(waiting),
        }));
        // Another publish, polled under task A's waker, then task A let go
        // of: only the ring's queue still holds its waker.
        let mut moved = Box::pin(bus.publish_async(Job(3)));
        let polled = moved
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&task_a));
        assert!(polled.is_pending());
        drop(task_a);
        // Polled under another waker, the publish replaces task A's in the
        // queue, which drops task A, whose waiting publish then takes its
        // own waker back from the same queue: under the queue's lock, that
        // deadlocked.
        let polled = moved
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&plain));
        assert!(polled.is_pending());
    });
}

#[test]
fn publish_async_after_shutdown_gives_the_event_back() {
    let bus = Bus::builder().workers(1).build().unwrap();
    bus.shutdown();
    let refused = runtime().block_on(bus.publish_async(Job(7)));
    assert!(matches!(refused, Err(PublishError::Closed(Job(7)))));
}

#[test]
fn publish_and_wait_reports_every_handler_after_its_retries() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        bus.subscriber::<Job>()
            .name("steady")
            .subscribe(|_: &Job, _: &Context| -> HandlerResult { Ok(()) });
        let flaky_done = Arc::new(AtomicBool::new(false));
        let done = flaky_done.clone();
        bus.subscriber::<Job>()
            .name("flaky")
            .retry(RetryPolicy::fixed(5, Duration::from_millis(5)))
            .subscribe(move |_: &Job, ctx: &Context| -> HandlerResult {
                if ctx.attempt() < 3 {
                    return Err(HandlerError::transient(format!("try {}", ctx.attempt())));
                }
                done.store(true, Ordering::SeqCst);
                Ok(())
            });
        bus.subscriber::<Job>()
            .name("broken")
            .subscribe(|_: &Job, _: &Context| -> HandlerResult {
                Err(HandlerError::permanent("bad job"))
            });
        let report = runtime().block_on(bus.publish_and_wait(Job(1))).unwrap();
        assert!(
            flaky_done.load(Ordering::SeqCst),
            "resolved before the retries"
        );
        assert_eq!(
            (report.succeeded, report.failed, report.dead_lettered),
            (2, 3, 1)
        );
        let mut failures: Vec<_> = report
            .failures
            .iter()
            .map(|f| {
                (
                    f.handler.as_str(),
                    f.attempt,
                    f.error.as_str(),
                    f.dead_lettered,
                )
            })
            .collect();
        failures.sort();
        assert_eq!(
            failures,
            [
                ("broken", 1, "bad job", true),
                ("flaky", 1, "try 1", false),
                ("flaky", 2, "try 2", false),
            ]
        );
        assert!(!report.all_succeeded());
        assert_ne!(report.id, EventId(0));
        assert_eq!(bus.dead_letters()[0].event_id(), report.id);
    });
}

#[test]
fn publish_and_wait_of_a_duplicate_resolves_at_once() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        bus.subscribe(|_: &Job, _: &Context| -> HandlerResult { Ok(()) });
        let rt = runtime();
        let meta = Meta::new().id(EventId(42));
        let first = rt
            .block_on(bus.publish_and_wait_with(Job(1), meta))
            .unwrap();
        assert_eq!((first.succeeded, first.deduplicated), (1, false));
        let again = rt
            .block_on(bus.publish_and_wait_with(Job(1), meta))
            .unwrap();
        assert_eq!((again.succeeded, again.deduplicated), (0, true));
        assert_eq!(again.id, EventId(42));
    });
}

struct Balance {
    user: u64,
}
impl Event for Balance {
    fn key(&self) -> Option<u64> {
        Some(self.user)
    }
}

#[test]
fn requests_get_an_answer_or_a_precise_error() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        let rt = runtime();
        let second = Duration::from_secs(5);
        let asked = |user| rt.block_on(bus.request::<Balance, u64>(Balance { user }, second));
        assert_eq!(asked(1), Err(RequestError::NoResponder));

        bus.responder::<Balance, u64>()
            .tenant(TenantId(3))
            .respond(|b: &Balance, _: &Context| -> Result<u64, HandlerError> { Ok(b.user) });
        assert_eq!(
            asked(1),
            Err(RequestError::NoResponder),
            "the only responder serves another tenant"
        );
        let scoped = rt.block_on(async {
            bus.gather::<Balance, u64>(Balance { user: 4 })
                .meta(Meta::new().tenant(TenantId(3)))
                .await
        });
        let answers: Vec<u64> = scoped
            .unwrap()
            .answers
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        assert_eq!(answers, [4]);

        bus.responder::<Balance, u64>().name("ledger").respond(
            |b: &Balance, _: &Context| -> Result<u64, HandlerError> {
                match b.user {
                    0 => Err(HandlerError::permanent("no such user")),
                    user => Ok(user * 10),
                }
            },
        );
        assert_eq!(asked(5), Ok(50));
        assert_eq!(
            asked(0),
            Err(RequestError::Failed("ledger: no such user".into()))
        );
    });
}

#[test]
fn a_request_times_out_while_it_waits_for_room_and_is_not_published() {
    within(30, || {
        let (bus, gate, entered) = held_bus(None);
        let _open = OpenOnDrop(gate.clone());
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        bus.respond(
            move |b: &Balance, _: &Context| -> Result<u64, HandlerError> {
                a.fetch_add(1, Ordering::SeqCst);
                Ok(b.user)
            },
        );
        hold_and_fill(&bus, &entered);
        let rt = runtime();
        let late = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                bus.request::<Balance, u64>(Balance { user: 1 }, Duration::from_millis(30)),
            )
            .await
        });
        let gathered = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                bus.gather::<Balance, u64>(Balance { user: 1 })
                    .deadline(Duration::from_millis(30))
                    .into_future(),
            )
            .await
        });
        gate.open();
        bus.flush();
        let late = late.expect("the deadline ended the wait");
        assert_eq!(late, Err(RequestError::Timeout));
        // Not a gather that ran (nobody was asked): a failure.
        let gathered = gathered.expect("the deadline ended the wait");
        assert_eq!(gathered, Err(RequestError::Timeout));
        assert_eq!(asked.load(Ordering::SeqCst), 0, "not published");
    });
}

#[test]
fn a_request_is_a_timeout_unless_every_responder_failed() {
    within(30, || {
        let gate = Gate::default();
        let _open = OpenOnDrop(gate.clone());
        let bus = Bus::builder().workers(2).build().unwrap();
        bus.responder::<Balance, u64>().name("broken").respond(
            |_: &Balance, _: &Context| -> Result<u64, HandlerError> {
                Err(HandlerError::permanent("down"))
            },
        );
        let g = gate.clone();
        bus.responder::<Balance, u64>().name("slow").respond(
            move |b: &Balance, _: &Context| -> Result<u64, HandlerError> {
                g.wait();
                Ok(b.user)
            },
        );
        let got = runtime()
            .block_on(bus.request::<Balance, u64>(Balance { user: 1 }, Duration::from_millis(50)));
        gate.open();
        bus.flush();
        assert_eq!(
            got,
            Err(RequestError::Timeout),
            "one of two responders failed"
        );
    });
}

#[test]
fn a_report_counts_a_handler_unsubscribed_before_its_retry_as_abandoned() {
    within(30, || {
        let rt = runtime_with_threads(1);
        let bus = bus_on(&rt, 1);
        let failed = Arc::new(AtomicUsize::new(0));
        let an_hour = RetryPolicy::fixed(5, Duration::from_secs(3600));
        let f = failed.clone();
        let sync = bus.subscriber::<Job>().retry(an_hour).subscribe(
            move |_: &Job, _: &Context| -> HandlerResult {
                f.fetch_add(1, Ordering::SeqCst);
                Err(HandlerError::transient("later"))
            },
        );
        let f = failed.clone();
        let not_sync = bus
            .subscriber::<Keyed>()
            .retry(an_hour)
            .subscribe_async(move |_: Arc<Keyed>, _: diana_bus::AsyncContext| {
                f.fetch_add(1, Ordering::SeqCst);
                async { Err(HandlerError::transient("later")) }
            })
            .unwrap();
        let b = bus.clone();
        let sync_wait = rt.spawn(async move { b.publish_and_wait(Job(1)).await });
        let b = bus.clone();
        let async_wait =
            rt.spawn(async move { b.publish_and_wait(Keyed { key: 1, seq: 0 }).await });
        common::wait_until(10, || failed.load(Ordering::SeqCst) == 2);
        assert!(bus.unsubscribe(&sync) && bus.unsubscribe(&not_sync));
        let sync_report =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), sync_wait).await });
        let async_report =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), async_wait).await });
        let sync_report = sync_report
            .expect("the retries end at once")
            .unwrap()
            .unwrap();
        let async_report = async_report
            .expect("the retries end at once")
            .unwrap()
            .unwrap();
        for report in [sync_report, async_report] {
            let counts = (
                report.succeeded,
                report.failed,
                report.dead_lettered,
                report.abandoned,
            );
            assert_eq!(counts, (0, 1, 0, 1));
            assert!(!report.all_succeeded(), "the handler never succeeded");
        }
    });
}

#[test]
fn a_duplicate_request_fails_at_once_as_a_duplicate() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        let rt = runtime();
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        bus.responder::<Balance, u64>().name("ledger").respond(
            move |b: &Balance, _: &Context| -> Result<u64, HandlerError> {
                a.fetch_add(1, Ordering::SeqCst);
                Ok(b.user)
            },
        );
        let meta = Meta::new().id(EventId(7));
        let request = |user| {
            rt.block_on(async {
                bus.gather::<Balance, u64>(Balance { user })
                    .meta(meta)
                    .deadline(Duration::from_secs(60))
                    .await
            })
        };
        assert_eq!(request(1).unwrap().answer("ledger"), Some(&1));
        let started = std::time::Instant::now();
        assert_eq!(request(2), Err(RequestError::Duplicate(EventId(7))));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not waiting out the deadline"
        );
        bus.flush();
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "a duplicate is not handled"
        );
    });
}

#[test]
fn a_request_times_out_and_the_responder_still_runs() {
    within(30, || {
        let gate = Gate::default();
        let bus = Bus::builder().workers(2).build().unwrap();
        let answered = Arc::new(AtomicBool::new(false));
        let (g, a) = (gate.clone(), answered.clone());
        bus.respond(
            move |_: &Balance, _: &Context| -> Result<u64, HandlerError> {
                g.wait();
                a.store(true, Ordering::SeqCst);
                Ok(1)
            },
        );
        let started = std::time::Instant::now();
        let late = runtime()
            .block_on(bus.request::<Balance, u64>(Balance { user: 1 }, Duration::from_millis(30)));
        assert_eq!(late, Err(RequestError::Timeout));
        assert!(started.elapsed() >= Duration::from_millis(30));
        gate.open();
        bus.flush();
        assert!(answered.load(Ordering::SeqCst));
    });
}

struct Interaction;
impl Event for Interaction {}

#[test]
fn a_gather_counting_on_more_answers_than_responders_ends_when_they_are_all_in() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        for name in ["one", "two"] {
            bus.responder::<Interaction, &str>().name(name).respond(
                move |_: &Interaction, _: &Context| -> Result<&str, HandlerError> { Ok(name) },
            );
        }
        // Two responders can never give `usize::MAX` answers: the gather
        // ends when the request is fully handled, without a deadline.
        let gathered = runtime()
            .block_on(async {
                bus.gather::<Interaction, &str>(Interaction)
                    .expect(usize::MAX)
                    .await
            })
            .unwrap();
        assert_eq!(gathered.answers.len(), 2);
        assert!(gathered.failed.is_empty());
    });
}

#[test]
fn gather_records_who_answered_failed_and_timed_out() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        let answer = |value: &'static str| {
            move |_: &Interaction, _: &Context| -> Result<&'static str, HandlerError> { Ok(value) }
        };
        bus.responder::<Interaction, &str>()
            .name("gamification")
            .respond(answer("points"));
        bus.responder::<Interaction, &str>()
            .name("narrative")
            .respond(answer("chapter 2"));
        let attempts = Arc::new(AtomicUsize::new(0));
        let tries = attempts.clone();
        bus.responder::<Interaction, &str>()
            .name("admin")
            .retry(RetryPolicy::fixed(3, Duration::from_millis(1)))
            .respond(
                move |_: &Interaction, _: &Context| -> Result<&str, HandlerError> {
                    tries.fetch_add(1, Ordering::SeqCst);
                    Err(HandlerError::transient("admin is down"))
                },
            );
        // Still retrying at the deadline: it has not answered in time.
        let calm = Arc::new(AtomicBool::new(false));
        let c = calm.clone();
        bus.responder::<Interaction, &str>()
            .name("emotional")
            .retry(RetryPolicy::fixed(2, Duration::from_millis(300)))
            .respond(
                move |_: &Interaction, _: &Context| -> Result<&str, HandlerError> {
                    if c.load(Ordering::SeqCst) {
                        Ok("calm")
                    } else {
                        Err(HandlerError::transient("upset"))
                    }
                },
            );
        let rt = runtime();
        let gathered = rt
            .block_on(async {
                bus.gather::<Interaction, &str>(Interaction)
                    .deadline(Duration::from_millis(100))
                    .await
            })
            .unwrap();
        assert_eq!(gathered.answer("gamification"), Some(&"points"));
        assert_eq!(gathered.answer("narrative"), Some(&"chapter 2"));
        assert_eq!(
            gathered.failed,
            [("admin".to_string(), "admin is down".to_string())]
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 3, "retried, then reported");
        assert_eq!(gathered.timed_out, ["emotional"]);
        assert!(!gathered.is_complete());
        calm.store(true, Ordering::SeqCst);

        // Without a deadline, a gather waits for every responder's end.
        let all = rt
            .block_on(async { bus.gather::<Interaction, &str>(Interaction).await })
            .unwrap();
        assert_eq!(all.answers.len(), 3);
        assert_eq!(all.failed.len(), 1);
        assert!(all.timed_out.is_empty());

        // Expecting named responders returns as soon as they are in.
        let named = rt
            .block_on(async {
                bus.gather::<Interaction, &str>(Interaction)
                    .expect(["gamification", "narrative"])
                    .await
            })
            .unwrap();
        assert!(named.answer("gamification").is_some() && named.answer("narrative").is_some());
        assert!(named.timed_out.is_empty());
        bus.flush();
    });
}

#[test]
fn a_gather_waits_for_every_responder_when_two_share_a_name() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        bus.responder::<Interaction, u32>()
            .name("x")
            .respond(|_: &Interaction, _: &Context| -> Result<u32, HandlerError> { Ok(1) });
        bus.responder::<Interaction, u32>().name("x").respond(
            |_: &Interaction, _: &Context| -> Result<u32, HandlerError> {
                std::thread::sleep(Duration::from_millis(100));
                Ok(2)
            },
        );
        let gathered = runtime()
            .block_on(async {
                bus.gather::<Interaction, u32>(Interaction)
                    .deadline(Duration::from_secs(10))
                    .await
            })
            .unwrap();
        let mut answers: Vec<_> = gathered.answers.iter().map(|(_, a)| *a).collect();
        answers.sort();
        assert_eq!(answers, [1, 2], "the slower \"x\" was waited for");
        assert!(gathered.is_complete());
    });
}

/// A responder waiting out an hour's retry pause when it is unsubscribed:
/// the request's handling ends without an answer.
fn unsubscribed_mid_retry<T: Send + 'static>(
    ask: impl FnOnce(Bus) -> std::pin::Pin<Box<dyn Future<Output = T> + Send>>,
) -> (T, Duration) {
    let rt = runtime_with_threads(1);
    let bus = bus_on(&rt, 1);
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let responder = bus
        .responder::<Interaction, u32>()
        .name("later")
        .retry(RetryPolicy::fixed(3, Duration::from_secs(3600)))
        .respond(
            move |_: &Interaction, _: &Context| -> Result<u32, HandlerError> {
                a.fetch_add(1, Ordering::SeqCst);
                Err(HandlerError::transient("not now"))
            },
        );
    let started = std::time::Instant::now();
    let asked = rt.spawn(ask(bus.clone()));
    common::wait_until(10, || attempts.load(Ordering::SeqCst) == 1);
    assert!(bus.unsubscribe(&responder));
    let got = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), asked).await })
        .expect("it ends once the responder is gone")
        .unwrap();
    (got, started.elapsed())
}

#[test]
fn a_request_whose_responder_is_unsubscribed_before_answering_fails_at_once() {
    within(30, || {
        let (got, took) = unsubscribed_mid_retry(|bus| {
            Box::pin(async move {
                bus.request::<Interaction, u32>(Interaction, Duration::from_secs(60))
                    .await
            })
        });
        assert_eq!(
            got,
            Err(RequestError::Failed(format!(
                "later: {}",
                diana_bus::async_api::UNSUBSCRIBED
            ))),
            "not a timeout: the timeout is a minute away"
        );
        assert!(took < Duration::from_secs(30));
    });
}

#[test]
fn a_gather_expecting_a_name_no_responder_has_reports_it_timed_out() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        bus.responder::<Interaction, u32>()
            .name("x")
            .respond(|_: &Interaction, _: &Context| -> Result<u32, HandlerError> { Ok(1) });
        let gathered = runtime()
            .block_on(async {
                bus.gather::<Interaction, u32>(Interaction)
                    .expect(["x", "ghost"])
                    .deadline(Duration::from_secs(60))
                    .await
            })
            .unwrap();
        assert_eq!(gathered.answer("x"), Some(&1));
        assert!(gathered.failed.is_empty(), "no responder was let go");
        assert_eq!(gathered.timed_out, ["ghost"]);
    });
}

#[test]
fn a_gather_lists_a_responder_unsubscribed_before_answering_as_failed() {
    within(30, || {
        let (got, _) = unsubscribed_mid_retry(|bus| {
            Box::pin(async move {
                bus.gather::<Interaction, u32>(Interaction)
                    .deadline(Duration::from_secs(60))
                    .await
            })
        });
        let gathered = got.unwrap();
        assert!(gathered.answers.is_empty());
        assert_eq!(
            gathered.failed,
            [(
                "later".to_string(),
                diana_bus::async_api::UNSUBSCRIBED.to_string()
            )]
        );
        assert!(gathered.timed_out.is_empty(), "it did not time out");
    });
}

#[test]
fn the_async_adapter_runs_on_a_multi_threaded_runtime() {
    within(30, || {
        let bus = Bus::builder().workers(2).capacity(4).build().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        bus.subscribe(move |_: &Job, _: &Context| -> HandlerResult {
            s.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        bus.respond(|j: &Job, _: &Context| -> Result<u64, HandlerError> { Ok(j.0 + 1) });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(3)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = (0..8)
                .map(|task| {
                    let bus = bus.clone();
                    tokio::spawn(async move {
                        for i in 0..200 {
                            bus.publish_async(Job(i)).await.unwrap();
                        }
                        let reply = bus
                            .request::<Job, u64>(Job(task), Duration::from_secs(10))
                            .await;
                        assert_eq!(reply, Ok(task + 1));
                        bus.publish_and_wait(Job(0)).await.unwrap()
                    })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap().succeeded, 1);
            }
        });
        bus.flush();
        assert_eq!(seen.load(Ordering::SeqCst), 8 * 201);
    });
}

#[derive(Clone)]
struct Keyed {
    key: u64,
    seq: u64,
}
impl Event for Keyed {
    fn key(&self) -> Option<u64> {
        Some(self.key)
    }
}

fn runtime_with_threads(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_time()
        .build()
        .unwrap()
}

/// A bus of `workers` workers whose async handlers run on `rt`.
fn bus_on(rt: &tokio::runtime::Runtime, workers: usize) -> Bus {
    Bus::builder()
        .workers(workers)
        .runtime(rt.handle().clone())
        .build()
        .unwrap()
}

#[test]
fn unsubscribing_an_async_handler_ends_its_runs_waiting_out_a_retry_pause() {
    within(30, || {
        let rt = runtime_with_threads(1);
        let bus = bus_on(&rt, 1);
        let attempts = Arc::new(AtomicUsize::new(0));
        let a = attempts.clone();
        let failing = bus
            .subscriber::<Keyed>()
            .retry(RetryPolicy::fixed(3, Duration::from_secs(3600)))
            .subscribe_async(move |_: Arc<Keyed>, _: diana_bus::AsyncContext| {
                a.fetch_add(1, Ordering::SeqCst);
                async { Err(HandlerError::transient("later")) }
            })
            .unwrap();
        let stage_ran = Arc::new(AtomicUsize::new(0));
        let s = stage_ran.clone();
        bus.subscriber::<Keyed>().stage(1).subscribe(
            move |_: &Keyed, _: &Context| -> HandlerResult {
                s.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        );
        for key in [1, 2] {
            bus.publish(Keyed { key, seq: 0 }).unwrap();
        }
        common::wait_until(10, || attempts.load(Ordering::SeqCst) == 2);
        let started = std::time::Instant::now();
        assert!(bus.unsubscribe(&failing));
        bus.flush();
        assert!(started.elapsed() < Duration::from_secs(20), "not the hour");
        assert_eq!(attempts.load(Ordering::SeqCst), 2, "no retry ran");
        assert_eq!(
            stage_ran.load(Ordering::SeqCst),
            2,
            "the later stage went on"
        );
    });
}

#[test]
fn async_handlers_need_a_runtime_and_a_concurrency() {
    let bus = Bus::builder().workers(1).build().unwrap();
    let handler = |_: Arc<Keyed>, _: diana_bus::AsyncContext| async { Ok(()) };
    assert_eq!(
        bus.subscriber::<Keyed>()
            .subscribe_async(handler)
            .unwrap_err(),
        diana_bus::ConfigError::NoRuntime
    );
    let rt = runtime_with_threads(1);
    let bus = bus_on(&rt, 1);
    assert_eq!(
        bus.subscriber::<Keyed>()
            .concurrency(0)
            .subscribe_async(handler)
            .unwrap_err(),
        diana_bus::ConfigError::Concurrency(0)
    );
}

/// An event whose drop panics when its number is even; clones included.
#[derive(Clone, Debug)]
struct Brash(u64);
impl Event for Brash {}
impl Drop for Brash {
    fn drop(&mut self) {
        if self.0.is_multiple_of(2) {
            panic!("brash event {} broke on drop", self.0);
        }
    }
}

/// A handler's future that holds its event and is ready at once: the
/// event's clone is dropped with the future, after its run succeeded.
struct Holding {
    _event: Arc<Brash>,
}
impl std::future::Future for Holding {
    type Output = HandlerResult;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<HandlerResult> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[test]
fn an_async_run_whose_future_panics_on_drop_still_ends() {
    within(30, || {
        let rt = runtime_with_threads(1);
        let bus = bus_on(&rt, 1);
        bus.subscriber::<Brash>()
            .subscribe_async(|b: Arc<Brash>, _ctx: diana_bus::AsyncContext| Holding { _event: b })
            .unwrap();
        const N: u64 = 10;
        for i in 0..N {
            bus.publish(Brash(i)).unwrap();
        }
        // One runtime thread and one key: a run that never ended would
        // keep every later run of the key waiting, and the flush.
        bus.flush();
        let m = bus.metrics();
        // Each run succeeded before its future was dropped: delivered once,
        // not failed (a retry would run the handler twice).
        assert_eq!((m.delivered, m.failed, m.panicked), (N, 0, 0));
    });
}

#[test]
fn an_async_panic_whose_payload_panics_on_drop_fails_its_run() {
    within(30, || {
        let rt = runtime_with_threads(1);
        let bus = bus_on(&rt, 1);
        bus.subscriber::<Keyed>()
            .retry(RetryPolicy::none())
            .subscribe_async(
                |job: Arc<Keyed>, _ctx: diana_bus::AsyncContext| async move {
                    if job.seq.is_multiple_of(2) {
                        std::panic::panic_any(common::Volatile);
                    }
                    Ok(())
                },
            )
            .unwrap();
        const N: u64 = 10;
        for seq in 0..N {
            bus.publish(Keyed { key: 1, seq }).unwrap();
        }
        // One runtime thread and one key: a run that never ended would
        // keep every later run waiting, and the flush.
        bus.flush();
        let m = bus.metrics();
        assert_eq!(
            (m.delivered, m.panicked, m.dead_lettered),
            (N / 2, N / 2, N / 2)
        );
    });
}

/// A service with a sync handler and an async one.
struct Mixed;
impl diana_bus::Service for Mixed {
    fn register(self: Arc<Self>, bus: &Bus) -> Result<(), diana_bus::ConfigError> {
        bus.subscribe(|_: &Job, _: &Context| -> HandlerResult { Ok(()) });
        bus.subscriber::<Keyed>()
            .subscribe_async(|_: Arc<Keyed>, _: diana_bus::AsyncContext| async { Ok(()) })?;
        Ok(())
    }
}

#[test]
fn registering_a_service_reports_a_refused_subscription() {
    let bus = Bus::builder().workers(1).build().unwrap();
    assert_eq!(
        bus.register(Arc::new(Mixed)).unwrap_err(),
        diana_bus::ConfigError::NoRuntime
    );
    // What was subscribed before the refusal stays.
    assert_eq!(
        (bus.subscribers::<Job>(), bus.subscribers::<Keyed>()),
        (1, 0)
    );
    let rt = runtime_with_threads(1);
    let bus = bus_on(&rt, 1);
    assert_eq!(bus.register(Arc::new(Mixed)), Ok(()));
    assert_eq!(
        (bus.subscribers::<Job>(), bus.subscribers::<Keyed>()),
        (1, 1)
    );
}

#[test]
fn async_handlers_keep_per_key_order_within_their_concurrency_limit() {
    within(30, || {
        let rt = runtime_with_threads(4);
        let bus = bus_on(&rt, 2);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (s, f, m) = (seen.clone(), in_flight.clone(), most.clone());
        bus.subscriber::<Keyed>()
            .concurrency(3)
            .subscribe_async(move |k: Arc<Keyed>, _ctx| {
                let (s, f, m) = (s.clone(), f.clone(), m.clone());
                async move {
                    let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2 + k.seq % 3)).await;
                    s.lock().unwrap().push((k.key, k.seq));
                    f.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .unwrap();
        for seq in 0..20 {
            for key in 0..6 {
                bus.publish(Keyed { key, seq }).unwrap();
            }
        }
        bus.flush();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 120, "flush waits for async runs");
        for key in 0..6 {
            let order: Vec<u64> = seen.iter().filter(|k| k.0 == key).map(|k| k.1).collect();
            assert_eq!(order, (0..20).collect::<Vec<_>>(), "key {key}");
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= 3, "{most} runs at once over a limit of 3");
        assert!(most >= 2, "different keys run concurrently");
        assert_eq!(bus.metrics().delivered, 120);
    });
}

#[test]
fn async_handlers_are_retried_dead_lettered_and_reported() {
    within(30, || {
        let rt = runtime_with_threads(2);
        let bus = bus_on(&rt, 2);
        bus.subscriber::<Keyed>()
            .name("flaky")
            .retry(RetryPolicy::fixed(3, Duration::from_millis(2)))
            .subscribe_async(|k: Arc<Keyed>, ctx: diana_bus::AsyncContext| async move {
                match (k.seq, ctx.attempt()) {
                    (0, 1) => Err(HandlerError::transient("first try")),
                    (0, _) => Ok(()),
                    (1, 1) => panic!("async boom"),
                    (1, _) => Err(HandlerError::permanent("gave up")),
                    _ => Ok(()),
                }
            })
            .unwrap();
        let report = rt
            .block_on(bus.publish_and_wait(Keyed { key: 1, seq: 0 }))
            .unwrap();
        assert_eq!(
            (report.succeeded, report.failed, report.dead_lettered),
            (1, 1, 0)
        );
        let report = rt
            .block_on(bus.publish_and_wait(Keyed { key: 1, seq: 1 }))
            .unwrap();
        assert_eq!(
            (report.succeeded, report.failed, report.dead_lettered),
            (0, 2, 1)
        );
        assert_eq!(report.failures[0].error, "panicked: async boom");
        let letters = bus.dead_letters();
        assert_eq!(letters.len(), 1);
        assert_eq!(
            (
                letters[0].handler(),
                letters[0].error(),
                letters[0].attempts()
            ),
            ("flaky", "gave up", 2)
        );
        assert_eq!(letters[0].event::<Keyed>().map(|k| k.seq), Some(1));
        let m = bus.metrics();
        assert_eq!((m.delivered, m.failed, m.panicked, m.retried), (1, 3, 1, 2));
    });
}

/// An event whose `clone` panics when its number is a multiple of 3.
#[derive(Debug)]
struct Brittle(u64);
impl Event for Brittle {}
impl Clone for Brittle {
    fn clone(&self) -> Self {
        if self.0.is_multiple_of(3) {
            panic!("brittle event {} broke on clone", self.0);
        }
        Brittle(self.0)
    }
}

#[test]
fn an_async_handler_that_panics_before_its_future_or_on_the_events_clone_fails_its_run() {
    within(30, || {
        let rt = runtime_with_threads(1);
        // One worker and one runtime thread: losing either hangs the flush.
        let bus = bus_on(&rt, 1);
        let sum = Arc::new(AtomicUsize::new(0));
        let s = sum.clone();
        bus.subscriber::<Brittle>()
            .name("eager")
            .retry(RetryPolicy::none())
            .subscribe_async(move |b: Arc<Brittle>, _ctx: diana_bus::AsyncContext| {
                // Runs before the future exists: outside its polls.
                assert!(b.0 % 3 != 1, "brittle event {} refused at once", b.0);
                let s = s.clone();
                async move {
                    s.fetch_add(b.0 as usize, Ordering::SeqCst);
                    Ok(())
                }
            })
            .unwrap();
        const N: u64 = 30;
        for i in 0..N {
            bus.publish(Brittle(i)).unwrap();
        }
        bus.flush();
        let delivered: u64 = (0..N).filter(|i| i % 3 == 2).sum();
        assert_eq!(sum.load(Ordering::SeqCst), delivered as usize);
        let m = bus.metrics();
        assert_eq!((m.delivered, m.panicked), (N / 3, 2 * N / 3));
        let mut letters: Vec<_> = bus
            .dead_letters()
            .iter()
            .map(|l| (l.event::<Brittle>().map(|b| b.0), l.error().to_owned()))
            .collect();
        letters.sort();
        assert_eq!(letters.len(), 2 * N as usize / 3);
        assert_eq!(
            letters[..2],
            [
                (
                    Some(0),
                    "panicked: brittle event 0 broke on clone".to_owned()
                ),
                (
                    Some(1),
                    "panicked: brittle event 1 refused at once".to_owned()
                ),
            ]
        );
    });
}

#[test]
fn a_slow_async_responder_times_out_while_the_others_answer() {
    within(30, || {
        let rt = runtime_with_threads(2);
        let bus = bus_on(&rt, 1);
        #[derive(Clone)]
        struct Ask;
        impl Event for Ask {}
        bus.responder::<Ask, u32>()
            .name("slow")
            .respond_async(|_: Arc<Ask>, _| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(1)
            })
            .unwrap();
        bus.responder::<Ask, u32>()
            .name("quick")
            .respond(|_: &Ask, _: &Context| -> Result<u32, HandlerError> { Ok(2) });
        bus.responder::<Ask, u32>()
            .name("quick async")
            .respond_async(|_: Arc<Ask>, _| async { Ok(3) })
            .unwrap();
        let gathered = rt
            .block_on(async {
                bus.gather::<Ask, u32>(Ask)
                    .deadline(Duration::from_millis(100))
                    .await
            })
            .unwrap();
        assert_eq!(gathered.answer("quick"), Some(&2));
        assert_eq!(gathered.answer("quick async"), Some(&3));
        assert_eq!(gathered.timed_out, ["slow"]);
        bus.flush();
    });
}

#[test]
fn async_follow_ups_are_flushed_with_their_cause() {
    within(30, || {
        let rt = runtime_with_threads(2);
        let bus = bus_on(&rt, 2);
        let causes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let c = causes.clone();
        bus.subscribe(move |_: &Job, ctx: &Context| -> HandlerResult {
            c.lock().unwrap().push((ctx.cause(), ctx.tenant()));
            Ok(())
        });
        bus.subscriber::<Keyed>()
            .subscribe_async(|k: Arc<Keyed>, ctx: diana_bus::AsyncContext| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                ctx.publish(Job(k.seq))
                    .await
                    .map_err(|e| HandlerError::transient(e.to_string()))?;
                Ok(())
            })
            .unwrap();
        let parent = bus
            .publish_with(Keyed { key: 1, seq: 9 }, Meta::new().tenant(TenantId(4)))
            .unwrap();
        bus.flush();
        assert_eq!(*causes.lock().unwrap(), [(Some(parent), TenantId(4))]);
    });
}

#[test]
fn later_stages_wait_for_an_async_run_and_its_retries() {
    within(30, || {
        let rt = runtime_with_threads(2);
        let bus = bus_on(&rt, 2);
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = log.clone();
        bus.subscriber::<Keyed>()
            .stage(0)
            .retry(RetryPolicy::fixed(2, Duration::from_millis(5)))
            .subscribe_async(move |k: Arc<Keyed>, ctx: diana_bus::AsyncContext| {
                let l = l.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    l.lock()
                        .unwrap()
                        .push(format!("async {} try {}", k.seq, ctx.attempt()));
                    match k.seq {
                        1 => Err(HandlerError::transient("always")),
                        _ => Ok(()),
                    }
                }
            })
            .unwrap();
        let l = log.clone();
        bus.subscriber::<Keyed>().stage(1).subscribe(
            move |k: &Keyed, _: &Context| -> HandlerResult {
                l.lock().unwrap().push(format!("sync {}", k.seq));
                Ok(())
            },
        );
        for seq in 0..3 {
            bus.publish(Keyed { key: 7, seq }).unwrap();
        }
        bus.flush();
        assert_eq!(
            *log.lock().unwrap(),
            [
                "async 0 try 1",
                "sync 0",
                "async 1 try 1",
                "async 1 try 2",
                "sync 1",
                "async 2 try 1",
                "sync 2"
            ]
        );
        assert_eq!(bus.dead_letters().len(), 1);
    });
}

/// A waker that counts its wakes and panics in each, as a broken executor's
/// might: the worker that wakes it must go on.
#[derive(Default)]
struct PanickingWaker(AtomicUsize);
impl std::task::Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("the executor's waker broke");
    }
}

/// Polls `future` once with `waker`.
fn poll_with<F: std::future::Future>(
    future: std::pin::Pin<&mut F>,
    waker: &Arc<PanickingWaker>,
) -> std::task::Poll<F::Output> {
    let waker = std::task::Waker::from(waker.clone());
    future.poll(&mut std::task::Context::from_waker(&waker))
}

#[test]
fn a_waker_that_panics_when_its_event_is_done_does_not_stop_the_worker() {
    within(30, || {
        let gate = Gate::default();
        let bus = Bus::builder().workers(1).shards(1).build().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let (g, r) = (gate.clone(), runs.clone());
        bus.subscribe(move |_: &Job, _: &Context| -> HandlerResult {
            g.wait();
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let waker = Arc::new(PanickingWaker::default());
        let mut waiting = std::pin::pin!(bus.publish_and_wait(Job(1)));
        assert!(poll_with(waiting.as_mut(), &waker).is_pending());
        gate.open();
        common::wait_until(10, || waker.0.load(Ordering::SeqCst) == 1);
        bus.publish(Job(2)).unwrap();
        bus.flush();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let std::task::Poll::Ready(report) = poll_with(waiting.as_mut(), &waker) else {
            panic!("the handler ran, and the wait is still pending");
        };
        assert_eq!(report.unwrap().succeeded, 1);
        let report = bus.shutdown();
        assert_eq!(report.delivered, 2);
    });
}

#[test]
fn a_waker_that_panics_at_its_deadline_does_not_stop_the_timer() {
    within(30, || {
        let gate = Gate::default();
        let bus = Bus::builder().workers(2).shards(2).build().unwrap();
        let g = gate.clone();
        bus.respond(
            move |_: &Balance, _: &Context| -> Result<u64, HandlerError> {
                g.wait();
                Ok(1)
            },
        );
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        bus.subscribe(move |_: &Job, _: &Context| -> HandlerResult {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let waker = Arc::new(PanickingWaker::default());
        let mut asking = std::pin::pin!(
            bus.request::<Balance, u64>(Balance { user: 1 }, Duration::from_millis(20))
        );
        assert!(poll_with(asking.as_mut(), &waker).is_pending());
        // The responder waits at the gate; the timer wakes the request at
        // its deadline, and goes on to the next one.
        common::wait_until(10, || waker.0.load(Ordering::SeqCst) == 1);
        assert_eq!(
            poll_with(asking.as_mut(), &waker),
            std::task::Poll::Ready(Err(RequestError::Timeout))
        );
        let late = runtime()
            .block_on(bus.request::<Balance, u64>(Balance { user: 1 }, Duration::from_millis(20)));
        assert_eq!(late, Err(RequestError::Timeout));
        gate.open();
        for n in 0..100 {
            bus.publish_with(Job(n), Meta::new().key(n)).unwrap();
        }
        bus.flush();
        assert_eq!(runs.load(Ordering::SeqCst), 100);
        let report = bus.shutdown();
        assert_eq!(report.delivered, 102);
    });
}

/// A task that its waker polls at once, on the waking thread, as some
/// executors do.
struct PolledOnWake<F: std::future::Future> {
    task: std::sync::Mutex<Option<std::pin::Pin<Box<F>>>>,
    output: std::sync::Mutex<Option<F::Output>>,
}

impl<F> PolledOnWake<F>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    fn poll(self: &Arc<Self>) {
        let waker = std::task::Waker::from(Arc::clone(self));
        let mut task = self.task.lock().unwrap();
        if let Some(future) = task.as_mut() {
            let polled = future
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker));
            if let std::task::Poll::Ready(output) = polled {
                *self.output.lock().unwrap() = Some(output);
                *task = None;
            }
        }
    }
}

impl<F> std::task::Wake for PolledOnWake<F>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    fn wake(self: Arc<Self>) {
        self.poll();
    }
}

#[test]
fn a_waker_that_polls_its_task_at_once_gets_the_report() {
    within(30, || {
        let gate = Gate::default();
        let bus = Bus::builder().workers(1).build().unwrap();
        let g = gate.clone();
        bus.subscribe(move |_: &Job, _: &Context| -> HandlerResult {
            g.wait();
            Ok(())
        });
        bus.subscribe(|_: &Job, _: &Context| -> HandlerResult {
            Err(HandlerError::permanent("no"))
        });
        let waiting = bus.clone();
        let task = Arc::new(PolledOnWake {
            task: std::sync::Mutex::new(Some(Box::pin(async move {
                waiting.publish_and_wait(Job(1)).await
            }))),
            output: std::sync::Mutex::new(None),
        });
        task.poll();
        assert!(task.output.lock().unwrap().is_none());
        gate.open();
        bus.flush();
        let report = task.output.lock().unwrap().take();
        let report = report.expect("woken, polled and ready").unwrap();
        assert_eq!((report.succeeded, report.dead_lettered), (1, 1));
    });
}

/// An async handler's run waiting out a retry pause of 2 s (its first run
/// fails), which the timer thread keeps; then a task that the timer thread
/// wakes at a gather's 50 ms deadline, and polls in place, does `then` with
/// the bus there. The retry must still run: the timer thread was not
/// blocked waiting for it.
fn on_the_timer_thread(then: impl FnOnce(Bus) + Send + 'static) {
    let rt = leaked_runtime(1);
    within(30, move || {
        let bus = bus_on(rt, 1);
        let attempts = Arc::new(AtomicUsize::new(0));
        let a = attempts.clone();
        bus.subscriber::<Keyed>()
            .retry(RetryPolicy::fixed(2, Duration::from_secs(2)))
            .subscribe_async(move |_: Arc<Keyed>, _: diana_bus::AsyncContext| {
                let first = a.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    match first {
                        true => Err(HandlerError::transient("again")),
                        false => Ok(()),
                    }
                }
            })
            .unwrap();
        #[derive(Clone)]
        struct Slow;
        impl Event for Slow {}
        bus.responder::<Slow, u64>()
            .respond_async(|_: Arc<Slow>, _: diana_bus::AsyncContext| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(1)
            })
            .unwrap();
        bus.publish(Keyed { key: 1, seq: 0 }).unwrap();
        common::wait_until(10, || attempts.load(Ordering::SeqCst) == 1);
        let task = Arc::new(PolledOnWake {
            task: std::sync::Mutex::new(Some(Box::pin(async move {
                let gathered = bus
                    .gather::<Slow, u64>(Slow)
                    .deadline(Duration::from_millis(50))
                    .await;
                then(bus);
                gathered.map(|gathered| gathered.answers.len())
            }))),
            output: std::sync::Mutex::new(None),
        });
        task.poll();
        common::wait_until(10, || task.output.lock().unwrap().is_some());
        assert_eq!(task.output.lock().unwrap().take(), Some(Ok(0)));
        common::wait_until(10, || attempts.load(Ordering::SeqCst) == 2);
    });
}

#[test]
fn the_last_handle_dropped_by_a_waker_on_the_timer_thread_drains_the_bus() {
    // The drain goes to a helper thread.
    on_the_timer_thread(drop);
}

#[test]
fn flush_called_by_a_waker_on_the_timer_thread_returns_at_once() {
    on_the_timer_thread(|bus| bus.flush());
}

#[test]
fn a_wait_too_long_for_an_instant_never_times_out() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        bus.respond(|b: &Balance, _: &Context| -> Result<u64, HandlerError> { Ok(b.user) });
        let rt = runtime();
        let answer = rt.block_on(bus.request::<Balance, u64>(Balance { user: 3 }, Duration::MAX));
        assert_eq!(answer, Ok(3));
        let gathered = rt
            .block_on(async {
                bus.gather::<Balance, u64>(Balance { user: 4 })
                    .deadline(Duration::MAX)
                    .await
            })
            .unwrap();
        assert_eq!(gathered.answers.len(), 1);
        assert!(gathered.timed_out.is_empty());
    });
}

/// A runtime that outlives the test: a runtime thread stuck in the bus
/// must fail the test (through `within`), not hang the runtime's drop.
fn leaked_runtime(threads: usize) -> &'static tokio::runtime::Runtime {
    Box::leak(Box::new(runtime_with_threads(threads)))
}

#[test]
fn dropping_the_last_handle_runs_the_async_handlers_of_every_accepted_event() {
    let rt = leaked_runtime(1);
    within(30, move || {
        let bus = bus_on(rt, 1);
        // The async stage starts only once the sync one is done, after the
        // last handle is gone.
        bus.subscriber::<Keyed>()
            .stage(0)
            .subscribe(|_: &Keyed, _: &Context| -> HandlerResult {
                std::thread::sleep(Duration::from_millis(100));
                Ok(())
            });
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        bus.subscriber::<Keyed>()
            .stage(1)
            .subscribe_async(move |_: Arc<Keyed>, _: diana_bus::AsyncContext| {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .unwrap();
        for key in 0..4 {
            bus.publish(Keyed { key, seq: 0 }).unwrap();
        }
        drop(bus);
        assert_eq!(ran.load(Ordering::SeqCst), 4);
    });
}

#[test]
fn a_clone_of_the_context_bus_keeps_the_bus_open() {
    let rt = leaked_runtime(1);
    within(30, move || {
        let bus = bus_on(rt, 1);
        let kept: Arc<std::sync::Mutex<Option<Bus>>> = Arc::default();
        let k = kept.clone();
        bus.subscriber::<Keyed>()
            .subscribe_async(move |_: Arc<Keyed>, ctx: diana_bus::AsyncContext| {
                *k.lock().unwrap() = Some(ctx.bus().clone());
                async { Ok(()) }
            })
            .unwrap();
        bus.publish(Keyed { key: 1, seq: 0 }).unwrap();
        bus.flush();
        drop(bus);
        let kept = kept.lock().unwrap().take().expect("the handler ran");
        assert!(!kept.is_closed(), "the user's clone is a handle of its own");
        kept.publish(Keyed { key: 2, seq: 0 }).unwrap();
        let report = kept.shutdown();
        assert_eq!(report.delivered, 2);
    });
}

#[test]
fn flush_and_shutdown_from_an_async_handler_do_not_wait_for_it() {
    let rt = leaked_runtime(2);
    within(30, move || {
        let bus = bus_on(rt, 1);
        let flushed = Arc::new(AtomicUsize::new(0));
        let f = flushed.clone();
        bus.subscriber::<Keyed>()
            .subscribe_async(move |k: Arc<Keyed>, ctx: diana_bus::AsyncContext| {
                // before the future, and in it
                ctx.bus().flush();
                let f = f.clone();
                async move {
                    ctx.bus().flush();
                    f.fetch_add(1, Ordering::SeqCst);
                    if k.key == 1 {
                        let report = ctx.bus().shutdown();
                        assert!(!report.joined, "its drain waits for this run");
                    }
                    Ok(())
                }
            })
            .unwrap();
        bus.publish(Keyed { key: 0, seq: 0 }).unwrap();
        bus.flush();
        assert_eq!(flushed.load(Ordering::SeqCst), 1);
        bus.publish(Keyed { key: 1, seq: 0 }).unwrap();
        common::wait_until(10, || bus.is_closed());
        let report = bus.shutdown();
        assert_eq!((report.delivered, flushed.load(Ordering::SeqCst)), (2, 2));
    });
}

#[test]
fn a_request_times_out_while_every_worker_is_held_in_a_handler() {
    within(30, || {
        let gate = Gate::default();
        let _open = OpenOnDrop(gate.clone());
        let bus = Bus::builder().workers(1).build().unwrap();
        let (g, entered) = (gate.clone(), Arc::new(AtomicBool::new(false)));
        let e = entered.clone();
        bus.subscribe(move |_: &Job, _: &Context| -> HandlerResult {
            e.store(true, Ordering::SeqCst);
            g.wait();
            Ok(())
        });
        bus.respond(|b: &Balance, _: &Context| -> Result<u64, HandlerError> { Ok(b.user) });
        bus.publish(Job(1)).unwrap();
        common::wait_until(10, || entered.load(Ordering::SeqCst));
        // The only worker is held: the deadline cannot wait for it.
        let late = runtime()
            .block_on(bus.request::<Balance, u64>(Balance { user: 1 }, Duration::from_millis(30)));
        assert_eq!(late, Err(RequestError::Timeout));
        gate.open();
        bus.flush();
    });
}

#[test]
fn an_async_follow_up_is_accepted_during_the_shutdown_drain() {
    let rt = leaked_runtime(1);
    within(30, move || {
        let bus = bus_on(rt, 1);
        let gate = Gate::default();
        let (entered, g) = (Arc::new(AtomicBool::new(false)), gate.clone());
        let e = entered.clone();
        let refused = Arc::new(AtomicUsize::new(0));
        let r = refused.clone();
        bus.subscriber::<Keyed>()
            .subscribe_async(move |k: Arc<Keyed>, ctx: diana_bus::AsyncContext| {
                let (e, g, r) = (e.clone(), g.clone(), r.clone());
                async move {
                    e.store(true, Ordering::SeqCst);
                    // blocks the runtime thread: the test's only purpose
                    g.wait();
                    if ctx.publish(Job(k.key)).await.is_err() {
                        r.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                }
            })
            .unwrap();
        let handled = Arc::new(AtomicUsize::new(0));
        let h = handled.clone();
        bus.subscribe(move |_: &Job, _: &Context| -> HandlerResult {
            h.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        bus.publish(Keyed { key: 7, seq: 0 }).unwrap();
        common::wait_until(10, || entered.load(Ordering::SeqCst));
        let closing = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.shutdown())
        };
        common::wait_until(10, || bus.is_closed());
        gate.open();
        let report = closing.join().unwrap();
        assert_eq!(
            refused.load(Ordering::SeqCst),
            0,
            "the follow-up was refused"
        );
        assert_eq!(handled.load(Ordering::SeqCst), 1);
        assert_eq!(report.delivered, 2);
    });
}

#[test]
fn a_gather_of_named_responders_ends_when_they_are_in_though_one_failed_first() {
    within(30, || {
        let gate = Gate::default();
        let _open = OpenOnDrop(gate.clone());
        let bus = Bus::builder().workers(1).build().unwrap();
        bus.responder::<Balance, u64>().name("admin").respond(
            |_: &Balance, _: &Context| -> Result<u64, HandlerError> {
                Err(HandlerError::permanent("down"))
            },
        );
        bus.responder::<Balance, u64>().name("game").respond(
            |_: &Balance, _: &Context| -> Result<u64, HandlerError> {
                // the gather has seen admin fail by then, and waits
                std::thread::sleep(Duration::from_millis(50));
                Ok(7)
            },
        );
        // not named, and runs last: held until the gather is over
        let g = gate.clone();
        bus.responder::<Balance, u64>().name("slow").respond(
            move |_: &Balance, _: &Context| -> Result<u64, HandlerError> {
                g.wait();
                Ok(0)
            },
        );
        let gathered = runtime()
            .block_on(async {
                bus.gather::<Balance, u64>(Balance { user: 1 })
                    .expect(diana_bus::Expect::Names(vec![
                        "admin".into(),
                        "game".into(),
                    ]))
                    .deadline(Duration::MAX)
                    .await
            })
            .unwrap();
        assert_eq!(gathered.answer("game"), Some(&7));
        assert_eq!(gathered.failed.len(), 1);
        assert!(gathered.timed_out.is_empty());
        gate.open();
        bus.flush();
    });
}

#[test]
fn a_gather_of_a_count_of_answers_waits_for_no_one_else() {
    within(30, || {
        let gate = Gate::default();
        let _open = OpenOnDrop(gate.clone());
        let bus = Bus::builder().workers(1).build().unwrap();
        bus.responder::<Balance, u64>()
            .name("quick")
            .respond(|_: &Balance, _: &Context| -> Result<u64, HandlerError> { Ok(1) });
        let g = gate.clone();
        bus.responder::<Balance, u64>().name("slow").respond(
            move |_: &Balance, _: &Context| -> Result<u64, HandlerError> {
                g.wait();
                Ok(2)
            },
        );
        let rt = runtime();
        for (count, answers) in [(1, 1), (0, 0)] {
            let gathered = rt
                .block_on(async {
                    bus.gather::<Balance, u64>(Balance { user: count })
                        .expect(count as usize)
                        .deadline(Duration::MAX)
                        .await
                })
                .unwrap();
            assert!(gathered.answers.len() >= answers, "{count}: {gathered:?}");
            assert!(gathered.timed_out.is_empty(), "{count}: {gathered:?}");
            assert!(gathered.is_complete());
        }
        gate.open();
        bus.flush();
    });
}

#[test]
fn the_last_handle_held_by_a_handler_future_stops_the_bus_when_the_future_ends() {
    let rt = leaked_runtime(1);
    within(30, move || {
        let bus = bus_on(rt, 1);
        let (gate, entered) = (Gate::default(), Arc::new(AtomicBool::new(false)));
        let (g, e) = (gate.clone(), entered.clone());
        bus.subscriber::<Keyed>()
            .subscribe_async(move |_: Arc<Keyed>, ctx: diana_bus::AsyncContext| {
                let (g, e) = (g.clone(), e.clone());
                // A handle of its own, which the future holds to its end.
                let bus = ctx.bus().clone();
                async move {
                    e.store(true, Ordering::SeqCst);
                    g.wait();
                    drop(bus);
                    Ok(())
                }
            })
            .unwrap();
        // The registry, and with it this handler's `Tracked`, is dropped
        // once the drain is over and every worker has stopped.
        let dropped = Arc::new(AtomicUsize::new(0));
        let tracked = Tracked(dropped.clone());
        bus.subscribe(move |_: &Job, _: &Context| -> HandlerResult {
            let _ = &tracked;
            Ok(())
        });
        bus.publish(Keyed { key: 1, seq: 0 }).unwrap();
        common::wait_until(10, || entered.load(Ordering::SeqCst));
        drop(bus);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            0,
            "the future holds the bus"
        );
        gate.open();
        common::wait_until(10, || dropped.load(Ordering::SeqCst) == 1);
    });
}

#[test]
fn the_last_handle_dropped_on_a_worker_or_a_runtime_thread_drains_the_bus() {
    let rt = leaked_runtime(2);
    within(30, move || {
        let bus = bus_on(rt, 1);
        let (gate, entered, ran) = (
            Gate::default(),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (g, e, r) = (gate.clone(), entered.clone(), ran.clone());
        bus.subscriber::<Keyed>()
            .concurrency(1)
            .subscribe_async(move |_: Arc<Keyed>, _: diana_bus::AsyncContext| {
                let (g, e, r) = (g.clone(), e.clone(), r.clone());
                async move {
                    e.store(true, Ordering::SeqCst);
                    g.wait();
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .unwrap();
        // A sync handler drops the last handle, on the worker, once the
        // test has dropped its own (else the test's drop would be the last,
        // and block on the drain before it opens the gate).
        let (slot, dropped): (Arc<std::sync::Mutex<Option<Bus>>>, _) =
            (Arc::default(), Gate::default());
        let (s, d) = (slot.clone(), dropped.clone());
        bus.subscribe(move |_: &Job, _: &Context| -> HandlerResult {
            d.wait();
            drop(s.lock().unwrap().take());
            Ok(())
        });
        bus.publish(Keyed { key: 1, seq: 0 }).unwrap();
        bus.publish(Keyed { key: 2, seq: 0 }).unwrap(); // queued behind
        common::wait_until(10, || entered.load(Ordering::SeqCst));
        *slot.lock().unwrap() = Some(bus.clone());
        bus.publish(Job(1)).unwrap();
        drop(bus);
        dropped.open();
        common::wait_until(10, || slot.lock().unwrap().is_none());
        gate.open();
        common::wait_until(10, || ran.load(Ordering::SeqCst) == 2);

        // A task drops the last handle, on the runtime's thread.
        let bus = bus_on(rt, 1);
        let r = ran.clone();
        bus.subscriber::<Keyed>()
            .subscribe_async(move |_: Arc<Keyed>, _: diana_bus::AsyncContext| {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .unwrap();
        rt.block_on(async move {
            bus.publish_async(Keyed { key: 3, seq: 0 }).await.unwrap();
            drop(bus);
        });
        common::wait_until(10, || ran.load(Ordering::SeqCst) == 3);
    });
}
