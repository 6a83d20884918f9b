//! `diana-bus run`: one profile on diana-bus, then the same shape on
//! crossbeam-channel, and a table of both.

use diana_bus::BusBuilder;

use crate::load::{CrossbeamRunner, DianaRunner, Profile, Runner, Shape};
use crate::report::{self, Row};

/// Runs `profile` with `events` events on a bus built by `bus`, then on
/// crossbeam channels bounded to `capacity`, and prints what it measured.
/// The two never overlap: the bus's workers are joined before the channels'
/// threads start.
pub fn run(profile: &Profile, events: u64, bus: BusBuilder, capacity: usize) -> Result<(), String> {
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
    println!();
    let rows = [
        measure(diana, shape, events)?,
        measure(CrossbeamRunner::new(shape, capacity), shape, events)?,
    ];
    print!("{}", report::table(&rows));
    Ok(())
}

/// One run of `runner`, which is dropped (for a bus: shut down, its workers
/// joined) before this returns.
fn measure(mut runner: impl Runner, shape: Shape, events: u64) -> Result<Row, String> {
    let elapsed = runner
        .run(events)
        .map_err(|error| format!("{} run failed: {error}", runner.name()))?;
    Ok(Row {
        implementation: runner.name(),
        elapsed,
        events,
        deliveries: shape.deliveries(events),
    })
}
