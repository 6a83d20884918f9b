//! Counters, kept per worker and summed when a snapshot is taken; beside
//! each type's counters, its latency histogram (`latency`); and the
//! snapshot's Prometheus text (`prometheus`).
//!
//! A worker sums a run of same-type events in a plain [`Counts`], then
//! adds it to its [`Counter`]: one row of atomics per event type, which
//! only that worker writes (a load and a store per counter, no
//! read-modify-write) and snapshots read without stopping it. The worker
//! adds a batch's counts before it reports the batch as completed (with
//! Release), so after `flush` returns, a snapshot is exact. Every counter
//! has one writer at a time (its worker; for the async handlers' runs,
//! whoever holds their counter's lock), and none is written by a
//! publisher: `published` is not counted at all, it is the sum of the
//! shards' ring and overflow positions, which publishing writes anyway.

use std::any::TypeId;
use std::collections::hash_map::{Entry, HashMap};
use std::time::Duration;

use crate::registry::{TypeMap, TypeNumber};
use crate::sync::{lock, Arc, AtomicU64, Mutex, Ordering};

mod latency;
mod prometheus;

pub(crate) use latency::is_timed;
use latency::LatencyCells;
pub use latency::LatencyHistogram;

/// The bus's counters at one moment.
///
/// Taken while events are in flight, it reads the shards' positions, then
/// each worker's counters, one after the other, not all at one instant:
/// `dispatched` may then pass `published`, and a retried, released or
/// async run counted by one worker may show before its event's dispatch,
/// counted by another. Within one worker's counts of a type, `panicked`
/// never passes `failed`, and a first run never shows before its
/// dispatch. After `flush` it is exact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Events accepted (by `publish*` and `ctx.publish*`).
    pub published: u64,
    /// Successful handler runs: one event, three handlers = 3.
    pub delivered: u64,
    /// Failed or panicked handler runs.
    pub failed: u64,
    /// The part of `failed` that panicked.
    pub panicked: u64,
    /// Re-runs after a failure (an event that needed 3 tries counts 2),
    /// replays of dead letters included.
    pub retried: u64,
    /// (event, handler) pairs recorded as dead letters.
    pub dead_lettered: u64,
    /// Dead letters dropped, oldest first, because the store was full.
    pub dead_letters_dropped: u64,
    /// Publishes acknowledged but not handled, as duplicates of an id
    /// recently published for the same tenant.
    pub deduplicated: u64,
    /// Publishes refused: full ring (under `Reject` or `try_publish`),
    /// over the tenant's quota, async backlogs over their bound, or closed
    /// bus (not the waits of `publish_async`).
    pub rejected: u64,
    /// Events taken up by a worker so far (`published` minus what is queued).
    pub dispatched: u64,
    /// How long handlers took, over every event type (see
    /// [`TypeMetrics::latency`]).
    pub latency: LatencyHistogram,
    /// One row per event type a worker has taken up: two types of one
    /// name (in two modules, or a request type and its event's) get a row
    /// each, and a type whose [`Event::name`](crate::Event::name) differs
    /// from value to value is labelled with one of its names.
    pub per_type: Vec<TypeMetrics>,
}

impl MetricsSnapshot {
    /// The (first) row of an event type called `name`.
    pub fn event(&self, name: &str) -> Option<&TypeMetrics> {
        self.per_type.iter().find(|row| row.name == name)
    }
}

/// The counters of one event type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TypeMetrics {
    /// `Event::name` of the type.
    pub name: &'static str,
    /// Events of this type taken up by a worker.
    pub dispatched: u64,
    /// Successful handler runs for this type.
    pub delivered: u64,
    /// Failed or panicked handler runs for this type.
    pub failed: u64,
    /// How long its handlers took: for sync handlers, sampled (one event
    /// in 128 taken up from each shard, if the type has a sync handler),
    /// the time a worker spent running all of an event's handlers; for async
    /// handlers, every run, from its start on the runtime to its end
    /// (retries are runs of their own). A type with both kinds has both
    /// kinds of timing in one histogram.
    pub latency: LatencyHistogram,
}

