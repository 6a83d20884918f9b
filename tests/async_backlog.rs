//! Backpressure from async subscriptions: a handler slower than its events
//! holds back the root publishers once more runs wait than its backlog,
//! and nothing that its runs may wait for is held back.
// Async handlers are not built for loom (see `async_api`).
#![cfg(not(diana_bus_loom))]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, within};
use diana_bus::{
    AsyncContext, Backpressure, Bus, Context, Event, EventId, HandlerResult, Meta, PublishError,
    Subscription,
};
use tokio::sync::Semaphore;

#[derive(Clone, Debug, PartialEq)]
struct Job(u64);
impl Event for Job {
    fn key(&self) -> Option<u64> {
        Some(self.0 % 3)
    }
}

/// Published while the gate is probed; nobody handles it.
struct Probe;
impl Event for Probe {}

const BACKLOG: usize = 8;
const RING: usize = 4;

/// A bus of one 4-slot ring whose `Job` handler runs one job at a time,
/// each only once it gets a permit, with a backlog of 8; the jobs it ran.
fn slow_bus(
    rt: &tokio::runtime::Runtime,
    policy: Backpressure,
) -> (Bus, Arc<Semaphore>, Arc<AtomicU64>, Subscription) {
    slow_bus_of(RING, rt, policy)
}

