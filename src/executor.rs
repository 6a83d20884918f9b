//! The worker pool: W threads drain S shards (S >= W, a power of two) in
//! batches, park when idle, and settle `flush` and `shutdown`.
//!
//! # Workers and batches
//!
//! Worker `w` owns shards `w, w + W, w + 2W, ...` and is the one woken for
//! them (see `shard` for claims and helping). For each claimed shard it runs
//! up to `batch` events as one *batch* (one table load per registry shard),
//! each where it lies in its ring slot; it moves out only the events that
//! outlive the batch (a failure, a held key, a wait, an explicit id), frees
//! the slots with one store, records the shard's progress, then fences
//! once and notifies waiting publishers and flushers
//! (publishers blocked on a full ring once half of it is free). When a
//! stream trickles in while the worker keeps up, it lingers a few
//! microseconds between small batches, so that a batch builds up (see
//! [`Executor::linger`]).
//!
//! # Batch quiescence (what `unsubscribe` waits for)
//!
//! `batch_seq` is odd while the worker runs a batch. A batch begins with
//! `batch_seq = odd; fence(SeqCst)` and only then loads tables and reads
//! `unsubscribed` flags; it ends with a Release store of the next even
//! value. `unsubscribe` sets the flag, stores the table without the
//! subscriber, fences (`SeqCst`) and waits, for every worker whose
//! `batch_seq` it reads odd, until it changes. Either the worker's fence
//! comes first, and `unsubscribe` sees it in a batch and waits the batch
//! out; or `unsubscribe`'s fence comes first, and the worker's batch sees
//! the flag and never starts the handler. When called on a worker thread
//! (from a handler) `unsubscribe` cannot wait (two handlers unsubscribing
//! each other would deadlock), so it only sets the flag: that worker never
//! calls the handler again, and calls already running elsewhere finish.
//!
//! # Flush
//!
//! `flush` must wait for the events accepted before it was called and for
//! their follow-ups (`ctx.publish`, transitively), but not for everything
//! published meanwhile by other threads, or a busy bus would never let it
//! return. Every root publish is stamped with the current `epoch`; a
//! follow-up inherits its parent's. `flush` bumps the epoch (so it waits
//! for epochs up to the old value `e`), raises `flush_target` to `e`, and
//! fences. Workers count, per worker, the follow-ups of events with epoch
//! `<= flush_target` (`descendants`), reading `flush_target` (`SeqCst`)
//! after pushing them (a `SeqCst` claim, or the overflow's fence): the
//! Dekker pattern of `park`'s sleeper, `flush` with its fence and
//! snapshot in the sleeping worker's role (W1 to W3).
//! `flush` then repeats: read the descendants sum `c0`; snapshot every
//! shard's accepted positions; wait until each shard has completed them;
//! read the sum again as `c1`; stop when `c0 == c1`. A follow-up pushed
//! after a snapshot was counted after its push, before its parent
//! completed, so it shows up as `c1 > c0` and forces another round; one
//! that the worker did not count (it read an older `flush_target`) was
//! pushed before `flush`'s fence, so the snapshot holds it.
//!
//! # Shutdown
//!
//! Close every ring (refusing new publishes atomically with accepted ones,
//! see `ring`), wake blocked publishers (they get `Closed`), flush, then
//! set `stop`, unpark every worker and join them. Follow-ups published by
//! handlers during the drain are still accepted.

use std::cell::Cell;
use std::collections::HashMap;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::async_api::timer::Timer;
use crate::caught::catch;
use crate::context::Context;
use crate::delivery::{RunFailure, Tracker};
use crate::envelope::{Envelope, EventRef, RingEntry, Seed};
use crate::error::PublishError;
use crate::event::{mix64, Event, EventId, Meta, Routing, TenantId};
use crate::metrics::{is_timed, Counter, Counts, MetricsSnapshot, RunOutcome, Totals};
use crate::park::{Sleeper, WaitQueue, WaiterId};
use crate::payload::Payload;
use crate::place::{next_bus_tag, Place};
use crate::registry::{AsyncRun, Registry, Subscriber, TableCache};
use crate::reliability::backlog::BacklogGate;
use crate::reliability::completion::{Completion, Waiter};
use crate::reliability::dead_letter::{Chosen, DeadLetter, DeadLetterStore};
use crate::reliability::dedup::Dedup;
use crate::reliability::quota::TenantQuota;
use crate::reliability::schedule::{Continuation, RetrySchedule, RetryTask, Task};
use crate::ring::PushError;
use crate::shard::Shard;
use crate::sync::{
    fence, lock, spin_loop, thread, thread_local, Arc, AtomicBool, AtomicU64, AtomicUsize, Backoff,
    CachePadded, Mutex, Ordering,
};

/// Idle rounds a worker spins, then yields, before it parks.
///
/// Few spins: a yield returns at once when no other thread wants the
/// core, and hands the core over when one does. The scheduler can leave
/// a worker and the thread that publishes to it on one core for a whole
/// run (both run every few microseconds, so neither is ever cold enough
/// to move), and there each spin holds the core the next event needs.
/// With 64 spins, round trips in such runs had a p99 of 7 µs (0.7 µs in
/// the others); with 2, and a publisher that stops spinning too, 1.75 to
/// 3.6 µs, most under 2.6 µs. The streaming profiles did not change.
/// 64 yields instead of 8 measured the same there, and cost a worker
/// about 10 µs more CPU after each burst of sporadic events (a
/// reviewer's scratch program).
#[cfg(not(diana_bus_loom))]
const IDLE_SPINS: u32 = 2;
#[cfg(not(diana_bus_loom))]
const IDLE_YIELDS: u32 = 8;
#[cfg(diana_bus_loom)]
const IDLE_SPINS: u32 = 0;
#[cfg(diana_bus_loom)]
const IDLE_YIELDS: u32 = 0;

/// How long a parked worker sleeps at most before it looks for other
/// workers' backlogs to help with: owners are woken for their own shards,
/// helpers are not, so this bounds how long a long-running handler can
/// leave its worker's other shards waiting. Costs an idle worker 100
/// wake-ups a second. A due retry shortens the sleep.
const HELP_INTERVAL: Duration = Duration::from_millis(10);

/// A worker that has found every shard empty at this many wake-ups in a
/// row (a second of [`HELP_INTERVAL`]s) is *drowsy*: it sleeps up to
/// [`DROWSY_HELP_INTERVAL`] instead, until a wake-up finds an event in any
/// shard. An idle bus then costs each worker 10 wake-ups a second, and a
/// handler that starts a long run on a bus that was idle leaves its
/// worker's other shards waiting that much longer for help.
const DROWSY_AFTER: u32 = 100;
const DROWSY_HELP_INTERVAL: Duration = Duration::from_millis(100);

/// Batches a worker runs from one shard before it moves to the next.
const BATCHES_PER_CLAIM: usize = 4;

/// Lingering (see [`Executor::linger`]): a batch smaller than this is
/// small; the worker waits for this many events, polling whether the last
/// of them is published up to `LINGER_POLLS` times, `LINGER_PAUSES` spin
/// hints apart (a spin hint is about 33 ns on the development machine:
/// 4 µs a poll, 8 µs at most). Few, widely spaced polls: each one reads a
/// slot the publisher is about to write, and costs that push a miss.
const LINGER_BATCH: usize = 32;
#[cfg(not(diana_bus_loom))]
const LINGER_POLLS: u32 = 2;
#[cfg(diana_bus_loom)]
const LINGER_POLLS: u32 = 0;
const LINGER_PAUSES: u32 = 128;

thread_local! {
    // Not a `const` initialiser: loom's `thread_local!` does not take one.
    #[allow(clippy::missing_const_for_thread_local)]
    /// The executor (by address) and index of the worker on this thread.
    static CURRENT_WORKER: Cell<(usize, usize)> = Cell::new((0, 0));
}

/// Where an accepted publish went.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Accepted {
    pub(crate) id: EventId,
    pub(crate) place: Place,
}

