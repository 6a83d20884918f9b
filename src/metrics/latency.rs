//! Handling latency: log-linear histograms of how long handlers take, per
//! event type.
//!
//! A bucket per quarter of a power of two, from 64 ns to about 69 s (four
//! buckets per doubling: a quantile read from them, between those bounds,
//! is at most 25% above the true value), plus one up to 64 ns and one
//! above. Bounds are inclusive, as Prometheus's `le`. Each worker records
//! into its own rows' cells (one writer per cell, as the counters in
//! `metrics`), a snapshot sums them into a [`LatencyHistogram`].
//!
//! What is timed: for sync handlers, one event in 128 taken up from its
//! shard ([`is_timed`]) whose type has a sync handler: the time its worker
//! spends running all its handlers (handing over its async runs included;
//! events run later, after a held key or a dependency, are not timed); for
//! async handlers, every run (each attempt), from its start on the runtime
//! to its end.

// std's atomics even under loom: these cells are statistics, written by
// one thread and read by snapshots, in no protocol a model checks.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One sync event in 2^SAMPLE_BITS (128) is timed.
const SAMPLE_BITS: u32 = 7;

/// Whether the event at position `seq` of its shard (ring or overflow) is
/// timed: one in 128, spread by a multiplicative (Fibonacci) hash, whose
/// picks follow no period, so no publish pattern (types taking turns, a
/// request and its reply) keeps a type from being timed. Position 0 is.
#[inline(always)]
pub(crate) fn is_timed(seq: u64) -> bool {
    seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SAMPLE_BITS) == 0
}

/// The first bucket's upper bound, as a power of two (64 ns): it holds
/// every timing up to that.
const LOW_BITS: u32 = 6;
/// Doublings covered by the quarter buckets (64 ns up to 2^36 ns).
const DOUBLINGS: usize = 30;
/// Buckets: one up to 64 ns, four per doubling, one above 2^36 ns.
const BUCKETS: usize = DOUBLINGS * 4 + 2;

/// The bucket of a value of `ns` nanoseconds: the one whose upper bound is
/// the first at or above it (bounds are inclusive, as Prometheus's `le`).
fn bucket(ns: u64) -> usize {
    let ns = ns.saturating_sub(1);
    if ns < 1 << LOW_BITS {
        return 0;
    }
    let log = 63 - ns.leading_zeros();
    if log as usize >= LOW_BITS as usize + DOUBLINGS {
        return BUCKETS - 1;
    }
    let quarter = (ns >> (log - 2)) & 3;
    1 + (log - LOW_BITS) as usize * 4 + quarter as usize
}

/// The upper bound of bucket `index` in nanoseconds (inclusive); `None`
/// for the last bucket, which has none.
fn upper_bound(index: usize) -> Option<u64> {
    match index {
        0 => Some(1 << LOW_BITS),
        i if i >= BUCKETS - 1 => None,
        i => {
            let log = LOW_BITS + ((i - 1) / 4) as u32;
            let quarter = ((i - 1) % 4) as u64;
            Some((5 + quarter) << (log - 2))
        }
    }
}

/// A worker's cells for one event type: one writer (see the module docs).
#[derive(Debug)]
pub(crate) struct LatencyCells {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for LatencyCells {
    fn default() -> Self {
        LatencyCells {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl LatencyCells {
    /// Records one timing; one writer at a time.
    pub(crate) fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let add = |cell: &AtomicU64, n: u64| {
            cell.store(
                cell.load(Ordering::Relaxed).saturating_add(n),
                Ordering::Relaxed,
            );
        };
        add(&self.buckets[bucket(ns)], 1);
        add(&self.sum_ns, ns);
    }

    /// Adds these cells to `histogram`.
    pub(crate) fn add_to(&self, histogram: &mut LatencyHistogram) {
        for (total, cell) in histogram.buckets.iter_mut().zip(&self.buckets) {
            *total += cell.load(Ordering::Relaxed);
        }
        histogram.sum_ns = histogram
            .sum_ns
            .saturating_add(self.sum_ns.load(Ordering::Relaxed));
    }
}

/// How long handlers took, as a histogram (see [`crate::TypeMetrics`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyHistogram {
    buckets: [u64; BUCKETS],
    sum_ns: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: [0; BUCKETS],
            sum_ns: 0,
        }
    }
}

