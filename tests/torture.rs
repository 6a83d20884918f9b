//! Many publishers, handlers that fail and panic at random, retries: every
//! (event, handler) pair ends exactly once, delivered or dead-lettered.
//!
//! `DIANA_BUS_TORTURE_EVENTS=250000 cargo test --release --test torture`
//! runs it larger: that many events per publisher, from eight publishers
//! on four workers, with no time limit.

mod common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diana_bus::{Bus, Context, Event, HandlerError, HandlerResult, RetryPolicy};

struct Job {
    seq: u64,
}
impl Event for Job {
    fn key(&self) -> Option<u64> {
        Some(self.seq % 97)
    }
}

/// A fixed pseudo-random roll in 0..100 for (job, handler, attempt).
fn roll(seq: u64, handler: u64, attempt: u32) -> u64 {
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (handler << 48) ^ u64::from(attempt);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) % 100
}

fn torture(publishers: u64, per_publisher: u64, workers: usize) {
    const HANDLERS: u64 = 3;
    let events = publishers * per_publisher;
    let bus = Bus::builder()
        .workers(workers)
        .capacity(256)
        .dead_letter_capacity(usize::MAX >> 1)
        .build()
        .unwrap();
    // successes[handler][seq]: how many times that handler succeeded on that job
    let successes: Arc<Vec<Vec<AtomicU8>>> = Arc::new(
        (0..HANDLERS)
            .map(|_| (0..events).map(|_| AtomicU8::new(0)).collect())
            .collect(),
    );
    for handler in 0..HANDLERS {
        let successes = successes.clone();
        bus.subscriber::<Job>()
            .name(format!("handler-{handler}"))
            .retry(RetryPolicy::fixed(3, Duration::from_micros(200)))
            .subscribe(move |job: &Job, ctx: &Context| -> HandlerResult {
                match roll(job.seq, handler, ctx.attempt()) {
                    0..=9 => panic!("job {} exploded", job.seq),
                    10..=24 => Err(HandlerError::transient("flaky")),
                    25..=27 => Err(HandlerError::permanent("refused")),
                    _ => {
                        successes[handler as usize][job.seq as usize]
                            .fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                }
            });
    }
    let threads: Vec<_> = (0..publishers)
        .map(|p| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for i in 0..per_publisher {
                    bus.publish(Job {
                        seq: p * per_publisher + i,
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let report = bus.shutdown();
    let letters = bus.dead_letters();
    assert_eq!(report.published, events);
    assert_eq!(
        report.delivered + report.dead_lettered,
        events * HANDLERS,
        "every (event, handler) pair ends exactly once"
    );
    assert_eq!(letters.len() as u64, report.dead_lettered);
    let succeeded: u64 = successes
        .iter()
        .flatten()
        .map(|s| u64::from(s.load(Ordering::Relaxed)))
        .sum();
    assert_eq!(succeeded, report.delivered);
    assert!(
        successes
            .iter()
            .flatten()
            .all(|s| s.load(Ordering::Relaxed) <= 1),
        "no handler succeeded twice on one event"
    );
    // a dead letter is exactly a pair that never succeeded
    for letter in &letters {
        let seq = letter.event::<Job>().unwrap().seq as usize;
        let handler: usize = letter
            .handler()
            .trim_start_matches("handler-")
            .parse()
            .unwrap();
        assert_eq!(successes[handler][seq].load(Ordering::Relaxed), 0);
    }
    assert!(
        report.dead_lettered > 0 && report.delivered > 0,
        "the rolls exercise both outcomes"
    );
}

#[test]
fn every_pair_ends_once_under_random_failures_and_panics() {
    match std::env::var("DIANA_BUS_TORTURE_EVENTS") {
        Ok(events) => {
            let events = events
                .parse()
                .expect("DIANA_BUS_TORTURE_EVENTS: events per publisher");
            torture(8, events, 4);
        }
        Err(_) => common::within(120, || torture(4, 5_000, 3)),
    }
}