/// What a publish does when its shard's ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnFull {
    /// Gives the event back, counted as refused (`try_publish`, `Reject`).
    Refuse,
    /// Waits for room (`Block`).
    Wait,
    /// Gives the event back uncounted: an async publisher waits for room
    /// and tries again.
    Retry,
}

/// Whether a publish is accepted once the bus is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WhenClosed {
    /// Refused: every publish from outside the handlers.
    Refuse,
    /// Accepted: a follow-up published by a handler while it runs, which
    /// the shutdown's drain waits for (it waits for the handler).
    Accept,
}

/// The bus's sizing, validated by the builder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) shards: usize,
    pub(crate) capacity: usize,
    pub(crate) batch: usize,
    pub(crate) dead_letter_capacity: usize,
    pub(crate) dedup_size: usize,
    pub(crate) dedup_ttl: Duration,
    pub(crate) tenant_quota: Option<u64>,
}

#[derive(Debug, Default)]
struct Worker {
    /// Read by every publish to this worker's shards (P3): on a line of
    /// its own, away from the counters the worker writes per batch.
    sleeper: CachePadded<Sleeper>,
    batch_seq: AtomicU64,
    descendants: AtomicU64,
    /// The worker's counts, as snapshots read them.
    totals: Arc<Totals>,
}

/// Shards, workers and registry: everything the worker threads share.
#[derive(Debug)]
pub struct Executor {
    shards: Box<[Shard]>,
    workers: Box<[CachePadded<Worker>]>,
    pub(crate) registry: Registry,
    pub(crate) retries: RetrySchedule,
    /// The deadlines of async waits.
    pub(crate) timer: Timer,
    /// Events past their batch but not fully handled, and their waiters.
    pub(crate) completion: Completion,
    /// This bus's mark in the ids it generates (see `place`).
    tag: u64,
    /// The counts of async handlers' runs, which end off the workers.
    async_counts: Mutex<Counter>,
    /// Follow-ups of async handlers counted for `flush` (see "Flush").
    async_descendants: AtomicU64,
    pub(crate) dead_letters: DeadLetterStore,
    /// Held while a replay takes its letters and schedules them (see
    /// [`Executor::replay`]).
    replaying: Mutex<()>,
    pub(crate) dedup: Dedup,
    pub(crate) quota: Option<TenantQuota>,
    /// Raised while an async subscription's backlog is over its bound.
    pub(crate) gate: BacklogGate,
    epoch: AtomicU64,
    flush_target: AtomicU64,
    settled: WaitQueue,
    stop: AtomicBool,
    config: Config,
}

/// A worker's reusable buffers.
struct Local {
    /// The current batch's events that must outlive their slots (see
    /// [`Executor::run_event`]), by index, in order.
    kept: Vec<(usize, Envelope)>,
    /// The current batch's events' tenants, in order, when there is a
    /// quota to give their budget back to.
    tenants: Vec<TenantId>,
    counts: Counter,
    /// The failed runs of the current batch, settled when it ends.
    failures: Vec<BatchFailure>,
    /// The batch's events that now hold their key: (index in the batch,
    /// the handlers of later stages waiting for their retries).
    holding: Vec<(usize, Vec<Arc<Subscriber>>)>,
    /// The batch's events that wait for their dependency, by index.
    waiting: Vec<usize>,
    /// The batch's events with explicit ids (see `completion`), by index.
    explicit: Vec<usize>,
    /// The batch's events queued behind a held key, by index, and the keys
    /// this batch deferred (later events of those keys defer too, even if
    /// the key is released meanwhile: they must stay behind).
    deferred: Vec<usize>,
    deferred_keys: Vec<(TenantId, u64)>,
}

/// How a handler run failed, or (`started`) that an async handler's run
/// is to start: it, too, ends later, and holds what waits for it.
struct Failure {
    message: String,
    retryable: bool,
    panicked: bool,
    started: bool,
    /// Whether its retries hold the event's key (see `run_stages`): set
    /// on a first run's failure.
    holds: bool,
}

/// A failed run within a batch: the envelope's index in it, and who failed.
struct BatchFailure {
    index: usize,
    subscriber: Arc<Subscriber>,
    failure: Failure,
}

impl Executor {
    pub(crate) fn new(config: Config) -> Self {
        let tag = next_bus_tag();
        Executor {
            shards: (0..config.shards)
                .map(|index| Shard::new(index, tag, index % config.workers, config.capacity))
                .collect(),
            workers: (0..config.workers)
                .map(|_| CachePadded(Worker::default()))
                .collect(),
            registry: Registry::new(tag),
            retries: RetrySchedule::new(),
            timer: Timer::default(),
            completion: Completion::default(),
            tag,
            async_counts: Mutex::new(Counter::default()),
            async_descendants: AtomicU64::new(0),
            dead_letters: DeadLetterStore::new(config.dead_letter_capacity),
            replaying: Mutex::new(()),
            dedup: Dedup::new(config.dedup_size, config.dedup_ttl),
            quota: config.tenant_quota.map(TenantQuota::new),
            gate: BacklogGate::default(),
            epoch: AtomicU64::new(1),
            flush_target: AtomicU64::new(0),
            settled: WaitQueue::default(),
            stop: AtomicBool::new(false),
            config,
        }
    }

    pub(crate) fn config(&self) -> Config {
        self.config
    }

