//! A shape on diana-bus: one subscription per handler.

use std::sync::Arc;
use std::time::Duration;

use diana_bus::{Bus, BusBuilder, ConfigError, Context, HandlerResult};

use super::runner::verdict;
use super::{publishers, Message, RunError, Runner, Shape, Tally};

/// A bus built once and reused for every run, with one subscription per
/// handler of the shape.
#[derive(Debug)]
pub struct DianaRunner {
    bus: Bus,
    shape: Shape,
    tally: Arc<Tally>,
}

impl DianaRunner {
    /// Builds the bus from `builder` and subscribes the shape's handlers.
    pub fn new(shape: Shape, builder: BusBuilder) -> Result<Self, ConfigError> {
        let bus = builder.build()?;
        let tally = Arc::new(Tally::new(shape.handlers));
        for handler in 0..shape.handlers {
            let tally = Arc::clone(&tally);
            bus.subscribe(move |message: &Message, _: &Context<'_>| -> HandlerResult {
                tally.add(handler, message.id);
                Ok(())
            });
        }
        Ok(Self { bus, shape, tally })
    }

    /// The bus, for its effective settings.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }
}

impl Runner for DianaRunner {
    fn name(&self) -> &'static str {
        "diana-bus"
    }

    fn run(&mut self, events: u64) -> Result<Duration, RunError> {
        let bus = &self.bus;
        let delivered_before = bus.metrics().delivered;
        let timed = publishers::run(
            self.shape.publishers,
            events,
            self.shape.keys,
            |message| bus.publish(message).is_ok(),
            || bus.flush(),
        );
        let elapsed = verdict(timed, events, &self.tally)?;
        let expected = self.shape.deliveries(events);
        let counted = bus.metrics().delivered - delivered_before;
        if counted != expected {
            return Err(RunError::Deliveries { expected, counted });
        }
        Ok(elapsed)
    }
}
