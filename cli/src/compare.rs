//! `diana-bus run`: one profile on diana-bus and the same shape on
//! crossbeam-channel, run alternately several times, and a table of the
//! medians. Alternating and taking medians keeps a noisy, shared machine
//! from favouring whichever implementation ran in a quiet moment.

use std::time::Duration;

use diana_bus::BusBuilder;

use crate::load::{CrossbeamRunner, DianaRunner, Profile, Runner};
use crate::report::{self, Row};

/// Runs `profile` with `events` events `repeat` times on a bus built by
/// `bus` and on crossbeam channels bounded to `capacity`, alternating, and
/// prints the median of each. The two never overlap: while one runs, the
/// other's threads are parked (the bus's idle workers) or not started
/// (crossbeam's consumers are spawned per run).
pub fn run(
    profile: &Profile,
    events: u64,
    bus: BusBuilder,
    capacity: usize,
    repeat: usize,
) -> Result<(), String> {
    let shape = profile.shape;
    let diana =
        DianaRunner::new(shape, bus).map_err(|error| format!("bad diana-bus settings: {error}"))?;
    let settings = diana.bus();
    println!("profile {}: {}", profile.name, profile.description);
    println!(
        "{events} events; diana-bus: workers {}, shards {}, capacity {}; \
         crossbeam-channel: {} bounded channel(s), capacity {capacity}",
        settings.workers(),
        settings.shards(),
        settings.capacity(),
        shape.handlers,
    );
    println!("median of {repeat} alternating runs each");
    println!();
    let mut runners: [Box<dyn Runner>; 2] = [
        Box::new(diana),
        Box::new(CrossbeamRunner::new(shape, capacity)),
    ];
    let mut times: [Vec<Duration>; 2] = Default::default();
    for _ in 0..repeat.max(1) {
        for (runner, times) in runners.iter_mut().zip(&mut times) {
            let elapsed = runner
                .run(events)
                .map_err(|error| format!("{} run failed: {error}", runner.name()))?;
            times.push(elapsed);
        }
    }
    let rows: Vec<Row> = runners
        .iter()
        .zip(&mut times)
        .map(|(runner, times)| Row {
            implementation: runner.name(),
            elapsed: median(times),
            events,
            deliveries: shape.deliveries(events),
        })
        .collect();
    print!("{}", report::table(&rows));
    Ok(())
}

/// The median of `times` (the upper one of an even count).
fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}
