//! Counters, kept per worker and summed when a snapshot is taken.
//!
//! A worker counts into a plain, thread-local [`BatchCounts`] while it runs
//! a batch, and adds it to its own [`WorkerCounts`] (a mutex only it and
//! snapshot readers take) once per batch, before it reports the batch as
//! completed; so after `flush` returns, a snapshot is exact. The two keep
//! their rows in the same order, so the merge looks nothing up. No counter
//! is written by two threads per event. `published` is not counted at all: it
//! is the sum of the shards' ring and overflow positions, which publishing
//! writes anyway.

use std::any::TypeId;
use std::collections::hash_map::{Entry, HashMap};

use crate::registry::TypeMap;

/// The bus's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Publishes refused: full ring (under `Reject` or `try_publish`) or
    /// closed bus.
    pub rejected: u64,
    /// Events taken up by a worker so far (`published` minus what is queued).
    pub dispatched: u64,
    /// One row per event type a worker has taken up, by name.
    pub per_type: Vec<TypeMetrics>,
}

impl MetricsSnapshot {
    /// The row of the event type called `name`.
    pub fn event(&self, name: &str) -> Option<&TypeMetrics> {
        self.per_type.iter().find(|row| row.name == name)
    }
}

/// The counters of one event type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeMetrics {
    /// `Event::name` of the type.
    pub name: &'static str,
    /// Events of this type taken up by a worker.
    pub dispatched: u64,
    /// Successful handler runs for this type.
    pub delivered: u64,
    /// Failed or panicked handler runs for this type.
    pub failed: u64,
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
    fn add(&mut self, other: &Counts) {
        self.dispatched += other.dispatched;
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.panicked += other.panicked;
        self.retried += other.retried;
    }

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

/// A worker's counts for the batch it is running, per type.
///
/// Its rows outlive the batch, so a type's name is asked for once per
/// worker (a default [`Event::name`](crate::Event::name) searches the
/// type's path), and `touched` lists the rows this batch counted into, so
/// a merge costs what the batch touched, not every type ever seen.
/// Allocation-free once it has seen the batch's types.
#[derive(Default, Debug)]
pub(crate) struct BatchCounts {
    rows: Vec<Row>,
    index: TypeMap<usize>,
    touched: Vec<usize>,
}

#[derive(Debug)]
struct Row {
    name: &'static str,
    counts: Counts,
    touched: bool,
}

impl BatchCounts {
    /// Adds the counts of a run of events of one type; `name` is asked for
    /// only the first time this worker meets the type.
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

    /// The row of `type_id`, for [`BatchCounts::add_to_row`]; `name` is
    /// asked for only the first time this worker meets the type.
    #[inline]
    pub(crate) fn row(&mut self, type_id: TypeId, name: impl FnOnce() -> &'static str) -> usize {
        let rows = &mut self.rows;
        *self.index.entry(type_id).or_insert_with(|| {
            rows.push(Row {
                name: name(),
                counts: Counts::default(),
                touched: false,
            });
            rows.len() - 1
        })
    }

    /// Adds the counts of a run of events of one type to its row, `at`.
    #[inline]
    pub(crate) fn add_to_row(&mut self, at: usize, counts: &Counts) {
        let row = &mut self.rows[at];
        if !row.touched {
            row.touched = true;
            self.touched.push(at);
        }
        row.counts.add(counts);
    }

    /// Adds this batch to `totals` and starts afresh. `totals` must be
    /// merged from this `BatchCounts` alone: its rows are these rows, in
    /// the same order, so a row is added by its index, with no lookup.
    pub(crate) fn merge_into(&mut self, totals: &mut WorkerCounts) {
        debug_assert!(totals.rows.len() <= self.rows.len());
        let known = totals.rows.len();
        totals.rows.extend(
            self.rows[known..]
                .iter()
                .map(|row| (row.name, Counts::default())),
        );
        for at in self.touched.drain(..) {
            let row = &mut self.rows[at];
            totals.rows[at].1.add(&row.counts);
            row.counts = Counts::default();
            row.touched = false;
        }
    }
}