/// The counts of one event type over some stretch of work.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Counts {
    dispatched: u64,
    delivered: u64,
    failed: u64,
    panicked: u64,
    retried: u64,
}

impl Counts {
    /// Counts one re-run after a failure.
    #[inline(always)]
    pub(crate) fn retried(&mut self) {
        self.retried += 1;
    }

    /// Counts one event taken up.
    #[inline(always)]
    pub(crate) fn dispatched(&mut self) {
        self.dispatched += 1;
    }

    /// Counts one handler run.
    #[inline(always)]
    pub(crate) fn ran(&mut self, outcome: RunOutcome) {
        match outcome {
            RunOutcome::Delivered => self.delivered += 1,
            RunOutcome::Failed => self.failed += 1,
            RunOutcome::Panicked => {
                self.failed += 1;
                self.panicked += 1;
            }
        }
    }
}

/// How one handler run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunOutcome {
    Delivered,
    Failed,
    Panicked,
}

/// One event type's totals, as one counting thread keeps them: written by
/// that thread alone (a load and a store per counter, no read-modify-write),
/// read by snapshots at any time. A cache line of its own: with many types,
/// counting a run of events costs one line.
#[derive(Debug)]
#[repr(align(64))]
struct TypeTotals {
    name: &'static str,
    dispatched: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    retried: AtomicU64,
    /// Apart: written only when a run is timed.
    latency: Box<LatencyCells>,
}

impl TypeTotals {
    fn new(name: &'static str) -> Self {
        TypeTotals {
            name,
            dispatched: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            latency: Box::default(),
        }
    }

    /// Adds `counts`; one writer at a time (see the module docs). Each
    /// counter is stored with Release, in the order `get` reads them
    /// backwards.
    #[inline]
    fn add(&self, counts: &Counts) {
        let add = |total: &AtomicU64, n: u64| {
            total.store(total.load(Ordering::Relaxed) + n, Ordering::Release);
        };
        add(&self.dispatched, counts.dispatched);
        add(&self.delivered, counts.delivered);
        add(&self.failed, counts.failed);
        add(&self.panicked, counts.panicked);
        add(&self.retried, counts.retried);
    }

    /// The counts, read while the row's writer may be adding to them. Each
    /// load is Acquire and reads a counter stored before the one read
    /// before it, so a counter read later is at least as recent: the row
    /// never shows more panicked runs than failed ones, or a first run of
    /// an event it has not counted as dispatched.
    fn get(&self) -> Counts {
        let retried = self.retried.load(Ordering::Acquire);
        let panicked = self.panicked.load(Ordering::Acquire);
        let failed = self.failed.load(Ordering::Acquire);
        let delivered = self.delivered.load(Ordering::Acquire);
        let dispatched = self.dispatched.load(Ordering::Acquire);
        Counts {
            dispatched,
            delivered,
            failed,
            panicked,
            retried,
        }
    }
}

/// One counting thread's rows, with their types, as snapshots read them:
/// appended (under the lock) the first time the thread meets a type, never
/// removed.
#[derive(Default, Debug)]
pub(crate) struct Totals {
    rows: Mutex<Vec<(TypeId, Arc<TypeTotals>)>>,
}

/// What a counting thread counts with: its rows of [`Totals`], indexed by
/// type. A worker owns one; the async handlers' runs, which end on any
/// thread, share one under a lock.
///
/// A type's name is asked for once per counter (a default
/// [`Event::name`](crate::Event::name) searches the type's path).
/// Allocation-free once it has seen the types it counts.
#[derive(Default, Debug)]
pub(crate) struct Counter {
    totals: Arc<Totals>,
    index: TypeMap<usize>,
    /// Rows by type number (see [`Counter::numbered_row`]); [`NO_ROW`]
    /// where this counter has not met the number yet.
    by_number: Vec<usize>,
    rows: Vec<Arc<TypeTotals>>,
}

