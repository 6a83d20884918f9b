//! Latency histograms: one per handler, written only for sampled events
//! (so the lock is rare and almost never contended), or one per user of a
//! flow, written by that user alone; merged at the end.

use std::sync::Mutex;

use hdrhistogram::Histogram;

/// The slowest latency recorded as itself: longer ones count as this.
const HIGHEST_NS: u64 = 60_000_000_000;

/// An empty histogram of nanoseconds, 1 ns to a minute, 3 significant
/// digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("static bounds are valid")
}

/// One histogram per handler (or user).
#[derive(Debug)]
pub struct Latencies {
    handlers: Box<[Slot]>,
}

/// A handler's histogram on its own cache lines, away from its neighbours'
/// locks.
#[derive(Debug)]
#[repr(align(128))]
struct Slot(Mutex<Histogram<u64>>);

impl Latencies {
    /// Empty histograms for `handlers` handlers.
    pub fn new(handlers: usize) -> Self {
        Self {
            handlers: (0..handlers)
                .map(|_| Slot(Mutex::new(histogram())))
                .collect(),
        }
    }

    /// Records `nanos` for handler `handler`.
    pub fn record(&self, handler: usize, nanos: u64) {
        let mut histogram = self.handlers[handler]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        histogram.saturating_record(nanos.max(1));
    }

    /// Every handler's histogram merged into one; all of them are emptied
    /// for the next run.
    pub fn take(&self) -> Histogram<u64> {
        let mut merged = histogram();
        for slot in self.handlers.iter() {
            let mut histogram = slot
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            merge(&mut merged, &histogram);
            histogram.reset();
        }
        merged
    }
}

/// Adds every count of `from` to `into`. Both come from [`histogram`], so
/// their bounds agree and the merge cannot fail.
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from)
        .expect("histograms with the same bounds merge");
}

#[cfg(test)]
mod tests {
    #[test]
    fn take_merges_every_handler_and_empties_them() {
        let latencies = super::Latencies::new(3);
        (1..=100).for_each(|ns| latencies.record(0, ns * 10));
        (1..=100).for_each(|ns| latencies.record(2, ns * 1000));
        latencies.record(1, 0); // recorded as 1 ns, not dropped
        let merged = latencies.take();
        assert_eq!(merged.len(), 201);
        assert_eq!(merged.min(), 1);
        // 201 values: 1, then 10..=1000 (100 of them), then 1000..=100,000.
        assert_eq!(merged.value_at_quantile(0.5), 1000);
        assert!(merged.max() >= 100_000 && merged.max() <= 100_100);
        assert_eq!(latencies.take().len(), 0, "take empties the handlers");
    }

    #[test]
    fn out_of_range_latencies_saturate() {
        let latencies = super::Latencies::new(1);
        latencies.record(0, u64::MAX);
        let merged = latencies.take();
        assert_eq!(merged.len(), 1);
        assert!(merged.max() >= super::HIGHEST_NS);
    }
}
