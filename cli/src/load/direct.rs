//! The floor: the same handlers called in a loop on the publishing thread,
//! with nothing between publish and handler. Whatever the shape's
//! publisher count, one thread calls every handler for every event (a
//! round trip is one call of the ping's handler).

use super::runner::{verdict, Timed};
use super::{
    publishers, round_trip, Dispatch, Handlers, Message, Pattern, RunError, Runner, Sample, Shape,
};

/// Direct calls, no queue and no other thread.
#[derive(Debug)]
pub struct DirectRunner {
    shape: Shape,
    handlers: Handlers,
}

impl DirectRunner {
    /// Calls the handlers of `shape` directly.
    pub fn new(shape: Shape) -> Self {
        Self {
            shape,
            handlers: Handlers::new(shape.handlers),
        }
    }

    fn timed(&self, events: u64) -> Timed {
        let (handlers, dispatch) = (&self.handlers, Dispatch::new(self.shape.types));
        let call = move |message: Message| {
            for handler in 0..self.shape.handlers {
                dispatch.call(handlers, handler, &message);
            }
        };
        match self.shape.pattern {
            Pattern::Stream => {
                let send = |message| {
                    call(message);
                    true
                };
                publishers::run(&self.shape, events, vec![send], || {})
            }
            Pattern::RoundTrip => {
                let ask = |message: Message| {
                    call(message);
                    Some(message.id)
                };
                round_trip::run(&self.shape, events, ask, || {})
            }
        }
    }
}

impl Runner for DirectRunner {
    fn name(&self) -> &'static str {
        "direct"
    }

    fn run(&mut self, events: u64) -> Result<Sample, RunError> {
        let timed = self.timed(events);
        verdict(timed, events, &self.handlers)
    }
}