/// In [`Counter`]'s `by_number`: not met yet.
const NO_ROW: usize = usize::MAX;

impl Counter {
    /// A counter whose rows `totals` shows.
    pub(crate) fn new(totals: Arc<Totals>) -> Self {
        Counter {
            totals,
            index: TypeMap::default(),
            by_number: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// What snapshots read of this counter.
    pub(crate) fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Adds the counts of a run of events of one type; `name` is asked for
    /// only the first time this counter meets the type.
    #[inline]
    pub(crate) fn add(
        &mut self,
        type_id: TypeId,
        name: impl FnOnce() -> &'static str,
        counts: &Counts,
    ) {
        let row = self.row(type_id, name);
        self.add_to_row(row, counts);
    }

    /// The row of `type_id`, for [`Counter::add_to_row`]; `name` is asked
    /// for only the first time this counter meets the type.
    #[inline]
    pub(crate) fn row(&mut self, type_id: TypeId, name: impl FnOnce() -> &'static str) -> usize {
        let (rows, totals) = (&mut self.rows, &self.totals);
        *self.index.entry(type_id).or_insert_with(|| {
            let row = Arc::new(TypeTotals::new(name()));
            lock(&totals.rows).push((type_id, Arc::clone(&row)));
            rows.push(row);
            rows.len() - 1
        })
    }

    /// [`Counter::row`] for a type with a number in the registry, found by
    /// it: an index into a dense list instead of a hash lookup.
    #[inline]
    pub(crate) fn numbered_row(
        &mut self,
        number: TypeNumber,
        type_id: TypeId,
        name: impl FnOnce() -> &'static str,
    ) -> usize {
        match self.by_number.get(number as usize) {
            Some(&row) if row != NO_ROW => row,
            _ => self.number_row(number, type_id, name),
        }
    }

    /// Files the row of `type_id` under its number.
    #[cold]
    fn number_row(
        &mut self,
        number: TypeNumber,
        type_id: TypeId,
        name: impl FnOnce() -> &'static str,
    ) -> usize {
        let row = self.row(type_id, name);
        let at = number as usize;
        if self.by_number.len() <= at {
            self.by_number.resize(at + 1, NO_ROW);
        }
        self.by_number[at] = row;
        row
    }

    /// Adds the counts of a run of events of one type to its row, `at`.
    /// `&mut`: a row has one writer (see [`TypeTotals::add`]).
    #[inline]
    pub(crate) fn add_to_row(&mut self, at: usize, counts: &Counts) {
        self.rows[at].add(counts);
    }

    /// Records how long a timed run of the type of row `at` took.
    pub(crate) fn record_latency(&mut self, at: usize, took: Duration) {
        self.rows[at].latency.record(took);
    }
}

impl Totals {
    /// Adds these totals to `snapshot`, whose rows `rows` indexes by type
    /// (one index for every counter's totals added to one snapshot: with a
    /// search of the rows per type, a thousand types cost a snapshot
    /// millions of comparisons). By type, not by name: two types may share
    /// a name.
    pub(crate) fn add_to(&self, snapshot: &mut MetricsSnapshot, rows: &mut HashMap<TypeId, usize>) {
        for (type_id, row) in lock(&self.rows).iter() {
            let (name, counts, cells) = (row.name, row.get(), &row.latency);
            cells.add_to(&mut snapshot.latency);
            snapshot.dispatched += counts.dispatched;
            snapshot.delivered += counts.delivered;
            snapshot.failed += counts.failed;
            snapshot.panicked += counts.panicked;
            snapshot.retried += counts.retried;
            match rows.entry(*type_id) {
                Entry::Occupied(row) => {
                    let row = &mut snapshot.per_type[*row.get()];
                    row.dispatched += counts.dispatched;
                    row.delivered += counts.delivered;
                    row.failed += counts.failed;
                    cells.add_to(&mut row.latency);
                }
                Entry::Vacant(row) => {
                    row.insert(snapshot.per_type.len());
                    let mut latency = LatencyHistogram::default();
                    cells.add_to(&mut latency);
                    snapshot.per_type.push(TypeMetrics {
                        name,
                        dispatched: counts.dispatched,
                        delivered: counts.delivered,
                        failed: counts.failed,
                        latency,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_per_type_and_in_total() {
        let (a, b) = (TypeId::of::<u8>(), TypeId::of::<u16>());
        // Two counters (two workers), each meeting the types in its own
        // order, so their rows differ in order.
        let mut counters: Vec<Counter> = (0..2).map(|_| Counter::default()).collect();
        for (n, counter) in counters.iter_mut().enumerate() {
            for type_id in if n == 0 { [a, b] } else { [b, a] } {
                let mut run = Counts::default();
                run.dispatched();
                if type_id == a {
                    run.ran(RunOutcome::Delivered);
                    run.ran(RunOutcome::Panicked);
                    run.retried();
                } else {
                    run.ran(RunOutcome::Failed);
                }
                let name = if type_id == a { "A" } else { "B" };
                counter.add(type_id, || name, &run);
                counter.add(type_id, || unreachable!("a name is asked for once"), &run);
            }
        }
        let (mut snapshot, mut rows) = (MetricsSnapshot::default(), HashMap::new());
        for counter in &counters {
            counter.totals().add_to(&mut snapshot, &mut rows);
        }
        assert_eq!(snapshot.per_type.len(), 2, "one row per type");
        assert_eq!(snapshot.dispatched, 8);
        assert_eq!(snapshot.delivered, 4);
        assert_eq!(snapshot.failed, 8);
        assert_eq!(snapshot.panicked, 4);
        assert_eq!(snapshot.retried, 4);
        let a_row = snapshot.event("A").unwrap();
        assert_eq!((a_row.dispatched, a_row.delivered, a_row.failed), (4, 4, 4));
        let b_row = snapshot.event("B").unwrap();
        assert_eq!((b_row.dispatched, b_row.delivered, b_row.failed), (4, 0, 4));
    }

    #[test]
    fn a_numbered_row_is_its_types_row() {
        let (a, b) = (TypeId::of::<u8>(), TypeId::of::<u16>());
        let mut counter = Counter::default();
        let row_a = counter.row(a, || "A");
        // Numbers come from the registry, in any order, with gaps.
        assert_eq!(counter.numbered_row(7, a, || unreachable!()), row_a);
        let row_b = counter.numbered_row(3, b, || "B");
        assert_ne!(row_b, row_a);
        assert_eq!(counter.row(b, || unreachable!()), row_b);
        assert_eq!(counter.numbered_row(3, b, || unreachable!()), row_b);
        assert_eq!(counter.numbered_row(7, a, || unreachable!()), row_a);
    }

    #[test]
    fn a_snapshot_sees_a_row_from_its_first_count_on() {
        let counter_totals = Arc::new(Totals::default());
        let mut counter = Counter::new(Arc::clone(&counter_totals));
        let mut run = Counts::default();
        run.ran(RunOutcome::Delivered);
        let row = counter.row(TypeId::of::<u8>(), || "A");
        let read = |totals: &Totals| {
            let (mut snapshot, mut rows) = (MetricsSnapshot::default(), HashMap::new());
            totals.add_to(&mut snapshot, &mut rows);
            snapshot.event("A").map(|row| row.delivered)
        };
        assert_eq!(read(&counter_totals), Some(0));
        counter.add_to_row(row, &run);
        counter.add_to_row(row, &run);
        assert_eq!(read(&counter_totals), Some(2));
    }
}