    /// The flush epoch a root publish is stamped with.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    fn address(&self) -> usize {
        self as *const Executor as usize
    }

    /// The index of the worker running on this thread, if it is one of ours.
    pub(crate) fn current_worker(&self) -> Option<usize> {
        let (executor, index) = CURRENT_WORKER.with(Cell::get);
        (executor == self.address()).then_some(index)
    }

    /// Whether this thread is running one of this bus's handlers: it is
    /// one of its workers, or in an async handler's code on the runtime.
    /// There, nothing may wait for the handler's own event to settle.
    pub(crate) fn in_handler(&self) -> bool {
        #[cfg(not(diana_bus_loom))]
        let in_async = crate::async_api::runs_handler_of(self);
        #[cfg(diana_bus_loom)]
        let in_async = false;
        self.current_worker().is_some() || in_async
    }

    #[inline]
    fn shard_of(&self, tenant: TenantId, key: u64) -> usize {
        // splitmix64's finaliser over (tenant, key): spreads neighbouring
        // user ids and tenants over all shards.
        let h = mix64(tenant.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key);
        h as usize & (self.shards.len() - 1)
    }

    /// The shard of an event routed by `routing`.
    #[inline]
    fn shard_for(&self, routing: &Routing) -> &Shard {
        &self.shards[self.shard_of(routing.tenant, routing.key)]
    }

    #[inline]
    fn owner(&self, shard: usize) -> usize {
        self.shards[shard].owner
    }

    /// The routing of a publish ([`Routing::of`]), with the dependency
    /// `meta` names resolved to a place while it is in flight.
    #[inline]
    pub(crate) fn route(&self, tenant: TenantId, key: u64, meta: Meta, epoch: u64) -> Routing {
        let mut routing = Routing::of(tenant, key, meta, epoch);
        if let Some(after) = meta.get_after() {
            routing.after = self.in_flight(routing.tenant, after);
        }
        routing
    }

    /// Where the event `id` is, if it is in flight: accepted, and not yet
    /// fully handled. An explicit id is `tenant`'s.
    #[cold]
    fn in_flight(&self, tenant: TenantId, id: EventId) -> Option<Place> {
        let generated = Place::of_id(id, self.tag).filter(|place| {
            self.shards
                .get(place.shard as usize)
                .is_some_and(|shard| shard.has_accepted(place.seq))
        });
        generated.filter(|&place| !self.is_done(place)).or_else(|| {
            self.completion
                .place_of_explicit(tenant, id)
                .filter(|&place| !self.is_done(place))
        })
    }

    /// Whether the event at `place` is fully handled (see `completion`).
    fn is_done(&self, place: Place) -> bool {
        self.shards[place.shard as usize].has_completed(place.seq)
            && !self.completion.is_open(place)
    }

    /// Records where `tenant`'s event with explicit id `id` was accepted:
    /// called while its slot or overflow entry is being written, so before
    /// any worker can run it and forget the record (see `completion`).
    fn record_explicit(&self, tenant: TenantId, id: EventId, place: Place) {
        self.completion.accepted_explicit(tenant, id, place);
    }

    /// Where an event accepted at `place` went, and its id: `explicit`, or
    /// the one generated from the place.
    #[inline]
    pub(crate) fn accepted(&self, explicit: Option<EventId>, place: Place) -> Accepted {
        Accepted {
            id: explicit.unwrap_or_else(|| place.id(self.tag)),
            place,
        }
    }

    /// Pushes a root publish, moving its entry from `seed` into the claimed
    /// slot, and returns its place (the caller knows the rest: see
    /// [`Executor::accepted`]). On a full ring, does what `on_full` says
    /// (a worker thread never waits: there the envelope goes to the
    /// shard's overflow). A refused entry stays in `seed`, for the caller
    /// to give the event back.
    ///
    /// Not generic, so every event type shares one copy of the push: with
    /// many types, a copy per type would crowd the instruction cache (and
    /// the compiler).
    pub(crate) fn push(
        &self,
        seed: Seed<'_>,
        on_full: OnFull,
        when_closed: WhenClosed,
    ) -> Result<Place, PublishError<()>> {
        let entry = seed.0.as_ref().expect("a seed brings its entry");
        let index = self.shard_of(entry.tenant(), entry.key());
        let shard = &self.shards[index];
        let refuse_when_closed = when_closed == WhenClosed::Refuse;
        // Refusals go to a cold path.
        match shard.push(
            seed,
            |tenant, id, place| self.record_explicit(tenant, id, place),
            refuse_when_closed,
        ) {
            Ok(place) => {
                self.after_push(index);
                Ok(place)
            }
            Err(refused) => self.push_refused(index, refused, on_full),
        }
    }

    /// A push the ring turned down: waits for room if `on_full` says so,
    /// and counts what stays refused.
    #[cold]
    fn push_refused(
        &self,
        index: usize,
        refused: PushError<Seed<'_>>,
        on_full: OnFull,
    ) -> Result<Place, PublishError<()>> {
        let shard = &self.shards[index];
        let result = match refused {
            PushError::Closed(_) => Err(PublishError::Closed(())),
            PushError::Full(seed) => match on_full {
                OnFull::Wait => self.push_blocking(shard, seed),
                OnFull::Refuse | OnFull::Retry => Err(PublishError::Full(())),
            },
        };
        match result {
            Ok(_) => self.after_push(index),
            Err(PublishError::Full(_)) if on_full == OnFull::Retry => {}
            Err(_) => {
                shard.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// Leaves `waker` (of the future `id`) with the waiters for room in
    /// the ring that `routing` goes to; the caller then tries again (the
    /// wait queues' protocol in `park`).
    pub(crate) fn wait_for_ring(&self, routing: &Routing, id: WaiterId, waker: &Waker) {
        self.shard_for(routing).space.register(id, waker);
    }

    /// Leaves `waker` with the waiters for units of the tenant quota; the
    /// caller then tries again.
    pub(crate) fn wait_for_quota(&self, id: WaiterId, waker: &Waker) {
        if let Some(quota) = &self.quota {
            quota.space.register(id, waker);
        }
    }

    /// Leaves `waker` with the waiters for the backlog gate to be
    /// lowered; the caller then tries again.
    pub(crate) fn wait_for_gate(&self, id: WaiterId, waker: &Waker) {
        self.gate.register(id, waker);
    }

    /// Takes back what the future `id` left with the three queues above
    /// (the ring's, for `routing`): it no longer waits.
    pub(crate) fn stop_waiting(&self, routing: &Routing, id: WaiterId) {
        self.shard_for(routing).space.forget(id);
        if let Some(quota) = &self.quota {
            quota.space.forget(id);
        }
        self.gate.forget(id);
    }

    /// Counts a publish refused before it reached a ring.
    pub(crate) fn count_rejected(&self, routing: &Routing) {
        self.shard_for(routing)
            .rejected
            .fetch_add(1, Ordering::Relaxed);
    }

    #[cold]
    fn push_blocking(&self, shard: &Shard, seed: Seed<'_>) -> Result<Place, PublishError<()>> {
        let record_explicit = |tenant, id, place| self.record_explicit(tenant, id, place);
        if self.current_worker().is_some() {
            return Ok(shard.push_from_worker(seed, record_explicit));
        }
        let mut pending = Some(seed);
        let mut attempt = || match shard.push(pending.take()?, record_explicit, true) {
            Ok(place) => Some(Ok(place)),
            Err(PushError::Closed(_)) => Some(Err(PublishError::Closed(()))),
            Err(PushError::Full(seed)) => {
                pending = Some(seed);
                None
            }
        };
        // Spin, then yield (the worker that frees the slot may need this
        // core), and only then sleep until a batch completes.
        let mut backoff = Backoff::default();
        while !backoff.is_completed() {
            if let Some(done) = attempt() {
                return done;
            }
            backoff.snooze();
        }
        shard.space.wait_for(attempt)
    }

    /// After a push into `shard` (the ring's `SeqCst` claim, or the
    /// overflow's fence), wakes its owner if it sleeps (P3 of the sleeper
    /// protocol in `park`).
    #[inline]
    fn after_push(&self, shard: usize) {
        self.workers[self.owner(shard)].sleeper.wake_if_sleeping();
    }

    /// `ctx.publish`: never refused, never waits.
    pub(crate) fn publish_from_worker<E: Event>(
        &self,
        worker: usize,
        routing: Routing,
        event: E,
    ) -> EventId {
        let epoch = routing.epoch;
        if let Some(quota) = &self.quota {
            quota.take_anyway(routing.tenant);
        }
        let index = self.shard_of(routing.tenant, routing.key);
        let explicit = routing.explicit.then_some(routing.id);
        let (entry, mut lineage) = RingEntry::new(&routing, Payload::new(event), None);
        let seed = (&mut Some(entry), &mut lineage);
        let place = self.shards[index].push_from_worker(seed, |tenant, id, place| {
            self.record_explicit(tenant, id, place)
        });
        self.after_push(index);
        // SeqCst, after the push's SeqCst claim: see the flush protocol.
        if epoch <= self.flush_target.load(Ordering::SeqCst) {
            // An add, not a load and a store: a handler may share its
            // `Context` (it is `Sync`) with threads of its own that publish
            // at once, and a lost count could let `flush` return early.
            // Only while a flush is under way.
            self.workers[worker]
                .descendants
                .fetch_add(1, Ordering::Release);
        }
        self.accepted(explicit, place).id
    }

    /// A follow-up published off the workers (by an async handler) after
    /// its push: counted for `flush` like the workers' own.
    pub(crate) fn count_follow_up(&self, epoch: u64) {
        fence(Ordering::SeqCst);
        if epoch <= self.flush_target.load(Ordering::Relaxed) {
            self.async_descendants.fetch_add(1, Ordering::Release);
        }
    }

    fn descendants(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.descendants.load(Ordering::Acquire))
            .sum::<u64>()
            + self.async_descendants.load(Ordering::Acquire)
    }

    /// Whether this thread must not wait for this bus's events to settle:
    /// it runs one of its handlers (the event being handled cannot be
    /// settled from inside), or it is a timer thread, running a waker (the
    /// wait may be for an async retry whose pause that thread keeps).
    pub(crate) fn must_not_wait(&self) -> bool {
        self.in_handler() || crate::async_api::timer::on_timer_thread()
    }

    /// Waits until every event accepted before the call, and every
    /// follow-up of those, is fully handled. Where the thread must not
    /// wait (see [`Executor::must_not_wait`]) it returns at once.
    pub(crate) fn flush(&self) {
        if self.must_not_wait() {
            tracing::warn!(
                "flush called from a handler (or a waker on a timer thread) returns at once: \
                 it cannot wait for the bus here"
            );
            return;
        }
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst);
        self.flush_target.fetch_max(epoch, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        loop {
            let before = self.descendants();
            let targets: Vec<_> = self.shards.iter().map(Shard::progress_target).collect();
            self.settled.wait_for(|| {
                let handled = self
                    .shards
                    .iter()
                    .zip(&targets)
                    .all(|(shard, &target)| shard.reached(target));
                (handled && !self.completion.pending_up_to(epoch)).then_some(())
            });
            if self.descendants() == before {
                return;
            }
        }
    }

    /// Waits until no worker can be running a handler that `unsubscribe`
    /// just flagged (see "Batch quiescence"). No wait on a worker thread.
    pub(crate) fn quiesce(&self) {
        if self.current_worker().is_some() {
            return;
        }
        fence(Ordering::SeqCst);
        for worker in self.workers.iter() {
            let seq = worker.batch_seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                let mut backoff = Backoff::default();
                while worker.batch_seq.load(Ordering::Acquire) == seq {
                    backoff.snooze();
                }
            }
        }
    }

    /// Refuses new publishes and wakes publishers waiting for a full ring,
    /// their tenant's quota or the backlog gate. Returns whether this call
    /// closed the bus.
    pub(crate) fn close(&self) -> bool {
        let mut first = false;
        for shard in self.shards.iter() {
            first |= shard.ring.close();
        }
        // A replay under way finishes scheduling first (see `replay`).
        drop(lock(&self.replaying));
        fence(Ordering::SeqCst);
        for shard in self.shards.iter() {
            shard.space.notify();
        }
        if let Some(quota) = &self.quota {
            quota.space.notify();
        }
        self.gate.notify();
        first
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shards[0].ring.is_closed()
    }

    /// Tells the workers to exit once idle, and wakes them.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        for worker in self.workers.iter() {
            worker.sleeper.wake();
        }
    }

    /// Sums the per-worker counters and the shards' positions.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let (mut snapshot, mut rows) = (MetricsSnapshot::default(), HashMap::new());
        for shard in self.shards.iter() {
            snapshot.published += shard.accepted();
            snapshot.rejected += shard.rejected.load(Ordering::Relaxed);
        }
        for worker in self.workers.iter() {
            worker.totals.add_to(&mut snapshot, &mut rows);
        }
        lock(&self.async_counts)
            .totals()
            .add_to(&mut snapshot, &mut rows);
        snapshot.dead_lettered = self.dead_letters.recorded();
        snapshot.dead_letters_dropped = self.dead_letters.dropped();
        snapshot.deduplicated = self.dedup.duplicates();
        snapshot
    }

    // Under loom the idle constants are 0 (models park at once), which makes
    // the comparisons below trivially true there.
    #[cfg_attr(diana_bus_loom, allow(clippy::absurd_extreme_comparisons))]
    fn run_worker(&self, index: usize) {
        CURRENT_WORKER.with(|current| current.set((self.address(), index)));
        let me = &self.workers[index];
        me.sleeper.register_current();
        let span = tracing::info_span!("diana_bus_worker", worker = index);
        let _entered = span.enter();
        tracing::debug!("worker started");
        let mut local = Local {
            kept: Vec::new(),
            tenants: Vec::new(),
            counts: Counter::new(Arc::clone(&me.totals)),
            failures: Vec::new(),
            holding: Vec::new(),
            waiting: Vec::new(),
            explicit: Vec::new(),
            deferred: Vec::new(),
            deferred_keys: Vec::new(),
        };
        let mut idle = 0u32;
        let mut empty_wakes = 0u32;
        loop {
            if self.work_once(index, &mut local) {
                idle = 0;
                empty_wakes = 0;
                continue;
            }
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            idle += 1;
            if idle <= IDLE_SPINS {
                spin_loop();
                continue;
            }
            if idle <= IDLE_SPINS + IDLE_YIELDS {
                thread::yield_now();
                continue;
            }
            me.sleeper.prepare();
            if self.stop.load(Ordering::Relaxed) || self.has_work_for(index) {
                me.sleeper.cancel();
                // The work may be a push still being written: let its
                // producer run.
                thread::yield_now();
                continue;
            }
            tracing::trace!("worker parked");
            let help_in = if empty_wakes < DROWSY_AFTER {
                HELP_INTERVAL
            } else {
                DROWSY_HELP_INTERVAL
            };
            let until_retry = self.retries.until_next_due().unwrap_or(help_in);
            me.sleeper.park(until_retry.min(help_in));
            empty_wakes = if self.shards.iter().any(Shard::has_pending) {
                0
            } else {
                empty_wakes.saturating_add(1)
            };
        }
        tracing::debug!("worker stopped");
    }

    /// W3 of the sleeper protocol: work that this worker must do itself,
    /// or a task that is due.
    fn has_work_for(&self, index: usize) -> bool {
        self.retries.has_due()
            || self
                .owned(index)
                .any(|s| self.shards[s].has_pending() && !self.shards[s].is_claimed())
    }

    fn owned(&self, index: usize) -> impl Iterator<Item = usize> {
        (index..self.shards.len()).step_by(self.workers.len())
    }

    /// Drains the owned shards, or else helps with another's backlog.
    fn work_once(&self, index: usize, local: &mut Local) -> bool {
        let mut worked = false;
        while let Some(task) = self.retries.pop_due() {
            match task {
                Task::Retry(retry) => self.run_retry(index, retry, local),
                Task::Release(envelope) => self.run_release(index, envelope, local),
                Task::Continue(envelope, then) => self.run_continue(index, envelope, then, local),
            }
            worked = true;
        }
        for shard in self.owned(index) {
            worked |= self.drain(index, shard, local);
        }
        if !worked {
            for shard in 0..self.shards.len() {
                if self.owner(shard) != index
                    && self.shards[shard].ring.is_published(self.config.batch - 1)
                {
                    worked |= self.drain(index, shard, local);
                }
            }
        }
        worked
    }

    /// Claims `index`'s shard and runs up to [`BATCHES_PER_CLAIM`] batches.
    fn drain(&self, worker: usize, index: usize, local: &mut Local) -> bool {
        let shard = &self.shards[index];
        if !shard.has_published() || !shard.try_claim() {
            return false;
        }
        let mut worked = false;
        let mut small_batches = 0;
        for _ in 0..BATCHES_PER_CLAIM {
            let (count, overflow_handled) = match shard.pop_due_overflow() {
                Some(envelope) => {
                    self.run_batch(worker, shard, local, |batch, local| {
                        if let Some(index) =
                            self.run_event(worker, shard, batch, local, envelope.event())
                        {
                            local.kept.push((index, envelope));
                        }
                    });
                    (1, 1)
                }
                None => {
                    let budget = shard.ring_budget(self.config.batch);
                    let count = self.run_batch(worker, shard, local, |batch, local| {
                        // SAFETY: this worker holds the shard's claim
                        // (`try_claim` above, released below).
                        unsafe {
                            shard.pop_in_place(budget, |in_slot| {
                                if let Some(index) =
                                    self.run_event(worker, shard, batch, local, in_slot.event())
                                {
                                    local.kept.push((index, in_slot.into_envelope()));
                                }
                            })
                        }
                    });
                    (count, 0)
                }
            };
            if count == 0 {
                break;
            }
            worked = true;
            if count < LINGER_BATCH {
                small_batches += 1;
            } else {
                small_batches = 0;
            }
            shard.record_completed(overflow_handled);
            // One fence for both wait queues (their protocol in `park`),
            // and for the shard's waiters (see `shard`).
            fence(Ordering::SeqCst);
            if shard.has_waiters() {
                self.hand_on(shard.take_due());
            }
            self.settled.notify();
            // Publishers blocked on the full ring come back once half of it
            // is free, not after every batch: a wake-up costs both sides a
            // system call, and the half still queued keeps this worker busy
            // while they wake. The ring drains until empty, so the wake-up
            // comes (by the batch that empties it, at the latest). Waiters
            // first: the ring's length reads `tail`, which a streaming
            // publisher writes.
            if shard.space.has_waiters() && shard.ring.len() <= shard.ring.capacity() / 2 {
                shard.space.notify();
            }
            if small_batches >= 2 {
                Self::linger(shard);
            }
        }
        shard.release();
        let owner = self.owner(index);
        if owner != worker {
            // The owner may have parked seeing the shard claimed.
            fence(Ordering::SeqCst);
            if shard.has_pending() {
                self.workers[owner].sleeper.wake_if_sleeping();
            }
        }
        worked
    }

    /// Waits a moment for a batch to build up, when events stream in while
    /// this worker keeps up with them: two small batches in a row, and more
    /// events already published. Taking each event as it lands makes the
    /// worker and the publisher fight over the slot being written, which
    /// costs the publisher a miss per event; waiting a few microseconds
    /// lets it fill a batch undisturbed. Not after a batch that emptied the
    /// ring: a request and its reply (one event each, then nothing) never
    /// wait.
    // Under loom `LINGER_POLLS` is 0 (models never wait on timing).
    #[cfg_attr(diana_bus_loom, allow(clippy::reversed_empty_ranges))]
    fn linger(shard: &Shard) {
        if !shard.ring.is_published(0) {
            return;
        }
        for _ in 0..LINGER_POLLS {
            if shard.ring.is_published(LINGER_BATCH - 1) {
                return;
            }
            (0..LINGER_PAUSES).for_each(|_| spin_loop());
        }
    }

    /// Runs a batch: `feed` hands each of its events to
    /// [`Executor::run_event`] (the events stay where they are, in their
    /// ring slots; `feed` moves out only those that must be kept), then
    /// the batch settles what it kept. Returns what `feed` returns. A
    /// batch begins at its first event: `feed` finding none costs nothing.
    fn run_batch<R>(
        &self,
        worker: usize,
        shard: &Shard,
        local: &mut Local,
        feed: impl FnOnce(&mut Batch<'_>, &mut Local) -> R,
    ) -> R {
        // Loads tables only when asked, so only once the batch has begun.
        let tables = TableCache::new(&self.registry);
        let mut batch = Batch {
            seq: None,
            tables: &tables,
            run: None,
            trace: tracing::enabled!(tracing::Level::TRACE),
            next: 0,
        };
        let fed = feed(&mut batch, local);
        let Some(seq) = batch.seq else {
            return fed;
        };
        if let Some(done) = batch.run {
            local.counts.add_to_row(done.row, &done.counts);
        }
        if let Some(quota) = &self.quota {
            give_back_budget(quota, &local.tenants);
            local.tenants.clear();
        }
        if !local.kept.is_empty() {
            self.settle_batch(worker, shard, local);
        }
        self.end_batch(worker, seq);
        fed
    }

    /// Runs the handlers of one event of `batch`, unless it must wait (for
    /// its key or its dependency). Returns its index in the batch if it
    /// must be kept until the batch settles: it failed, holds its key,
    /// waits, or has an explicit id.
    #[inline(always)]
    fn run_event(
        &self,
        worker: usize,
        shard: &Shard,
        batch: &mut Batch<'_>,
        local: &mut Local,
        event: EventRef<'_>,
    ) -> Option<usize> {
        if batch.seq.is_none() {
            batch.seq = Some(self.begin_batch(worker));
        }
        let index = batch.next;
        batch.next += 1;
        let routing = event.routing;
        if self.quota.is_some() {
            local.tenants.push(routing.tenant);
        }
        let type_id = event.payload.type_id();
        // Consecutive events of one type share the handler lookup and the
        // counters.
        let current = match &mut batch.run {
            Some(current) if current.type_id == type_id => current,
            slot => {
                if let Some(done) = slot.take() {
                    local.counts.add_to_row(done.row, &done.counts);
                }
                let entry = batch.tables.entry(type_id);
                let name = || event.payload.name();
                slot.insert(TypeRun {
                    type_id,
                    row: match entry {
                        Some(entry) => local.counts.numbered_row(entry.number, type_id, name),
                        None => local.counts.row(type_id, name),
                    },
                    handlers: entry.map_or(&[], |entry| &entry.handlers),
                    counts: Counts::default(),
                })
            }
        };
        let mut keep = routing.explicit;
        if keep {
            local.explicit.push(index);
        }
        let key = (routing.tenant, routing.key);
        if local.deferred_keys.contains(&key) || shard.is_held(key.0, key.1) {
            current.counts.dispatched();
            local.deferred.push(index);
            if !local.deferred_keys.contains(&key) {
                local.deferred_keys.push(key);
            }
            return Some(index);
        }
        if routing.after.is_some_and(|after| !self.is_done(after)) {
            current.counts.dispatched();
            shard.hold(key.0, key.1);
            local.waiting.push(index);
            return Some(index);
        }
        let failures = local.failures.len();
        // One branch for both: tracing on, or an event whose run is timed.
        let held = if batch.trace || is_timed(routing.place.seq) {
            self.dispatch_observed(worker, index, event, current, local, batch.trace)
        } else {
            self.dispatch(worker, index, event, current, &mut local.failures)
        };
        if let Some(stop) = held {
            shard.hold(key.0, key.1);
            local
                .holding
                .push((index, current.handlers[stop..].to_vec()));
            keep = true;
        }
        // `settle_batch` finds an event's failures by its index.
        debug_assert!(local.failures[failures..].iter().all(|f| f.index == index));
        keep |= local.failures.len() > failures;
        keep.then_some(index)
    }

    /// Marks the worker as running handlers (batch quiescence, see the
    /// module docs); returns the sequence number to end with.
    fn begin_batch(&self, worker: usize) -> u64 {
        let me = &self.workers[worker];
        let seq = me.batch_seq.load(Ordering::Relaxed);
        me.batch_seq.store(seq + 1, Ordering::Relaxed);
        // Batch quiescence: pairs with the fence in `quiesce`.
        fence(Ordering::SeqCst);
        seq
    }

    /// Marks the worker idle again (its counts are in already).
    fn end_batch(&self, worker: usize, seq: u64) {
        self.workers[worker]
            .batch_seq
            .store(seq + 2, Ordering::Release);
    }

    /// After a batch with failures, holds, deferrals, waits or explicit
    /// ids: shares each event that is not fully handled, retries or
    /// dead-letters its failures, queues the deferred ones behind their
    /// keys, starts the waits; drops the rest.
    #[cold]
    fn settle_batch(&self, worker: usize, shard: &Shard, local: &mut Local) {
        let mut failures = local.failures.drain(..).peekable();
        let mut holding = local.holding.drain(..).peekable();
        let mut deferred = local.deferred.drain(..).peekable();
        let mut waiting = local.waiting.drain(..).peekable();
        let mut explicit = local.explicit.drain(..).peekable();
        local.deferred_keys.clear();
        for (index, envelope) in local.kept.drain(..) {
            let routing = envelope.routing;
            if deferred.next_if_eq(&index).is_some() {
                self.completion.hold(&routing);
                if let Err(envelope) = shard.defer(Arc::new(envelope)) {
                    // Its key was released meanwhile: it is next in line.
                    self.release(worker, shard, envelope, &mut local.counts);
                }
            } else if waiting.next_if_eq(&index).is_some() {
                self.wait_for_dependency(Arc::new(envelope));
            } else {
                let mine: Vec<_> = std::iter::from_fn(|| failures.next_if(|f| f.index == index))
                    .map(|f| (f.subscriber, f.failure))
                    .collect();
                let rest = holding.next_if(|h| h.0 == index).map(|h| h.1);
                if !mine.is_empty() || rest.is_some() {
                    self.settle_event(&Arc::new(envelope), mine, rest);
                }
            }
            if explicit.next_if_eq(&index).is_some() {
                // After any hold above: an open event keeps its record.
                self.completion.ran_explicit(&routing);
            }
        }
    }

    /// Retries or dead-letters each failed first run of one event. If the
    /// event holds its key (`rest` is the handlers still to run), the
    /// retries that hold carry a continuation; returns whether there is one.
    fn settle_event(
        &self,
        envelope: &Arc<Envelope>,
        failures: Vec<(Arc<Subscriber>, Failure)>,
        rest: Option<Vec<Arc<Subscriber>>>,
    ) -> bool {
        let then = rest.map(|rest| {
            let holding = failures.iter().filter(|(_, f)| f.holds).count();
            Arc::new(Continuation {
                outstanding: AtomicUsize::new(holding),
                rest,
            })
        });
        let holds = then.is_some();
        for (subscriber, failure) in failures {
            // Only the runs that hold carry the continuation: another
            // handler's retries hold up nothing.
            let then = if failure.holds { then.clone() } else { None };
            // A retry that will happen resolves nothing now.
            let resolved = self.after_failure(Arc::clone(envelope), subscriber, 1, failure, then);
            debug_assert!(resolved.is_none());
        }
        holds
    }

    /// The holding event `envelope` may go on: runs its held-back handlers
    /// (`rest`); once it holds nothing more, its key's queue moves.
    fn go_on(
        &self,
        worker: usize,
        envelope: Arc<Envelope>,
        rest: &[Arc<Subscriber>],
        counts: &mut Counter,
    ) {
        let shard = self.shard_for(&envelope.routing);
        if !self.run_held(worker, shard, &envelope, rest, counts) {
            self.release_queue(worker, shard, &envelope.routing, counts);
        }
    }

    /// A deferred event whose key was released before it could be queued:
    /// it is next in line, so it runs now, in full, and then its key's
    /// queue moves.
    fn release(&self, worker: usize, shard: &Shard, envelope: Arc<Envelope>, counts: &mut Counter) {
        if !self.run_queued(worker, shard, &envelope, counts) {
            self.release_queue(worker, shard, &envelope.routing, counts);
        }
    }

    /// Runs the events queued behind `routing`'s key, each in full and in
    /// order, until one holds the key again or none is left (which
    /// releases the key).
    fn release_queue(&self, worker: usize, shard: &Shard, routing: &Routing, counts: &mut Counter) {
        while let Some(next) = shard.next_held(routing.tenant, routing.key) {
            if self.run_queued(worker, shard, &next, counts) {
                return;
            }
        }
    }

    /// Runs an event that waited behind a held key or for its dependency
    /// (and was open until now), unless it must wait for its dependency
    /// first; true if it holds the key in turn.
    fn run_queued(
        &self,
        worker: usize,
        shard: &Shard,
        envelope: &Arc<Envelope>,
        counts: &mut Counter,
    ) -> bool {
        let routing = &envelope.routing;
        let holds = if routing.after.is_some_and(|after| !self.is_done(after)) {
            // Its key may have been released meanwhile (a deferred event
            // whose key was let go before its batch settled): it holds the
            // key while it waits, as in the batch.
            shard.hold(routing.tenant, routing.key);
            self.wait_for_dependency(Arc::clone(envelope));
            true
        } else {
            self.run_released(worker, shard, envelope, counts)
        };
        self.finish(routing);
        holds
    }

    /// Schedules `task`; its event stays open until the task is finished.
    fn schedule(&self, task: Task, pause: Duration) {
        self.completion.hold(&task.envelope().routing);
        self.retries.schedule(task, pause);
    }

    /// Hands an async handler's run to its runner; the event stays open
    /// until [`Executor::async_run_ended`].
    fn start_async(
        &self,
        envelope: Arc<Envelope>,
        subscriber: Arc<Subscriber>,
        attempt: u32,
        then: Option<Arc<Continuation>>,
    ) {
        self.completion.hold(&envelope.routing);
        if let Some(start) = &subscriber.start {
            let run = AsyncRun {
                envelope: Arc::clone(&envelope),
                subscriber: Arc::clone(&subscriber),
                attempt,
                then,
            };
            start.start(run, self);
        }
    }

    /// An async handler's run (succeeded, dead-lettered, or cut short by
    /// `unsubscribe`) has ended on the runtime: what waited for it goes on
    /// (on a worker: later stages are sync handlers), and its hold ends.
    #[cfg_attr(diana_bus_loom, allow(dead_code))]
    pub(crate) fn async_run_ended(&self, run: AsyncRun) {
        let AsyncRun { envelope, then, .. } = run;
        let routing = envelope.routing;
        if let Some(then) = then.filter(|then| then.resolve()) {
            self.run_soon(Task::Continue(envelope, then));
        }
        self.finish_and_notify(&routing);
    }

    /// Runs what an event held back for an async run, on this worker.
    fn run_continue(
        &self,
        worker: usize,
        envelope: Arc<Envelope>,
        then: Arc<Continuation>,
        local: &mut Local,
    ) {
        let seq = self.begin_batch(worker);
        let routing = envelope.routing;
        self.go_on(worker, envelope, &then.rest, &mut local.counts);
        self.end_batch(worker, seq);
        self.finish_and_notify(&routing);
    }

    /// Counts one run of an async handler, which took `took`.
    #[cfg_attr(diana_bus_loom, allow(dead_code))]
    pub(crate) fn count_async_run(
        &self,
        type_id: std::any::TypeId,
        name: &'static str,
        counts: &Counts,
        took: Duration,
    ) {
        let mut async_counts = lock(&self.async_counts);
        let row = async_counts.row(type_id, || name);
        async_counts.add_to_row(row, counts);
        async_counts.record_latency(row, took);
    }

    /// Completes `tracker` once the event at `place` is fully handled.
    pub(crate) fn watch(&self, place: Place, tracker: Arc<Tracker>) {
        self.wait_for(place, Waiter::Notify(tracker));
    }

    /// [`Executor::finish`] off the batch path, where nothing else tells
    /// `flush` that something settled: fences and notifies it.
    fn finish_and_notify(&self, routing: &Routing) {
        self.finish(routing);
        fence(Ordering::SeqCst);
        self.settled.notify();
    }

    /// Ends one hold of `routing`'s event; hands on its waiters if it is
    /// now fully handled.
    fn finish(&self, routing: &Routing) {
        let waiters = self.completion.finished(routing);
        for waiter in waiters {
            self.fire(waiter);
        }
    }

    /// An event whose dependency is in flight waits for it, open, with its
    /// key held (the caller holds it).
    fn wait_for_dependency(&self, envelope: Arc<Envelope>) {
        let after = envelope
            .routing
            .after
            .expect("only events with a dependency wait");
        self.completion.hold(&envelope.routing);
        self.wait_for(after, Waiter::Release(envelope));
    }

    /// Hands `waiter` on once the event at `place` is fully handled: waits
    /// in its shard until the shard passes it (see "Waiters" in `shard`),
    /// then as long as it is open.
    fn wait_for(&self, place: Place, waiter: Waiter) {
        let shard = &self.shards[place.shard as usize];
        if shard.has_completed(place.seq) {
            return self.hand_on(vec![(place, waiter)]);
        }
        shard.wait_for(place.seq, waiter);
        fence(Ordering::SeqCst);
        if shard.has_completed(place.seq) {
            // The claimer may have looked before the push: hand on
            // whatever is due, once (`take_due` is under a lock).
            self.hand_on(shard.take_due());
        }
    }

    /// Waiters whose place their shard has passed: fired, or queued on the
    /// place while it is open.
    fn hand_on(&self, due: Vec<(Place, Waiter)>) {
        for (place, waiter) in due {
            if let Err(waiter) = self.completion.wait_if_open(place, waiter) {
                self.fire(waiter);
            }
        }
    }

    /// The event a waiter waited for is fully handled.
    fn fire(&self, waiter: Waiter) {
        match waiter {
            Waiter::Release(envelope) => {
                let routing = envelope.routing;
                // Scheduled (held) before the wait's hold ends: never
                // closed in between.
                self.run_soon(Task::Release(envelope));
                self.finish(&routing);
            }
            Waiter::Notify(tracker) => tracker.complete(),
        }
    }

    /// Runs a released event (see [`Executor::run_queued`]), then what
    /// queued behind its key, on this worker.
    fn run_release(&self, worker: usize, envelope: Arc<Envelope>, local: &mut Local) {
        let seq = self.begin_batch(worker);
        let shard = &self.shards[envelope.routing.place.shard as usize];
        self.release(worker, shard, envelope, &mut local.counts);
        self.end_batch(worker, seq);
        fence(Ordering::SeqCst);
        self.settled.notify();
    }

    /// One released event, with today's handlers of its type.
    fn run_released(
        &self,
        worker: usize,
        shard: &Shard,
        envelope: &Arc<Envelope>,
        counts: &mut Counter,
    ) -> bool {
        let handlers = TableCache::new(&self.registry)
            .entry(envelope.payload.type_id())
            .map_or_else(Vec::new, |entry| entry.handlers.to_vec());
        self.run_held(worker, shard, envelope, &handlers, counts)
    }

    /// Runs `handlers` on a held or released event; true if it holds its
    /// key (again).
    fn run_held(
        &self,
        worker: usize,
        shard: &Shard,
        envelope: &Arc<Envelope>,
        handlers: &[Arc<Subscriber>],
        counts: &mut Counter,
    ) -> bool {
        let mut run = Counts::default();
        let mut failures = Vec::new();
        let holding = self.run_stages(worker, envelope.event(), handlers, &mut run, |s, f| {
            failures.push((Arc::clone(s), f));
        });
        counts.add(envelope.payload.type_id(), || envelope.payload.name(), &run);
        if holding.is_some() {
            shard.hold(envelope.routing.tenant, envelope.routing.key);
        }
        self.settle_event(
            envelope,
            failures,
            holding.map(|stop| handlers[stop..].to_vec()),
        )
    }

    /// Schedules the next run of a failed one, or records a dead letter.
    /// A dead letter ends its run's part in `then`, which is handed back to
    /// be resolved.
    fn after_failure(
        &self,
        envelope: Arc<Envelope>,
        subscriber: Arc<Subscriber>,
        attempt: u32,
        failure: Failure,
        then: Option<Arc<Continuation>>,
    ) -> Option<Arc<Continuation>> {
        if failure.started {
            self.start_async(envelope, subscriber, attempt, then);
            return None;
        }
        if failure.will_retry(&subscriber, attempt) {
            let pause = subscriber
                .retry
                .pause_before(attempt + 1, envelope.routing.id.0 as u64);
            let task = RetryTask {
                envelope,
                subscriber,
                attempt: attempt + 1,
                then,
            };
            self.schedule(Task::Retry(task), pause);
            None
        } else {
            self.dead_letters.record(DeadLetter::new(
                envelope,
                &subscriber,
                failure.message,
                attempt,
            ));
            then
        }
    }

    /// Takes the `chosen` dead letters whose subscriptions are still
    /// there from the store and runs each one's handler again, as a new
    /// first attempt, on the next worker round; returns how many. None
    /// once the bus is closed: the letters stay.
    ///
    /// Taking and scheduling happen under `replaying`, which [`close`]
    /// passes through after closing: so a replay either is scheduled (its
    /// event held open) before the shutdown's drain begins, which waits
    /// for it, or sees the bus closed. Without it, a replay racing the
    /// shutdown took its letters after the drain and held its events open
    /// for good.
    ///
    /// [`close`]: Executor::close
    pub(crate) fn replay(&self, chosen: &Chosen) -> usize {
        let replaying = lock(&self.replaying);
        if self.is_closed() {
            return 0;
        }
        // The subscriptions looked at, kept until the locks are let go: the
        // last reference to one may be among them, and its drop is user
        // code (the handler's), which must not run under them.
        let mut looked_at = Vec::new();
        let letters = self.dead_letters.take(chosen, |letter| {
            let subscriber = letter.subscriber();
            let live = subscriber.as_ref().is_some_and(|s| !s.is_unsubscribed());
            looked_at.extend(subscriber);
            live
        });
        for letter in &letters {
            // Held in `looked_at`, so still there. An unsubscribe since the
            // look ends the replay unrun, as it ends pending retries.
            if let Some(subscriber) = letter.subscriber() {
                let task = RetryTask {
                    envelope: Arc::clone(letter.envelope()),
                    subscriber,
                    attempt: 1,
                    then: None,
                };
                self.run_soon(Task::Retry(task));
            }
        }
        drop(replaying);
        drop(looked_at);
        letters.len()
    }

    /// Makes the pending retries of `subscriber`, just unsubscribed, due
    /// at once: they do not run it, but end its series now, releasing what
    /// they hold back (its key, later stages, a flush), rather than at the
    /// end of their pause. Wakes the workers that sleep, as `run_soon` does.
    pub(crate) fn expedite_retries_of(&self, subscriber: &Arc<Subscriber>) {
        let of_subscriber = |task: &Task| matches!(task, Task::Retry(retry) if Arc::ptr_eq(&retry.subscriber, subscriber));
        if self.retries.expedite(of_subscriber) > 0 {
            fence(Ordering::SeqCst);
            for worker in self.workers.iter() {
                worker.sleeper.wake_if_sleeping();
            }
        }
    }

    /// Schedules `task` due at once and wakes the owner of its event's
    /// shard if it sleeps: the task is work that a worker's pre-park check
    /// sees (P3 of the sleeper protocol in `park`, with the fence here).
    fn run_soon(&self, task: Task) {
        let owner = self.owner(task.envelope().routing.place.shard as usize);
        self.schedule(task, Duration::ZERO);
        fence(Ordering::SeqCst);
        self.workers[owner].sleeper.wake_if_sleeping();
    }

    /// Runs one due retry (or replay) on this worker.
    fn run_retry(&self, worker: usize, task: RetryTask, local: &mut Local) {
        let seq = self.begin_batch(worker);
        let RetryTask {
            envelope,
            subscriber,
            attempt,
            then,
        } = task;
        let routing = envelope.routing;
        let mut counts = Counts::default();
        // What this run's series held back, if the series ends here.
        let ended = if subscriber.accepts(envelope.routing.tenant) && !subscriber.is_unsubscribed()
        {
            counts.retried();
            match self.call(worker, envelope.event(), &subscriber, attempt) {
                Ok(()) => {
                    counts.ran(RunOutcome::Delivered);
                    then
                }
                Err(failure) => {
                    if let Some(outcome) = failure.outcome() {
                        counts.ran(outcome);
                    }
                    self.after_failure(Arc::clone(&envelope), subscriber, attempt, failure, then)
                }
            }
        } else {
            if let Some(tracker) = &envelope.tracker {
                tracker.abandoned();
            }
            then
        };
        if let Some(then) = ended.filter(|then| then.resolve()) {
            self.go_on(worker, Arc::clone(&envelope), &then.rest, &mut local.counts);
        }
        local.counts.add(
            envelope.payload.type_id(),
            || envelope.payload.name(),
            &counts,
        );
        self.end_batch(worker, seq);
        // Last: after any reschedule above (so the pending count never dips
        // to 0) and after its counts are stored (so a flush that sees it
        // finished also sees its counts).
        self.finish_and_notify(&routing);
    }

    /// Runs an event's handlers; returns where the held-back ones start
    /// if it now holds its key (see `run_stages`).
    #[inline(always)]
    fn dispatch(
        &self,
        worker: usize,
        index: usize,
        event: EventRef<'_>,
        run: &mut TypeRun<'_>,
        failures: &mut Vec<BatchFailure>,
    ) -> Option<usize> {
        run.counts.dispatched();
        self.run_stages(
            worker,
            event,
            run.handlers,
            &mut run.counts,
            |subscriber, failure| {
                failures.push(BatchFailure {
                    index,
                    subscriber: Arc::clone(subscriber),
                    failure,
                })
            },
        )
    }

    /// [`Executor::dispatch`] in a trace span of its own (with `trace`),
    /// timed if the event is one of those sampled for the latency
    /// histograms (see `metrics::latency`). Apart, so that the span and the
    /// clock cost the batch loop nothing on the other events, not even the
    /// drop of an empty `Option` per event.
    #[cold]
    #[inline(never)]
    fn dispatch_observed(
        &self,
        worker: usize,
        index: usize,
        event: EventRef<'_>,
        run: &mut TypeRun<'_>,
        local: &mut Local,
        trace: bool,
    ) -> Option<usize> {
        let _span = trace.then(|| {
            let name = event.payload.name();
            tracing::trace_span!("event", id = %event.routing.id, name).entered()
        });
        // Sampled, and with a sync handler to time (an async one's run is
        // timed on the runtime).
        let timed = is_timed(event.routing.place.seq)
            && run.handlers.iter().any(|handler| handler.start.is_none());
        let started = timed.then(Instant::now);
        let held = self.dispatch(worker, index, event, run, &mut local.failures);
        if let Some(started) = started {
            local.counts.record_latency(run.row, started.elapsed());
        }
        held
    }

    /// Runs `handlers` (in stage order) on one event, as first attempts.
    /// A failure that will be retried *holds* the event's key when the
    /// handler asks for strict order or later stages that run this event
    /// follow; the later stages then wait, for the holding runs only.
    /// Returns `Some(index of the first handler not run)` when the event
    /// holds its key, `None` otherwise.
    ///
    /// Inlined, as `call` is, into the batch loop: as functions of their
    /// own, their calls cost the worker a sixth of its instructions per
    /// event (callgrind, spsc: 351 with them, 288 without).
    #[inline(always)]
    fn run_stages(
        &self,
        worker: usize,
        event: EventRef<'_>,
        handlers: &[Arc<Subscriber>],
        counts: &mut Counts,
        mut failed: impl FnMut(&Arc<Subscriber>, Failure),
    ) -> Option<usize> {
        let tenant = event.routing.tenant;
        let runs = |subscriber: &Arc<Subscriber>| {
            subscriber.accepts(tenant) && !subscriber.is_unsubscribed()
        };
        let mut holding_stage = None;
        for (at, subscriber) in handlers.iter().enumerate() {
            if holding_stage.is_some_and(|stage| subscriber.stage > stage) {
                return Some(at);
            }
            if !runs(subscriber) {
                continue;
            }
            match self.call(worker, event, subscriber, 1) {
                Ok(()) => counts.ran(RunOutcome::Delivered),
                Err(failure) => {
                    if let Some(outcome) = failure.outcome() {
                        counts.ran(outcome);
                    }
                    // Later stages that this event runs (a stage scoped
                    // to another tenant is none of its business).
                    let later_stage = || {
                        handlers[at + 1..]
                            .iter()
                            .any(|later| later.stage > subscriber.stage && runs(later))
                    };
                    let holds = failure.will_retry(subscriber, 1)
                        && (subscriber.strict_order || later_stage());
                    if holds && holding_stage.is_none() {
                        holding_stage = Some(subscriber.stage);
                    }
                    failed(subscriber, Failure { holds, ..failure });
                }
            }
        }
        holding_stage.map(|_| handlers.len())
    }

    /// Runs one handler on one event, catching panics.
    #[inline(always)]
    fn call(
        &self,
        worker: usize,
        event: EventRef<'_>,
        subscriber: &Arc<Subscriber>,
        attempt: u32,
    ) -> Result<(), Failure> {
        if subscriber.start.is_some() {
            // Started when the batch settles, where the event is shared.
            return Err(Failure::started());
        }
        let routing = event.routing;
        let ctx = Context {
            executor: self,
            worker,
            routing,
            attempt,
            subscriber,
        };
        match catch(|| (subscriber.handler)(event.payload, &ctx)) {
            Ok(Ok(())) => {
                if let Some(tracker) = event.tracker {
                    tracker.succeeded();
                }
                Ok(())
            }
            Ok(Err(error)) => {
                let name = event.payload.name();
                tracing::warn!(handler = %subscriber.name, event = name, id = %routing.id, attempt, %error, "handler failed");
                let failure = Failure {
                    message: error.message().to_owned(),
                    retryable: error.is_transient(),
                    panicked: false,
                    started: false,
                    holds: false,
                };
                Err(report(event.tracker, subscriber, attempt, failure))
            }
            Err(panic) => {
                let message = panic.message();
                let name = event.payload.name();
                tracing::error!(handler = %subscriber.name, event = name, id = %routing.id, attempt, panic = message, "handler panicked");
                let failure = Failure {
                    message: format!("panicked: {message}"),
                    retryable: true,
                    panicked: true,
                    started: false,
                    holds: false,
                };
                Err(report(event.tracker, subscriber, attempt, failure))
            }
        }
    }
}

