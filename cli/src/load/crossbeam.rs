//! A shape on crossbeam-channel: one bounded channel and one consumer
//! thread per handler; a publisher sends a copy of each event to every
//! channel.

use std::panic::resume_unwind;
use std::thread;
use std::time::Duration;

use crossbeam_channel::bounded;

use super::runner::verdict;
use super::{publishers, Message, RunError, Runner, Shape, Tally};

/// Makes fresh channels and consumer threads for every run (a channel ends
/// when its senders are dropped); both are ready before the clock starts.
#[derive(Debug)]
pub struct CrossbeamRunner {
    shape: Shape,
    capacity: usize,
    tally: Tally,
}

impl CrossbeamRunner {
    /// Runs `shape` through channels bounded to `capacity` messages.
    pub fn new(shape: Shape, capacity: usize) -> Self {
        Self {
            shape,
            capacity,
            tally: Tally::new(shape.handlers),
        }
    }
}

impl Runner for CrossbeamRunner {
    fn name(&self) -> &'static str {
        "crossbeam-channel"
    }

    fn run(&mut self, events: u64) -> Result<Duration, RunError> {
        let tally = &self.tally;
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..self.shape.handlers)
            .map(|_| bounded::<Message>(self.capacity))
            .unzip();
        let timed = thread::scope(|scope| {
            let consumers: Vec<_> = receivers
                .into_iter()
                .enumerate()
                .map(|(handler, receiver)| {
                    scope.spawn(move || {
                        for message in receiver {
                            tally.add(handler, message.id);
                        }
                    })
                })
                .collect();
            publishers::run(
                self.shape.publishers,
                events,
                self.shape.keys,
                move |message| senders.iter().all(|sender| sender.send(message).is_ok()),
                || {
                    for consumer in consumers {
                        consumer.join().unwrap_or_else(|panic| resume_unwind(panic));
                    }
                },
            )
        });
        verdict(timed, events, &self.tally)
    }
}