/// Totals since the bus started, one row per event type: a worker's,
/// merged from its own [`BatchCounts`] once per batch (see
/// [`BatchCounts::merge_into`]).
#[derive(Default, Debug)]
pub(crate) struct WorkerCounts {
    rows: Vec<(&'static str, Counts)>,
}

/// The async handlers' totals: their runs end on any thread, one at a
/// time, and are counted as a batch of one.
#[derive(Default, Debug)]
pub(crate) struct AsyncCounts {
    batch: BatchCounts,
    totals: WorkerCounts,
}

impl AsyncCounts {
    /// Adds the counts of one run of a handler of `type_id`.
    pub(crate) fn add(&mut self, type_id: TypeId, name: &'static str, counts: &Counts) {
        self.batch.add(type_id, || name, counts);
        self.batch.merge_into(&mut self.totals);
    }

    /// As [`WorkerCounts::add_to`].
    pub(crate) fn add_to(
        &self,
        snapshot: &mut MetricsSnapshot,
        rows: &mut HashMap<&'static str, usize>,
    ) {
        self.totals.add_to(snapshot, rows);
    }
}

impl WorkerCounts {
    /// Adds these totals to `snapshot`, whose rows `rows` indexes by name
    /// (one index for every worker's totals added to one snapshot: with a
    /// search of the rows per type, a thousand types cost a snapshot
    /// millions of name comparisons, under the worker's lock).
    pub(crate) fn add_to(
        &self,
        snapshot: &mut MetricsSnapshot,
        rows: &mut HashMap<&'static str, usize>,
    ) {
        for &(name, counts) in &self.rows {
            snapshot.dispatched += counts.dispatched;
            snapshot.delivered += counts.delivered;
            snapshot.failed += counts.failed;
            snapshot.panicked += counts.panicked;
            snapshot.retried += counts.retried;
            match rows.entry(name) {
                Entry::Occupied(row) => {
                    let row = &mut snapshot.per_type[*row.get()];
                    row.dispatched += counts.dispatched;
                    row.delivered += counts.delivered;
                    row.failed += counts.failed;
                }
                Entry::Vacant(row) => {
                    row.insert(snapshot.per_type.len());
                    snapshot.per_type.push(TypeMetrics {
                        name,
                        dispatched: counts.dispatched,
                        delivered: counts.delivered,
                        failed: counts.failed,
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
    fn batches_add_up_per_type_and_in_total() {
        let (a, b) = (TypeId::of::<u8>(), TypeId::of::<u16>());
        let mut batch = BatchCounts::default();
        let mut worker = WorkerCounts::default();
        for _ in 0..2 {
            let mut run_a = Counts::default();
            run_a.dispatched();
            run_a.ran(RunOutcome::Delivered);
            run_a.ran(RunOutcome::Panicked);
            batch.add(a, || "A", &run_a);
            let mut run_b = Counts::default();
            run_b.dispatched();
            run_b.ran(RunOutcome::Failed);
            batch.add(b, || "B", &run_b);
            batch.merge_into(&mut worker);
        }
        let (mut snapshot, mut rows) = (MetricsSnapshot::default(), HashMap::new());
        worker.add_to(&mut snapshot, &mut rows);
        worker.add_to(&mut snapshot, &mut rows);
        assert_eq!(snapshot.per_type.len(), 2, "one row per type");
        assert_eq!(snapshot.dispatched, 8);
        assert_eq!(snapshot.delivered, 4);
        assert_eq!(snapshot.failed, 8);
        assert_eq!(snapshot.panicked, 4);
        let a_row = snapshot.event("A").unwrap();
        assert_eq!((a_row.dispatched, a_row.delivered, a_row.failed), (4, 4, 4));
        assert_eq!(snapshot.event("B").unwrap().failed, 4);
    }

    #[test]
    fn async_runs_add_up_per_type_whatever_their_order() {
        let (a, b) = (TypeId::of::<u8>(), TypeId::of::<u16>());
        let mut async_counts = AsyncCounts::default();
        let mut delivered = Counts::default();
        delivered.ran(RunOutcome::Delivered);
        for type_id in [b, a, b, b] {
            let name = if type_id == a { "A" } else { "B" };
            async_counts.add(type_id, name, &delivered);
        }
        let (mut snapshot, mut rows) = (MetricsSnapshot::default(), HashMap::new());
        async_counts.add_to(&mut snapshot, &mut rows);
        assert_eq!(snapshot.delivered, 4);
        assert_eq!(snapshot.event("A").unwrap().delivered, 1);
        assert_eq!(snapshot.event("B").unwrap().delivered, 3);
    }
}
