//! `diana-bus run`: one profile on diana-bus and the same shape on each
//! peer, run alternately several times, and a summary of the medians.
//! Alternating and taking medians keeps a noisy, shared machine from
//! favouring whichever implementation ran in a quiet moment.

use std::time::Duration;

use diana_bus::BusBuilder;
use hdrhistogram::Histogram;

use crate::load::{self, DianaRunner, Pattern, Peer, Profile, Runner, Sample, Shape};
use crate::progress::Progress;
use crate::record::{Measured, Params, Percentiles, Record, Settings, FORMAT};

/// How long each run is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Length {
    /// This many events.
    Events(u64),
    /// About this long: the events that a calibration run says fill it.
    Duration(Duration),
}

/// Events of the calibration run that sizes `--duration` runs (and warms
/// the implementation up).
const CALIBRATION_EVENTS: u64 = 20_000;

/// Everything `run` needs to know besides the bus settings.
#[derive(Debug)]
pub struct Plan {
    /// The profile.
    pub profile: &'static Profile,
    /// Its shape, with the command line's overrides.
    pub shape: Shape,
    /// Events or time per run.
    pub length: Length,
    /// Runs of each implementation.
    pub repeat: u64,
    /// Slots per peer queue.
    pub capacity: usize,
    /// `--batch`, for the record.
    pub batch: Option<usize>,
    /// The peers beside diana-bus.
    pub peers: Vec<&'static Peer>,
    /// The peers left out because their busy-spinning threads would
    /// outnumber the cores.
    pub skipped: Vec<&'static Peer>,
    /// The machine's cores.
    pub cores: usize,
}

/// Runs the plan on a bus built by `bus` and on each peer, alternating,
/// prints the summary and returns it as a record. Runs never overlap:
/// while one runs, the others' threads are parked (the bus's idle workers)
/// or not started (the peers' consumers are spawned per run).
pub fn run(plan: &Plan, bus: BusBuilder) -> Result<Record, String> {
    let shape = plan.shape;
    let diana =
        DianaRunner::new(shape, bus).map_err(|error| format!("bad diana-bus settings: {error}"))?;
    let (workers, shards, capacity) = (
        diana.bus().workers(),
        diana.bus().shards(),
        diana.bus().capacity(),
    );
    let mut runners: Vec<Box<dyn Runner>> = vec![Box::new(diana)];
    runners.extend(
        plan.peers
            .iter()
            .map(|peer| peer.build(shape, plan.capacity)),
    );

    println!(
        "profile {}: {}",
        plan.profile.name, plan.profile.description
    );
    println!("{}", describe(&shape));
    println!(
        "diana-bus: workers {workers}, shards {shards}, capacity {capacity}; peers: queues of {}",
        plan.capacity
    );
    for peer in &plan.skipped {
        println!(
            "skipped {}: {} busy-spinning threads on {} cores would measure the scheduler \
             (name it in --peers to run it anyway)",
            peer.name,
            peer.spinning_threads(&shape),
            plan.cores
        );
    }

    let events = match plan.length {
        Length::Events(events) => vec![events; runners.len()],
        Length::Duration(duration) => calibrate(&mut runners, duration)?,
    };
    match plan.length {
        Length::Events(events) => println!("{events} events per run"),
        Length::Duration(duration) => {
            println!("about {:.1} s per run", duration.as_secs_f64())
        }
    }
    println!("median of {} alternating runs each", plan.repeat);
    println!();

    let progress = Progress::new(plan.repeat * runners.len() as u64);
    let mut samples: Vec<Vec<Sample>> = runners.iter().map(|_| Vec::new()).collect();
    for _ in 0..plan.repeat {
        for ((runner, samples), &events) in runners.iter_mut().zip(&mut samples).zip(&events) {
            progress.running(runner.name());
            let sample = runner
                .run(events)
                .map_err(|error| format!("{} run failed: {error}", runner.name()))?;
            samples.push(sample);
            progress.done();
        }
    }
    progress.finish();

    let results: Vec<Measured> = runners
        .iter()
        .zip(&samples)
        .zip(&events)
        .map(|((runner, samples), &events)| {
            summarize(runner.name(), plan.profile.name, &shape, events, samples)
        })
        .collect();
    print!("{}", crate::report::table(&results));
    Ok(Record {
        format: FORMAT,
        profile: plan.profile.name.to_owned(),
        settings: Settings {
            events: match plan.length {
                Length::Events(events) => Some(events),
                Length::Duration(_) => None,
            },
            duration_s: match plan.length {
                Length::Events(_) => None,
                Length::Duration(duration) => Some(duration.as_secs_f64()),
            },
            repeat: plan.repeat,
            workers,
            shards,
            capacity,
            batch: plan.batch,
            sample_every: load::SAMPLE_EVERY,
        },
        results,
    })
}