impl LatencyHistogram {
    /// How many timings it holds.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Their sum.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }

    /// The `q`-quantile (`q` from 0 to 1: 0.99 is p99), as the upper bound
    /// of the bucket it falls in (from 64 ns to 69 s, at most 25% above the
    /// true value); `None`
    /// without timings, and `Duration::MAX` past the last bound (69 s).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // The rank of the quantile's timing, from 1.
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        let index = self
            .buckets
            .iter()
            .position(|&n| {
                seen += n;
                seen >= rank
            })
            .unwrap_or(BUCKETS - 1);
        Some(upper_bound(index).map_or(Duration::MAX, Duration::from_nanos))
    }

    /// The cumulative counts at each bucket's upper bound, ascending, the
    /// last (no bound: `None`) holding every timing.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let mut seen = 0;
        self.buckets.iter().enumerate().map(move |(index, &n)| {
            seen += n;
            (upper_bound(index).map(Duration::from_nanos), seen)
        })
    }

    /// Adds `other`'s timings.
    pub(crate) fn merge(&mut self, other: &LatencyHistogram) {
        for (total, n) in self.buckets.iter_mut().zip(&other.buckets) {
            *total += n;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_the_bucket_whose_bounds_hold_it() {
        // Bucket `index` holds (lower, upper]; the first holds 0 too.
        let mut lower = 0;
        assert_eq!(bucket(0), 0);
        for index in 0..BUCKETS {
            assert_eq!(bucket(lower + 1), index, "{} ns", lower + 1);
            match upper_bound(index) {
                Some(upper) => {
                    assert!(upper > lower, "bucket {index}");
                    assert_eq!(bucket(upper), index, "{upper} ns");
                    // A quarter of a doubling at most: within 25%.
                    assert!(index < 2 || (upper - lower) * 4 <= lower, "bucket {index}");
                    lower = upper;
                }
                None => {
                    assert_eq!(index, BUCKETS - 1);
                    assert_eq!(bucket(u64::MAX), index);
                }
            }
        }
    }

    #[test]
    fn one_position_in_128_is_timed_whatever_the_period_of_a_pattern() {
        // Any type taking every `period`-th position from `offset` on.
        for period in [1, 2, 3, 64, 128, 256] {
            for offset in 0..period.min(4) {
                let timed = (0..100_000u64)
                    .map(|k| offset + k * period)
                    .filter(|&seq| is_timed(seq))
                    .count();
                assert!(
                    (700..=870).contains(&timed),
                    "every {period}th from {offset}: {timed}"
                );
            }
        }
        assert!(is_timed(0));
    }

    #[test]
    fn quantiles_read_the_bucket_of_the_ranked_timing() {
        let cells = LatencyCells::default();
        let mut histogram = LatencyHistogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        // 90 timings of 1 µs, 9 of 1 ms, 1 of 100 s.
        for (n, took) in [
            (90, Duration::from_micros(1)),
            (9, Duration::from_millis(1)),
            (1, Duration::from_secs(100)),
        ] {
            (0..n).for_each(|_| cells.record(took));
        }
        cells.add_to(&mut histogram);
        assert_eq!(histogram.count(), 100);
        assert_eq!(
            histogram.sum(),
            Duration::from_nanos(90_000 + 9_000_000 + 100_000_000_000)
        );
        let within = |got: Duration, truth: Duration| {
            got > truth && got.as_nanos() * 4 <= truth.as_nanos() * 5
        };
        let p50 = histogram.quantile(0.5).unwrap();
        assert!(within(p50, Duration::from_micros(1)), "{p50:?}");
        let p95 = histogram.quantile(0.95).unwrap();
        assert!(within(p95, Duration::from_millis(1)), "{p95:?}");
        assert_eq!(histogram.quantile(1.0), Some(Duration::MAX));
        let (bound, all) = histogram.cumulative().last().unwrap();
        assert_eq!((bound, all), (None, 100));
        let mut twice = histogram.clone();
        twice.merge(&histogram);
        assert_eq!(twice.count(), 200);
        assert_eq!(twice.quantile(0.5), histogram.quantile(0.5));
    }
}