/// [`slow_bus`] with a ring of `capacity` slots.
fn slow_bus_of(
    capacity: usize,
    rt: &tokio::runtime::Runtime,
    policy: Backpressure,
) -> (Bus, Arc<Semaphore>, Arc<AtomicU64>, Subscription) {
    let bus = Bus::builder()
        .workers(1)
        .shards(1)
        .capacity(capacity)
        .backpressure(policy)
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    let permits = Arc::new(Semaphore::new(0));
    let ran = Arc::new(AtomicU64::new(0));
    let (p, r) = (permits.clone(), ran.clone());
    let subscription = bus
        .subscriber::<Job>()
        .concurrency(1)
        .backlog(BACKLOG)
        .subscribe_async(move |_: Arc<Job>, _: AsyncContext| {
            let (p, r) = (p.clone(), r.clone());
            async move {
                p.acquire().await.unwrap().forget();
                r.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .unwrap();
    (bus, permits, ran, subscription)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap()
}

/// Lets every stuck run go when a test ends, failed or not: else the bus's
/// drop would wait for them, and a failed assertion show as a timeout.
struct FreeOnDrop(Arc<Semaphore>);
impl Drop for FreeOnDrop {
    fn drop(&mut self) {
        self.0.add_permits(1 << 20);
    }
}

/// A bus of one worker whose async handlers run on `rt`.
fn bus_on(rt: &tokio::runtime::Runtime) -> Bus {
    Bus::builder()
        .workers(1)
        .runtime(rt.handle().clone())
        .build()
        .unwrap()
}

/// Waits, without blocking its thread, until `condition` holds.
async fn until(condition: impl Fn() -> bool) {
    while !condition() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Publishes jobs until one is refused at the gate; returns how many
/// were accepted.
fn fill_backlog(bus: &Bus) -> u64 {
    let mut n = 0;
    wait_until(10, || match bus.try_publish(Job(n)) {
        Ok(_) => {
            n += 1;
            false
        }
        Err(refused) => refused.is_backlogged(),
    });
    n
}

/// Publishes probes until one is refused at the gate.
fn until_backlogged(bus: &Bus) {
    wait_until(10, || {
        matches!(bus.try_publish(Probe), Err(PublishError::Backlogged(_)))
    });
}

#[test]
fn a_slow_async_handler_holds_back_blocking_publishers_to_its_backlog() {
    within(60, || {
        let rt = runtime();
        let (bus, permits, ran, _) = slow_bus(&rt, Backpressure::Block);
        let _free = FreeOnDrop(permits.clone());
        let published = Arc::new(AtomicU64::new(0));
        let publisher = {
            let (bus, published) = (bus.clone(), published.clone());
            std::thread::spawn(move || {
                for n in 0..1000 {
                    bus.publish(Job(n)).unwrap();
                    published.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        until_backlogged(&bus);
        // Give an unbounded queue time to show: before the gate, all 1000
        // were accepted at once behind the first run.
        std::thread::sleep(Duration::from_millis(100));
        let accepted = published.load(Ordering::SeqCst);
        // One run, the backlog and one more (which raised the gate), the
        // ring, and a publish or two that read the gate before it rose.
        let bound = (1 + BACKLOG + 1 + RING + 2) as u64;
        assert!(accepted <= bound, "{accepted} accepted, bound {bound}");
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        permits.add_permits(1000);
        publisher.join().unwrap();
        bus.flush();
        assert_eq!(ran.load(Ordering::SeqCst), 1000);
    });
}

#[test]
fn try_publish_over_the_backlog_is_refused_as_backlogged_until_it_drains() {
    within(60, || {
        let rt = runtime();
        let (bus, permits, ran, _) = slow_bus(&rt, Backpressure::Reject);
        let _free = FreeOnDrop(permits.clone());
        let (mut accepted, mut refused) = (0, None);
        wait_until(10, || match bus.try_publish(Job(accepted)) {
            Ok(_) => {
                accepted += 1;
                false
            }
            Err(PublishError::Full(_)) => false,
            Err(other) => refused.replace(other).is_none(),
        });
        let refused = refused.unwrap();
        assert!(refused.is_backlogged(), "{refused:?}");
        assert_eq!(refused.into_inner(), Job(accepted), "the event comes back");
        assert!(accepted as usize > BACKLOG, "{accepted} accepted");
        // `publish` with `Reject` is refused the same way, and counted.
        let rejected = bus.metrics().rejected;
        assert!(bus.publish(Job(accepted)).unwrap_err().is_backlogged());
        assert_eq!(bus.metrics().rejected, rejected + 1);
        // The gate stays raised until no more than half the backlog still
        // wait: once run k has ended and the next started, `accepted - 1 -
        // k` do.
        let lowered_at = accepted - 1 - (BACKLOG / 2) as u64;
        for k in 1..lowered_at {
            permits.add_permits(1);
            wait_until(10, || ran.load(Ordering::SeqCst) == k);
            // Time for the next run to start, which counts it off.
            std::thread::sleep(Duration::from_millis(10));
            let waiting = accepted - 1 - k;
            let refused = bus.try_publish(Probe).unwrap_err();
            assert!(refused.is_backlogged(), "{waiting} waiting: {refused:?}");
        }
        permits.add_permits(1);
        wait_until(10, || bus.try_publish(Job(accepted)).is_ok());
        permits.add_permits(accepted as usize + 1);
        bus.flush();
        assert_eq!(ran.load(Ordering::SeqCst), accepted + 1);
    });
}

#[test]
fn publish_async_waits_at_the_gate_without_blocking_its_thread() {
    within(60, || {
        let rt = runtime();
        let (bus, permits, ran, _) = slow_bus(&rt, Backpressure::Reject);
        let _free = FreeOnDrop(permits.clone());
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        caller.block_on(async {
            let published = Arc::new(AtomicU64::new(0));
            let publisher = {
                let (bus, published) = (bus.clone(), published.clone());
                tokio::spawn(async move {
                    for n in 0..200 {
                        bus.publish_async(Job(n)).await.unwrap();
                        published.fetch_add(1, Ordering::SeqCst);
                    }
                })
            };
            // This task runs on the publisher's thread: it is not blocked.
            let mut ticks = 0;
            while ticks < 100 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                ticks += 1;
            }
            assert!(!publisher.is_finished());
            let accepted = published.load(Ordering::SeqCst);
            assert!(
                accepted <= (1 + BACKLOG + 1 + RING + 2) as u64,
                "{accepted}"
            );
            permits.add_permits(1000);
            publisher.await.unwrap();
        });
        bus.flush();
        assert_eq!(ran.load(Ordering::SeqCst), 200);
        assert_eq!(bus.metrics().rejected, 0, "async publishers wait");
    });
}

#[test]
fn shutdown_gives_publishers_waiting_at_the_gate_their_event_back_as_closed() {
    within(60, || {
        let rt = runtime();
        let (bus, permits, _, _) = slow_bus(&rt, Backpressure::Block);
        let _free = FreeOnDrop(permits.clone());
        let n = fill_backlog(&bus);
        let waiting = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.publish(Job(u64::MAX)))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiting.is_finished(),
            "a blocking publish waits at the gate"
        );
        // The drain waits for the held runs; the waiting publisher does not.
        let shutdown = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.shutdown())
        };
        let refused = waiting.join().unwrap().unwrap_err();
        assert!(refused.is_closed(), "{refused:?}");
        assert_eq!(refused.into_inner(), Job(u64::MAX));
        permits.add_permits(1000);
        let report = shutdown.join().unwrap();
        assert_eq!(report.delivered, n, "every accepted job ran");
    });
}

#[derive(Clone)]
struct Order;
impl Event for Order {
    fn key(&self) -> Option<u64> {
        Some(1)
    }
}
struct Charge;
impl Event for Charge {}
struct Receipt;
impl Event for Receipt {}

#[test]
fn what_a_run_may_wait_for_passes_the_gate() {
    within(60, || {
        let rt = runtime();
        let bus = bus_on(&rt);
        let go = Arc::new(AtomicBool::new(false));
        let receipts = Arc::new(AtomicUsize::new(0));
        // An order's run charges (a follow-up), and waits for the receipt
        // that the charge's sync handler publishes with the bus itself.
        let (g, r) = (go.clone(), receipts.clone());
        bus.subscriber::<Order>()
            .concurrency(1)
            .backlog(0)
            .subscribe_async(move |_: Arc<Order>, ctx: AsyncContext| {
                let (g, r) = (g.clone(), r.clone());
                async move {
                    until(|| g.load(Ordering::SeqCst)).await;
                    let before = r.load(Ordering::SeqCst);
                    ctx.publish(Charge).await.unwrap();
                    until(|| r.load(Ordering::SeqCst) != before).await;
                    Ok(())
                }
            })
            .unwrap();
        let handle = bus.clone();
        bus.subscribe(move |_: &Charge, _: &Context| -> HandlerResult {
            handle.publish(Receipt).unwrap();
            Ok(())
        });
        let r = receipts.clone();
        bus.subscribe(move |_: &Receipt, _: &Context| -> HandlerResult {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        // The second order waits behind the first: the gate rises.
        bus.publish(Order).unwrap();
        bus.publish(Order).unwrap();
        until_backlogged(&bus);
        go.store(true, Ordering::SeqCst);
        bus.flush();
        assert_eq!(receipts.load(Ordering::SeqCst), 2);
        bus.shutdown();
    });
}

/// A bus whose async `Job` handler, on `rt`, counts its runs, with a
/// backlog of 2.
fn counting_bus(rt: &tokio::runtime::Runtime) -> (Bus, Arc<AtomicUsize>) {
    let bus = bus_on(rt);
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    bus.subscriber::<Job>()
        .backlog(2)
        .subscribe_async(move |_: Arc<Job>, _: AsyncContext| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .unwrap();
    (bus, ran)
}

#[test]
fn a_blocking_publish_on_a_runtime_thread_passes_the_gate() {
    within(60, || {
        let rt = runtime();
        let (bus, ran) = counting_bus(&rt);
        let publisher = bus.clone();
        rt.block_on(async move {
            // On the runtime's one worker thread, which the runs need:
            // waiting here would be for good.
            let task = tokio::spawn(async move {
                for n in 0..10 {
                    publisher.publish(Job(n)).unwrap();
                }
                until_backlogged(&publisher);
                for n in 10..100 {
                    publisher.publish(Job(n)).unwrap();
                }
            });
            task.await.unwrap();
        });
        bus.flush();
        assert_eq!(ran.load(Ordering::SeqCst), 100);
    });
}

#[test]
fn a_task_that_a_run_spawns_publishes_past_the_gate_through_the_handler_s_bus() {
    within(60, || {
        let rt = runtime();
        let bus = bus_on(&rt);
        let go = Arc::new(AtomicBool::new(false));
        let g = go.clone();
        bus.subscriber::<Job>()
            .concurrency(1)
            .backlog(1)
            .subscribe_async(move |_: Arc<Job>, ctx: AsyncContext| {
                let g = g.clone();
                async move {
                    until(|| g.load(Ordering::SeqCst)).await;
                    // Not the handler's own code: a task, on a clone.
                    let bus = ctx.bus().clone();
                    tokio::spawn(async move { bus.publish_async(Probe).await.map(drop) })
                        .await
                        .unwrap()
                        .unwrap();
                    Ok(())
                }
            })
            .unwrap();
        for n in 0..3 {
            bus.publish(Job(n)).unwrap();
        }
        until_backlogged(&bus);
        go.store(true, Ordering::SeqCst);
        bus.flush();
        assert_eq!(bus.metrics().delivered, 3);
    });
}

#[test]
fn blocking_publishes_pass_the_gate_when_the_runtime_runs_on_one_thread() {
    within(60, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (bus, ran) = counting_bus(&rt);
        for n in 0..10 {
            bus.publish(Job(n)).unwrap();
        }
        until_backlogged(&bus);
        // Outside `block_on`: nothing drives the runs until this thread does.
        for n in 10..100 {
            bus.publish(Job(n)).unwrap();
        }
        rt.block_on(until(|| ran.load(Ordering::SeqCst) == 100));
    });
}

#[test]
fn unsubscribing_ends_the_runs_not_yet_started_and_lowers_the_gate() {
    within(60, || {
        let rt = runtime();
        let (bus, permits, ran, slow) = slow_bus(&rt, Backpressure::Reject);
        let _free = FreeOnDrop(permits.clone());
        assert!(fill_backlog(&bus) as usize > BACKLOG);
        // The run under way stays stuck; the ones waiting behind it go.
        assert!(bus.unsubscribe(&slow));
        assert!(bus.try_publish(Probe).is_ok(), "the gate is lowered");
        permits.add_permits(1000);
        bus.flush();
        assert_eq!(ran.load(Ordering::SeqCst), 1, "only the run under way");
    });
}

#[test]
fn a_duplicate_at_the_gate_is_acknowledged_not_refused() {
    within(60, || {
        let rt = runtime();
        let (bus, permits, _, _) = slow_bus(&rt, Backpressure::Reject);
        let _free = FreeOnDrop(permits.clone());
        let id = EventId(42);
        assert_eq!(bus.publish_with(Job(100), Meta::new().id(id)), Ok(id));
        fill_backlog(&bus);
        let rejected = bus.metrics().rejected;
        assert_eq!(bus.publish_with(Job(100), Meta::new().id(id)), Ok(id));
        assert_eq!(bus.metrics().rejected, rejected);
        permits.add_permits(1000);
    });
}

#[derive(Clone)]
struct Grab;
impl Event for Grab {}

#[test]
fn a_clone_of_a_handler_s_bus_is_held_back_once_its_run_ended() {
    within(60, || {
        let rt = runtime();
        let (bus, permits, _, _) = slow_bus(&rt, Backpressure::Reject);
        let _free = FreeOnDrop(permits.clone());
        let (sender, escaped) = std::sync::mpsc::channel::<Bus>();
        let sender = std::sync::Mutex::new(sender);
        bus.subscriber::<Grab>()
            .subscribe_async(move |_: Arc<Grab>, ctx: AsyncContext| {
                let _ = sender.lock().unwrap().send(ctx.bus().clone());
                async { Ok(()) }
            })
            .unwrap();
        bus.publish(Grab).unwrap();
        let escaped = escaped.recv_timeout(Duration::from_secs(10)).unwrap();
        bus.flush();
        fill_backlog(&bus);
        let refused = escaped.try_publish(Probe).unwrap_err();
        assert!(refused.is_backlogged(), "{refused:?}");
        permits.add_permits(1000);
    });
}

struct Trigger;
impl Event for Trigger {}

#[test]
fn runs_handed_over_after_unsubscribe_from_a_handler_do_not_queue() {
    within(60, || {
        let rt = runtime();
        let (bus, permits, ran, slow) = slow_bus_of(64, &rt, Backpressure::Reject);
        let _free = FreeOnDrop(permits.clone());
        // Holds the worker while the batch behind it fills.
        let (held, probes) = (common::Gate::default(), Arc::new(AtomicUsize::new(0)));
        let _open = common::OpenOnDrop(held.clone());
        let (h, p) = (held.clone(), probes.clone());
        bus.subscribe(move |_: &Probe, _: &Context| -> HandlerResult {
            p.fetch_add(1, Ordering::SeqCst);
            h.wait();
            Ok(())
        });
        let slow = std::sync::Mutex::new(Some(slow));
        let handle = bus.clone();
        bus.subscribe(move |_: &Trigger, _: &Context| -> HandlerResult {
            if let Some(slow) = slow.lock().unwrap().take() {
                assert!(handle.unsubscribe(&slow));
            }
            Ok(())
        });
        // A run that stays under way.
        bus.publish(Job(0)).unwrap();
        wait_until(10, || bus.metrics().dispatched == 1);
        bus.publish(Probe).unwrap();
        wait_until(10, || probes.load(Ordering::SeqCst) == 1);
        // One batch: jobs, handed over when it settles, after the trigger
        // (which cannot wait for the batch it runs in) unsubscribed.
        for n in 1..=(2 * BACKLOG as u64) {
            bus.try_publish(Job(n)).unwrap();
        }
        bus.try_publish(Trigger).unwrap();
        held.open();
        wait_until(10, || bus.subscribers::<Job>() == 0);
        // A probe of the next batch: the one before has settled.
        bus.publish(Probe).unwrap();
        wait_until(10, || probes.load(Ordering::SeqCst) == 2);
        assert!(bus.try_publish(Probe).is_ok(), "the gate stays lowered");
        permits.add_permits(1000);
        bus.flush();
        assert_eq!(ran.load(Ordering::SeqCst), 1, "only the run under way");
        bus.shutdown();
    });
}
