//! Unsubscribe: when it returns the handler is not running and never runs
//! again; from inside the handler itself it does not deadlock.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{wait_until, within};
use diana_bus::{Bus, Context, Event, HandlerResult, Subscription};

struct Note(u64);
impl Event for Note {
    fn key(&self) -> Option<u64> {
        Some(self.0)
    }
}

#[test]
fn after_unsubscribe_returns_the_handler_is_idle_and_never_called_again() {
    within(60, || {
        let bus = Bus::builder()
            .workers(2)
            .shards(4)
            .capacity(64)
            .build()
            .unwrap();
        let inside = Arc::new(AtomicI64::new(0));
        let calls = Arc::new(AtomicU64::new(0));
        let (i, c) = (inside.clone(), calls.clone());
        let sub = bus.subscribe(move |_: &Note, _: &Context| -> HandlerResult {
            i.fetch_add(1, Ordering::SeqCst);
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_micros(200));
            i.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        });
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = {
            let (bus, stop) = (bus.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    bus.publish(Note(n)).unwrap();
                    n += 1;
                }
            })
        };
        wait_until(10, || calls.load(Ordering::SeqCst) > 20);
        assert!(bus.unsubscribe(&sub));
        assert_eq!(
            inside.load(Ordering::SeqCst),
            0,
            "still running after unsubscribe"
        );
        let frozen = calls.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        publisher.join().unwrap();
        bus.flush();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            frozen,
            "called after unsubscribe"
        );
        assert!(!bus.unsubscribe(&sub), "a second unsubscribe finds nothing");
        assert_eq!(bus.subscribers::<Note>(), 0);
    });
}

#[test]
fn a_handler_can_unsubscribe_itself() {
    within(30, || {
        let bus = Bus::builder().workers(2).shards(2).build().unwrap();
        let me: Arc<OnceLock<Subscription>> = Arc::default();
        let calls = Arc::new(AtomicU64::new(0));
        let (m, c, b) = (me.clone(), calls.clone(), bus.clone());
        let sub = bus.subscribe(move |_: &Note, _: &Context| -> HandlerResult {
            c.fetch_add(1, Ordering::SeqCst);
            b.unsubscribe(m.get().expect("set before publishing"));
            Ok(())
        });
        me.set(sub).unwrap();
        // same key: one shard, handled one at a time
        for _ in 0..100 {
            bus.publish(Note(1)).unwrap();
        }
        bus.flush();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        bus.shutdown();
    });
}

#[test]
fn a_subscription_made_after_publishing_sees_only_later_events() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        bus.publish(Note(1)).unwrap();
        bus.flush();
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let sub = bus.subscribe(move |n: &Note, _: &Context| -> HandlerResult {
            c.fetch_add(n.0, Ordering::SeqCst);
            Ok(())
        });
        assert_eq!(
            sub.name(),
            format!("Note#{}", sub.name().split('#').nth(1).unwrap())
        );
        bus.publish(Note(10)).unwrap();
        bus.flush();
        assert_eq!(calls.load(Ordering::SeqCst), 10);
    });
}

#[test]
fn a_subscription_of_another_bus_unsubscribes_nothing() {
    let (ours, theirs) = (
        Bus::builder().workers(1).build().unwrap(),
        Bus::builder().workers(1).build().unwrap(),
    );
    let runs = Arc::new(AtomicU64::new(0));
    let r = runs.clone();
    let kept = ours.subscribe(move |_: &Note, _: &Context| -> HandlerResult {
        r.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let stranger = theirs.subscribe(|_: &Note, _: &Context| -> HandlerResult { Ok(()) });
    assert!(!ours.unsubscribe(&stranger));
    ours.publish(Note(1)).unwrap();
    ours.flush();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(ours.unsubscribe(&kept));
    assert!(theirs.unsubscribe(&stranger));
}

#[test]
fn unsubscribing_a_handler_ends_its_pending_retries_at_once() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        let failed = Arc::new(AtomicU64::new(0));
        let f = failed.clone();
        let flaky = bus
            .subscriber::<Note>()
            .strict_order(true)
            .retry(diana_bus::RetryPolicy::fixed(3, Duration::from_secs(3600)))
            .subscribe(move |_: &Note, _: &Context| -> HandlerResult {
                f.fetch_add(1, Ordering::SeqCst);
                Err(diana_bus::HandlerError::transient("later"))
            });
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        bus.subscribe(move |n: &Note, _: &Context| -> HandlerResult {
            s.fetch_add(n.0, Ordering::SeqCst);
            Ok(())
        });
        bus.publish(Note(1)).unwrap();
        wait_until(10, || failed.load(Ordering::SeqCst) == 1);
        // held behind the retry: same key, strict order
        bus.publish(Note(1)).unwrap();
        assert!(bus.unsubscribe(&flaky));
        bus.flush();
        assert_eq!(seen.load(Ordering::SeqCst), 2, "both notes handled");
        assert_eq!(failed.load(Ordering::SeqCst), 1, "no retry ran");
    });
}

#[test]
fn a_handler_that_unsubscribes_itself_and_fails_is_not_retried_later() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        let me: Arc<OnceLock<Subscription>> = Arc::default();
        let (m, b) = (me.clone(), bus.clone());
        let subscription = bus
            .subscriber::<Note>()
            .retry(diana_bus::RetryPolicy::fixed(3, Duration::from_secs(3600)))
            .subscribe(move |_: &Note, _: &Context| -> HandlerResult {
                b.unsubscribe(m.get().unwrap());
                Err(diana_bus::HandlerError::transient("later"))
            });
        me.set(subscription).unwrap();
        bus.publish(Note(1)).unwrap();
        bus.flush(); // not an hour
        assert_eq!(bus.metrics().retried, 0);
        bus.shutdown();
    });
}
