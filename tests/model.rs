//! Random sequences of subscribe (in stages 0 to 2), unsubscribe, publish
//! and flush, ended by shutdown, against a single-threaded reference model:
//! every handler must see exactly the runs the model predicts, first runs
//! of one key in publish order (and, for strict-order handlers, all runs),
//! every run of a lower stage on an event before every run of a higher one,
//! and exactly the predicted dead letters and counters.
//!
//! The driver flushes before each subscribe and unsubscribe, so that which
//! events a handler sees is defined: the contract leaves open whether an
//! event still in flight when a handler subscribes, or unsubscribes,
//! reaches it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diana_bus::{Bus, Context, Event, HandlerError, HandlerResult, RetryPolicy, Subscription};
use proptest::prelude::*;

const MAX_ATTEMPTS: u32 = 3;

/// The message of the panics the handlers raise on purpose.
const DELIBERATE: &str = "deliberate panic";

/// Keeps the deliberate panics out of the test output; any other panic is
/// reported as usual.
fn quiet_deliberate_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let deliberate = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m == DELIBERATE);
        if !deliberate {
            default(info);
        }
    }));
}

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Succeed,
    /// Fails transiently on the first n runs of each event.
    FailFirst(u32),
    /// Panics on the first n runs of each event.
    PanicFirst(u32),
    FailPermanently,
}

#[derive(Clone, Debug)]
enum Op {
    /// behaviour, stage, strict order
    Subscribe(Behaviour, u32, bool),
    Unsubscribe(usize),
    Publish(u8),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    let behaviour = prop_oneof![
        Just(Behaviour::Succeed),
        (1..=4u32).prop_map(Behaviour::FailFirst),
        (1..=4u32).prop_map(Behaviour::PanicFirst),
        Just(Behaviour::FailPermanently),
    ];
    prop_oneof![
        2 => (behaviour, 0..3u32, any::<bool>()).prop_map(|(b, stage, strict)| Op::Subscribe(b, stage, strict)),
        1 => any::<usize>().prop_map(Op::Unsubscribe),
        8 => (0..4u8).prop_map(Op::Publish),
        1 => Just(Op::Flush),
    ]
}

struct Ev {
    seq: u32,
    key: u8,
}
impl Event for Ev {
    fn key(&self) -> Option<u64> {
        Some(u64::from(self.key))
    }
}

/// What one handler is expected to have seen, or did see.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// seq -> number of runs
    runs: BTreeMap<u32, u32>,
    /// seqs that ended as dead letters
    dead: Vec<u32>,
}

/// The reference model: the runs and outcome each handler gets per event.
fn expected_runs(behaviour: Behaviour) -> (u32, bool) {
    match behaviour {
        Behaviour::Succeed => (1, false),
        Behaviour::FailFirst(n) | Behaviour::PanicFirst(n) if n < MAX_ATTEMPTS => (n + 1, false),
        Behaviour::FailFirst(_) | Behaviour::PanicFirst(_) => (MAX_ATTEMPTS, true),
        Behaviour::FailPermanently => (1, true),
    }
}