/// Events per run for each runner so that a run lasts about `duration`,
/// from one calibration run each.
fn calibrate(runners: &mut [Box<dyn Runner>], duration: Duration) -> Result<Vec<u64>, String> {
    runners
        .iter_mut()
        .map(|runner| {
            let sample = runner
                .run(CALIBRATION_EVENTS)
                .map_err(|error| format!("{} calibration run failed: {error}", runner.name()))?;
            let rate = CALIBRATION_EVENTS as f64 / sample.elapsed.as_secs_f64().max(1e-9);
            Ok((rate * duration.as_secs_f64()).clamp(1_000.0, 1e10) as u64)
        })
        .collect()
}

/// One line on the shape, for the summary's header.
fn describe(shape: &Shape) -> String {
    let mut line = match shape.pattern {
        Pattern::Stream => format!(
            "{} publisher(s) -> {} handler(s)",
            shape.publishers, shape.handlers
        ),
        Pattern::RoundTrip => "round trips: ping -> handler -> pong -> publisher".to_owned(),
        Pattern::Flow => {
            return format!(
                "Diana interactions: {} users of {} tenant(s), one interaction at a time each: \
                 request -> {} services -> completion; events = interactions, \
                 deliveries = service answers",
                shape.publishers, shape.tenants, shape.handlers
            )
        }
    };
    if shape.keys > 0 {
        line += &format!(", {} keys", shape.keys);
    }
    match shape.types {
        0 => {}
        1 => line += ", 1 event type",
        types => line += &format!(", {types} event types"),
    }
    match shape.tenants {
        0 => {}
        1 => line += ", 1 tenant",
        tenants => line += &format!(", {tenants} tenants (tenant 1 takes half)"),
    }
    line
}

/// The record of one implementation's runs: median rates and CPU time,
/// latency percentiles over all runs' samples, allocations per event over
/// all runs.
pub fn summarize(
    implementation: &str,
    profile: &str,
    shape: &Shape,
    events: u64,
    samples: &[Sample],
) -> Measured {
    let elapsed = median(samples.iter().map(|sample| sample.elapsed.as_secs_f64()));
    let cpu = median(samples.iter().map(|sample| sample.cpu.as_secs_f64()));
    let mut latency = load::histogram();
    for sample in samples {
        load::merge(&mut latency, &sample.latency);
    }
    let allocations: u64 = samples.iter().map(|sample| sample.allocations).sum();
    let runs_events = events * samples.len() as u64;
    Measured {
        implementation: implementation.to_owned(),
        profile: profile.to_owned(),
        params: params(shape),
        events,
        events_per_s: events as f64 / elapsed,
        deliveries_per_s: shape.deliveries(events) as f64 / elapsed,
        latency_ns: percentiles(&latency),
        latency_samples: latency.len(),
        allocations_per_event: allocations as f64 / runs_events.max(1) as f64,
        cpu_seconds: cpu,
    }
}

fn params(shape: &Shape) -> Params {
    Params {
        pattern: shape.pattern.name().to_owned(),
        publishers: shape.publishers,
        handlers: shape.handlers,
        keys: shape.keys,
        types: shape.types,
        tenants: shape.tenants,
    }
}

/// p50, p99 and p99.9 of `latency`; zeros when it is empty.
fn percentiles(latency: &Histogram<u64>) -> Percentiles {
    if latency.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: latency.value_at_quantile(0.5),
        p99: latency.value_at_quantile(0.99),
        p999: latency.value_at_quantile(0.999),
    }
}

/// The median of `values` (the upper one of an even count); NaN for none.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_unstable_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(millis: u64, latencies: &[u64], allocations: u64) -> Sample {
        let mut latency = load::histogram();
        for &ns in latencies {
            latency.record(ns).unwrap();
        }
        Sample {
            elapsed: Duration::from_millis(millis),
            cpu: Duration::from_millis(millis * 2),
            allocations,
            latency,
        }
    }

    #[test]
    fn medians_and_merged_percentiles() {
        let shape = Shape::stream(1, 4);
        let samples = [
            sample(300, &[100; 50], 3),
            sample(100, &[200; 49], 0),
            sample(200, &[5_000], 1),
        ];
        let measured = summarize("x", "p", &shape, 1000, &samples);
        // Median elapsed 200 ms: 5,000 events/s, 4 handlers.
        assert_eq!(measured.events_per_s, 5_000.0);
        assert_eq!(measured.deliveries_per_s, 20_000.0);
        assert_eq!(measured.cpu_seconds, 0.4);
        assert_eq!(measured.latency_samples, 100);
        assert_eq!(measured.latency_ns.p50, 100);
        assert_eq!(measured.latency_ns.p99, 200);
        assert!((5_000..5_010).contains(&measured.latency_ns.p999));
        assert_eq!(measured.allocations_per_event, 4.0 / 3000.0);
    }

    #[test]
    fn no_samples_no_percentiles() {
        let measured = summarize("x", "p", &Shape::stream(1, 1), 10, &[sample(1, &[], 0)]);
        assert_eq!(measured.latency_ns, Percentiles::default());
    }

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), 3.0);
        assert!(median(std::iter::empty()).is_nan());
    }
}
