//! Criterion benches of the load profiles: one group per profile, with
//! diana-bus, the direct-call floor and every peer that runs the profile
//! (crossbeam-channel, flume, kanal, thingbuf, tokio's mpsc and broadcast, std's
//! sync_channel, the disruptor crate spinning and yielding; tokio tasks
//! for the Diana flow of `diana`) side by side in each, as
//! `BenchmarkId::new(implementation, parameter)`. The parameter is the
//! number of event types for `types` (1, 10, 100, 1000), of tenants for
//! `tenants` (1, 100, 10000), and the events (interactions for `diana`)
//! per iteration otherwise. The throughput is in deliveries: handler runs,
//! or for `diana` the services' answers.
//!
//! The runners are the CLI's own (`cli/src/load/`), included with `#[path]`:
//! the CLI package depends on this one, so this package cannot depend on it
//! back, and including the files keeps one copy of the driving code. Each
//! iteration is one whole run, timed by the runner itself from the first
//! publish to the last delivery (`iter_custom`), with every handler's
//! checksum checked; the bus is built once per benchmark, the peers'
//! queues and consumer threads (a flow's runtime and tasks) once per
//! iteration, outside the timed part.
//!
//! The disruptor's busy-spin peer burns a core per consumer thread: on a
//! machine with fewer cores than its threads (fanout4, latency on two
//! cores) it measures the scheduler more than the ring.

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use diana_bus::Bus;

// The CLI uses all of this module, the bench only its runners.
#[allow(dead_code, unused_imports)]
#[path = "../cli/src/load/mod.rs"]
mod load;

use load::{DianaRunner, Pattern, Runner, Shape, PEERS, PROFILES};

/// Events per iteration of a streaming profile: small, so a sample takes
/// milliseconds.
const EVENTS: u64 = 100_000;
/// Round trips per iteration of the latency profile.
const ROUND_TRIPS: u64 = 2_000;
/// Interactions per iteration of the diana profile.
const INTERACTIONS: u64 = 5_000;
/// The `types` profile's sweep.
const TYPES: [usize; 4] = [1, 10, 100, 1000];
/// The `tenants` profile's sweep.
const TENANTS: [u64; 3] = [1, 100, 10_000];
/// diana-bus worker threads (the CLI's default).
const WORKERS: usize = 2;
/// Slots per diana-bus shard and per peer queue (the CLI's default).
const CAPACITY: usize = 1024;

fn profiles(c: &mut Criterion) {
    for profile in PROFILES {
        let mut group = c.benchmark_group(profile.name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        let shape = profile.shape;
        match profile.name {
            "types" => {
                for types in TYPES {
                    bench_shape(&mut group, Shape { types, ..shape }, EVENTS, types as u64);
                }
            }
            "tenants" => {
                for tenants in TENANTS {
                    bench_shape(&mut group, Shape { tenants, ..shape }, EVENTS, tenants);
                }
            }
            _ => {
                let events = match shape.pattern {
                    Pattern::Stream => EVENTS,
                    Pattern::RoundTrip => ROUND_TRIPS,
                    Pattern::Flow => INTERACTIONS,
                };
                bench_shape(&mut group, shape, events, events);
            }
        }
        group.finish();
    }
}

/// Every implementation on `shape`, `events` events per iteration, under
/// the id `(implementation, parameter)`.
fn bench_shape(
    group: &mut BenchmarkGroup<'_, WallTime>,
    shape: Shape,
    events: u64,
    parameter: u64,
) {
    group.throughput(Throughput::Elements(shape.deliveries(events)));
    let bus = Bus::builder().workers(WORKERS).capacity(CAPACITY);
    let diana = DianaRunner::new(shape, bus).expect("the bench's bus settings are valid");
    // Each runner is dropped (the bus shut down) before the next starts.
    bench(group, Box::new(diana), events, parameter);
    for peer in PEERS.iter().filter(|peer| peer.runs(&shape)) {
        bench(group, peer.build(shape, CAPACITY), events, parameter);
    }
}

/// Benchmarks whole runs of `runner`, each checked.
fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    mut runner: Box<dyn Runner>,
    events: u64,
    parameter: u64,
) {
    let name = runner.name();
    group.bench_function(BenchmarkId::new(name, parameter), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| match runner.run(events) {
                    Ok(sample) => sample.elapsed,
                    Err(error) => panic!("{name}: {error}"),
                })
                .sum()
        })
    });
}

criterion_group!(benches, profiles);
criterion_main!(benches);