/// Tells a waiting publisher (`publish_and_wait`, `request`, `gather`) of
/// a failed run at once, not when the event's other handlers are done: a
/// gather may be waiting for this very handler.
fn report(
    tracker: Option<&Arc<Tracker>>,
    subscriber: &Subscriber,
    attempt: u32,
    failure: Failure,
) -> Failure {
    if let Some(tracker) = tracker {
        tracker.failed(RunFailure {
            handler: subscriber.name.to_string(),
            attempt,
            error: failure.message.clone(),
            dead_lettered: !failure.will_retry(subscriber, attempt),
        });
    }
    failure
}

impl Failure {
    fn started() -> Failure {
        Failure {
            message: String::new(),
            retryable: false,
            panicked: false,
            started: true,
            holds: false,
        }
    }

    /// Whether this failure of `subscriber`'s run number `attempt` will be
    /// retried (an async start: whether the run is still to come).
    fn will_retry(&self, subscriber: &Subscriber, attempt: u32) -> bool {
        self.started || (self.retryable && subscriber.retry.allows_after(attempt))
    }

    /// What the metrics count now: nothing for an async start.
    fn outcome(&self) -> Option<RunOutcome> {
        match self {
            Failure { started: true, .. } => None,
            Failure { panicked: true, .. } => Some(RunOutcome::Panicked),
            _ => Some(RunOutcome::Failed),
        }
    }
}