/// (handler, seq, key, attempt) of every run, in the order they ran.
type RunLog = Arc<Mutex<Vec<(usize, u32, u8, u32)>>>;

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let bus = Bus::builder()
        .workers(2)
        .shards(4)
        .capacity(8)
        .build()
        .unwrap();
    let log: RunLog = Arc::default();
    let mut subs: Vec<(Subscription, Behaviour, bool)> = Vec::new();
    let mut model: Vec<Seen> = Vec::new();
    let mut published: Vec<(u32, u8)> = Vec::new();
    let mut stages: Vec<u32> = Vec::new();
    let mut stricts: Vec<bool> = Vec::new();
    for op in ops {
        match op {
            Op::Subscribe(behaviour, stage, strict) => {
                bus.flush();
                let handler = subs.len();
                stages.push(stage);
                stricts.push(strict);
                let log = log.clone();
                let sub = bus
                    .subscriber::<Ev>()
                    .name(format!("h{handler}"))
                    .stage(stage)
                    .strict_order(strict)
                    .retry(RetryPolicy::fixed(MAX_ATTEMPTS, Duration::from_millis(1)))
                    .subscribe(move |e: &Ev, ctx: &Context| -> HandlerResult {
                        let attempt = ctx.attempt();
                        log.lock().unwrap().push((handler, e.seq, e.key, attempt));
                        match behaviour {
                            Behaviour::Succeed => Ok(()),
                            Behaviour::FailFirst(n) if attempt <= n => {
                                Err(HandlerError::transient("not yet"))
                            }
                            Behaviour::PanicFirst(n) if attempt <= n => panic!("{DELIBERATE}"),
                            Behaviour::FailPermanently => Err(HandlerError::permanent("never")),
                            _ => Ok(()),
                        }
                    });
                subs.push((sub, behaviour, true));
                model.push(Seen::default());
            }
            Op::Unsubscribe(pick) if !subs.is_empty() => {
                let index = pick % subs.len();
                bus.flush();
                let was_active = subs[index].2;
                prop_assert_eq!(bus.unsubscribe(&subs[index].0), was_active);
                subs[index].2 = false;
            }
            Op::Unsubscribe(_) => {}
            Op::Publish(key) => {
                let seq = published.len() as u32;
                published.push((seq, key));
                for ((_, behaviour, active), seen) in subs.iter().zip(&mut model) {
                    if *active {
                        let (runs, dead) = expected_runs(*behaviour);
                        seen.runs.insert(seq, runs);
                        if dead {
                            seen.dead.push(seq);
                        }
                    }
                }
                bus.publish(Ev { seq, key }).unwrap();
            }
            Op::Flush => bus.flush(),
        }
    }
    let report = bus.shutdown();
    let log = log.lock().unwrap();
    let letters = bus.dead_letters();
    for (handler, expected) in model.iter_mut().enumerate() {
        let runs: Vec<(u32, u8, u32)> = log
            .iter()
            .filter(|r| r.0 == handler)
            .map(|&(_, seq, key, attempt)| (seq, key, attempt))
            .collect();
        let mut actual = Seen::default();
        for &(seq, _, attempt) in &runs {
            let count = actual.runs.entry(seq).or_default();
            *count += 1;
            prop_assert_eq!(*count, attempt, "runs of one event are numbered 1, 2, ...");
        }
        let name = format!("h{handler}");
        actual.dead = letters
            .iter()
            .filter(|l| l.handler() == name)
            .map(|l| l.event::<Ev>().unwrap().seq)
            .collect();
        actual.dead.sort();
        expected.dead.sort();
        prop_assert_eq!(&actual, &*expected, "handler {}", handler);
        // first runs of one key come in publish order
        for key in 0..4u8 {
            let firsts: Vec<u32> = runs
                .iter()
                .filter(|r| r.1 == key && r.2 == 1)
                .map(|r| r.0)
                .collect();
            prop_assert!(
                firsts.windows(2).all(|w| w[0] < w[1]),
                "key {} order: {:?}",
                key,
                firsts
            );
            if stricts[handler] {
                // a strict-order handler sees all its runs of a key in order
                let all: Vec<u32> = runs.iter().filter(|r| r.1 == key).map(|r| r.0).collect();
                prop_assert!(
                    all.windows(2).all(|w| w[0] <= w[1]),
                    "strict key {} order: {:?}",
                    key,
                    all
                );
            }
        }
    }
    // on each event, every run of a lower stage comes before every run of a
    // higher one (a stage waits for the earlier one's retries)
    for &(seq, _) in &published {
        let mut highest_stage_so_far = 0;
        for &(handler, _, _, _) in log.iter().filter(|r| r.1 == seq) {
            prop_assert!(
                stages[handler] >= highest_stage_so_far,
                "event {}: stage {} ran after stage {}",
                seq,
                stages[handler],
                highest_stage_so_far
            );
            highest_stage_so_far = stages[handler];
        }
    }
    let runs: u64 = model
        .iter()
        .flat_map(|s| s.runs.values())
        .map(|&r| u64::from(r))
        .sum();
    let dead: u64 = model.iter().map(|s| s.dead.len() as u64).sum();
    let pairs: u64 = model.iter().map(|s| s.runs.len() as u64).sum();
    let metrics = bus.metrics();
    prop_assert_eq!(report.published, published.len() as u64);
    prop_assert_eq!(report.dead_lettered, dead);
    prop_assert_eq!(report.delivered, pairs - dead);
    prop_assert_eq!(metrics.retried, runs - pairs);
    prop_assert_eq!(metrics.delivered + metrics.failed, runs);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_bus_matches_the_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        static QUIET: std::sync::Once = std::sync::Once::new();
        QUIET.call_once(quiet_deliberate_panics);
        run(ops)?;
    }
}
