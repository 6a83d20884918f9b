//! The handler every implementation runs, the same code for all of them:
//! fold the event's id into the handler's checksum and, for a sampled
//! event, record how long it took from its publish to this call.

use hdrhistogram::Histogram;

use super::{clock, Latencies, Message, Mismatch, Tally};

/// The state of a shape's handlers: their checksums and latencies.
#[derive(Debug)]
pub struct Handlers {
    tally: Tally,
    latencies: Latencies,
}

impl Handlers {
    /// Zeroed checksums and empty histograms for `handlers` handlers.
    pub fn new(handlers: usize) -> Self {
        Self {
            tally: Tally::new(handlers),
            latencies: Latencies::new(handlers),
        }
    }

    /// Handler number `handler` runs on `message`.
    #[inline]
    pub fn call(&self, handler: usize, message: &Message) {
        self.tally.add(handler, message.id);
        if message.stamp != 0 {
            self.latencies.record(handler, clock::since(message.stamp));
        }
    }

    /// Ends a run of `events` events: the sampled latencies of every
    /// handler merged, and whether every handler saw every id exactly once.
    /// Checksums and histograms are emptied for the next run either way.
    pub fn settle(&self, events: u64) -> (Result<(), Mismatch>, Histogram<u64>) {
        (self.tally.settle(events), self.latencies.take())
    }
}
