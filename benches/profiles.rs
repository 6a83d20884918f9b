//! Criterion benches of the load profiles: one group per profile, diana-bus
//! and crossbeam-channel side by side in each.
//!
//! The runners are the CLI's own (`cli/src/load/`), included with `#[path]`:
//! the CLI package depends on this one, so this package cannot depend on it
//! back, and including the files keeps one copy of the driving code. Each
//! iteration is one whole run, timed by the runner itself from the first
//! publish to the last delivery (`iter_custom`), with every handler's
//! checksum checked; the bus is built once per benchmark, the channels and
//! their consumer threads once per iteration, outside the timed part.

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

use load::{CrossbeamRunner, DianaRunner, Runner, PROFILES};

/// Events per iteration: small, so a sample takes milliseconds.
const EVENTS: u64 = 100_000;
/// diana-bus worker threads (the CLI's default).
const WORKERS: usize = 2;
/// Slots per diana-bus shard and per crossbeam channel (the CLI's default).
const CAPACITY: usize = 1024;

fn profiles(c: &mut Criterion) {
    for profile in PROFILES {
        let shape = profile.shape;
        let mut group = c.benchmark_group(profile.name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Elements(shape.deliveries(EVENTS)));
        let bus = Bus::builder().workers(WORKERS).capacity(CAPACITY);
        let diana = DianaRunner::new(shape, bus).expect("the bench's bus settings are valid");
        // Each runner is dropped (the bus shut down) before the next starts.
        bench(&mut group, diana);
        bench(&mut group, CrossbeamRunner::new(shape, CAPACITY));
        group.finish();
    }
}

/// Benchmarks whole runs of `runner`, each checked.
fn bench(group: &mut BenchmarkGroup<'_, WallTime>, mut runner: impl Runner) {
    let name = runner.name();
    group.bench_function(BenchmarkId::new(name, EVENTS), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    runner
                        .run(EVENTS)
                        .unwrap_or_else(|error| panic!("{name}: {error}"))
                })
                .sum()
        })
    });
}

criterion_group!(benches, profiles);
criterion_main!(benches);