/// A batch under way (see [`Executor::run_batch`]).
struct Batch<'t> {
    /// What `begin_batch` returned, once the batch has begun.
    seq: Option<u64>,
    /// The handler tables, loaded once per batch.
    tables: &'t TableCache<'t>,
    /// The stretch of same-type events the batch is in.
    run: Option<TypeRun<'t>>,
    /// Whether each event gets a trace span.
    trace: bool,
    /// The index of the batch's next event.
    next: usize,
}

/// A stretch of consecutive events of one type within a batch.
struct TypeRun<'t> {
    type_id: std::any::TypeId,
    /// The type's row in the worker's counts.
    row: usize,
    handlers: &'t [Arc<Subscriber>],
    counts: Counts,
}

/// Gives the batch's events' units back to their tenants' budgets: one
/// lock per run of same-tenant events, not per event.
fn give_back_budget(quota: &TenantQuota, tenants: &[TenantId]) {
    let mut tenants = tenants.iter().copied().peekable();
    while let Some(tenant) = tenants.next() {
        let mut count = 1;
        while tenants.next_if_eq(&tenant).is_some() {
            count += 1;
        }
        quota.give_back(tenant, count);
    }
    quota.notify();
}

/// Starts the executor's worker threads.
pub(crate) fn spawn_workers(
    executor: &Arc<Executor>,
) -> std::io::Result<Vec<thread::JoinHandle<()>>> {
    (0..executor.workers.len())
        .map(|index| {
            let executor = Arc::clone(executor);
            thread::Builder::new()
                .name(format!("diana-bus-worker-{index}"))
                .spawn(move || executor.run_worker(index))
        })
        .collect()
}
