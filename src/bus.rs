//! [`Bus`] and [`BusBuilder`]: publish, subscribe, flush, shutdown.
//!
//! # Clean shutdown
//!
//! [`Bus::shutdown`] stops accepting (later publishes get
//! [`PublishError::Closed`] with the event), lets the workers handle every
//! event accepted before it, and everything their handlers publish
//! meanwhile, then joins the worker threads. Dropping the last `Bus` handle
//! does the same, except on a thread the drain must not block: a worker,
//! an async handler's code, or a thread of a tokio runtime (whose async
//! runs the drain may wait for). There a helper thread, which holds the
//! bus, drains it and joins the workers in the background. `shutdown`
//! called from a handler likewise returns before the drain (`joined`
//! false); called elsewhere on a runtime thread, it blocks that thread
//! until the drain is done. A handler that keeps a `Bus` clone keeps the
//! bus alive: shut it down explicitly (the drain's end lets go of every
//! subscriber, and with them of such clones), or unsubscribe that handler
//! first.

use std::marker::PhantomData;
use std::time::Duration;

use crate::context::Context;
use crate::delivery::Tracker;
use crate::envelope::RingEntry;
use crate::error::{ConfigError, HandlerResult, PublishError};
use crate::event::{short_type_name, Event, EventId, Meta, Routing, TenantId};
use crate::executor::{spawn_workers, Accepted, Config, Executor, OnFull, WhenClosed};
use crate::metrics::MetricsSnapshot;
use crate::payload::{Payload, TypeIdOf};
use crate::place::Place;
use crate::registry::{AsyncStart, SubscriberOptions, Subscription};
use crate::reliability::backlog::Closed;
use crate::reliability::dead_letter::DeadLetter;
use crate::reliability::dedup::Reservation;
use crate::reliability::quota::{Over, TenantQuota};
use crate::reliability::retry::RetryPolicy;
use crate::ring;
use crate::sync::{lock, thread, Arc, Mutex};

/// The most worker threads a bus may have.
pub const MAX_WORKERS: usize = 1024;
/// The most shards a bus may have.
pub const MAX_SHARDS: usize = 1 << 16;
/// The most slots one shard's ring may have.
pub const MAX_CAPACITY: usize = 1 << 22;
/// The most ring slots a bus may have in all, shards times capacity: 4 GiB
/// of 128-byte slots.
pub const MAX_SLOTS: usize = 1 << 25;

const DEFAULT_CAPACITY: usize = 1024;
const DEFAULT_DEAD_LETTER_CAPACITY: usize = 10_000;
const DEFAULT_DEDUP_SIZE: usize = 10_000;
const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(300);
const DEFAULT_BATCH: usize = 256;
const SHARDS_PER_WORKER: usize = 4;
const DEFAULT_CONCURRENCY: usize = 16;

/// Whether an async handler's run lasts (see [`Bus::lent`]); std's `Arc`
/// even under loom: a flag of the adapter, outside every model.
pub(crate) type RunLasts = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// A [`Bus`] handle that does not keep it alive.
#[cfg(not(diana_bus_loom))]
#[derive(Clone)]
pub(crate) struct WeakBus(std::sync::Weak<Inner>);

#[cfg(not(diana_bus_loom))]
impl WeakBus {
    /// The bus, lent (see [`Bus::lent`]), if it is still there.
    pub(crate) fn upgrade(&self) -> Option<Bus> {
        self.0.upgrade().map(|inner| Bus {
            owners: None,
            inner,
            lent_to: None,
        })
    }
}

/// What became of a publish that was not refused. `repr(u8)`: see "Store
/// forwarding" in [`Bus::send`].
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub(crate) enum Sent {
    Accepted(Accepted),
    /// An explicit id seen within the dedup window: acknowledged, not
    /// handled again.
    Duplicate(EventId),
}

impl Sent {
    pub(crate) fn id(self) -> EventId {
        match self {
            Sent::Accepted(accepted) => accepted.id,
            Sent::Duplicate(id) => id,
        }
    }
}

/// The event of a refused publish, from the entry it left with its
/// publisher. Out of line: each event type has its own, and a publish that
/// is accepted never runs it.
#[cold]
fn give_back<E: Event>(refused: PublishError<()>, entry: Option<RingEntry>) -> PublishError<E> {
    let entry = entry.expect("a refused publish leaves its entry");
    refused.map(|()| entry.into_payload().into_inner::<E>())
}

/// What `publish` does when the shard's ring is full (or the tenant's
/// quota is used up, or the backlog gate is raised: see
/// [`BusBuilder::tenant_quota`], [`SubscriberBuilder::backlog`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backpressure {
    /// Wait for room (spin briefly, then sleep until a worker frees a
    /// slot; for a quota unit, or for the backlog gate to be lowered,
    /// except where the gate lets publishes through: see
    /// [`SubscriberBuilder::backlog`]).
    #[default]
    Block,
    /// Refuse at once with [`PublishError::Full`] (or
    /// [`PublishError::QuotaExceeded`], [`PublishError::Backlogged`]).
    Reject,
}

/// Settings for a [`Bus`]; [`BusBuilder::build`] checks them.
#[derive(Clone, Debug, Default)]
pub struct BusBuilder {
    workers: Option<usize>,
    shards: Option<usize>,
    capacity: Option<usize>,
    batch: Option<usize>,
    dead_letter_capacity: Option<usize>,
    dedup: Option<(usize, Duration)>,
    tenant_quota: Option<u64>,
    backpressure: Backpressure,
    #[cfg(not(diana_bus_loom))]
    runtime: Option<tokio::runtime::Handle>,
}

impl BusBuilder {
    /// The tokio runtime that async handlers (`subscribe_async`,
    /// `respond_async`) run on. Nothing else needs a runtime.
    #[cfg(not(diana_bus_loom))]
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Worker threads (default: the machine's available parallelism).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Shards (default: 4 per worker). At least one per worker; rounded up
    /// to a power of two.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Ring slots per shard (default 1024); rounded up to a power of two,
    /// and at least 2. They bound the shard's events both queued and being
    /// handled: a batch keeps its slots until its handlers have run.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Most events a worker takes from a shard at once (default 256, or the
    /// ring capacity if smaller).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = Some(batch);
        self
    }

    /// Dead letters kept (default 10,000); when full, the oldest is dropped
    /// and counted in `MetricsSnapshot::dead_letters_dropped`.
    pub fn dead_letter_capacity(mut self, capacity: usize) -> Self {
        self.dead_letter_capacity = Some(capacity);
        self
    }

    /// How many explicit ids ([`Meta::id`]) each tenant remembers, and for
    /// how long, to drop republished duplicates (default 10,000 ids for 5
    /// minutes; size 0 turns deduplication off). Events published without
    /// an explicit id have fresh unique ids and are never checked.
    pub fn dedup_window(mut self, size: usize, ttl: Duration) -> Self {
        self.dedup = Some((size, ttl));
        self
    }

    /// At most `limit` events of one tenant queued at once (default:
    /// unlimited). Over it, that tenant's publishes wait
    /// ([`Backpressure::Block`]) or are refused with
    /// [`PublishError::QuotaExceeded`] ([`Backpressure::Reject`],
    /// [`Bus::try_publish`]); other tenants keep flowing. Follow-ups from
    /// handlers count but are never refused. An event counts until the
    /// batch that takes it up from its ring has run its handlers: events
    /// that then wait behind a key held by a retry, or for their
    /// dependency, or run in an async handler, no longer count, so the
    /// quota does not bound them.
    pub fn tenant_quota(mut self, limit: u64) -> Self {
        self.tenant_quota = Some(limit);
        self
    }

    /// What `publish` does on a full ring (default [`Backpressure::Block`]).
    pub fn backpressure(mut self, backpressure: Backpressure) -> Self {
        self.backpressure = backpressure;
        self
    }

    fn config(&self) -> Result<Config, ConfigError> {
        let workers = self.workers.unwrap_or_else(default_workers);
        if workers == 0 || workers > MAX_WORKERS {
            return Err(ConfigError::Workers(workers));
        }
        let shards = self
            .shards
            .unwrap_or(workers * SHARDS_PER_WORKER)
            .max(1)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX);
        if self.shards == Some(0) || shards < workers || shards > MAX_SHARDS {
            return Err(ConfigError::Shards {
                shards: self.shards.unwrap_or(shards),
                workers,
            });
        }
        let requested = self.capacity.unwrap_or(DEFAULT_CAPACITY);
        if requested == 0 || requested > MAX_CAPACITY {
            return Err(ConfigError::Capacity(requested));
        }
        let capacity = ring::effective_capacity(requested);
        if shards.saturating_mul(capacity) > MAX_SLOTS {
            return Err(ConfigError::Slots { shards, capacity });
        }
        let batch = self.batch.unwrap_or(DEFAULT_BATCH.min(capacity));
        if batch == 0 || batch > capacity {
            return Err(ConfigError::Batch(batch));
        }
        let dead_letter_capacity = self
            .dead_letter_capacity
            .unwrap_or(DEFAULT_DEAD_LETTER_CAPACITY);
        if dead_letter_capacity == 0 {
            return Err(ConfigError::DeadLetterCapacity(dead_letter_capacity));
        }
        if self.tenant_quota == Some(0) {
            return Err(ConfigError::TenantQuota(0));
        }
        let (dedup_size, dedup_ttl) = self
            .dedup
            .unwrap_or((DEFAULT_DEDUP_SIZE, DEFAULT_DEDUP_TTL));
        Ok(Config {
            workers,
            shards,
            capacity,
            batch,
            dead_letter_capacity,
            dedup_size,
            dedup_ttl,
            tenant_quota: self.tenant_quota,
        })
    }

    /// Starts the bus, or says which setting cannot work.
    ///
    /// # Examples
    ///
    /// ```
    /// use diana_bus::{Bus, ConfigError};
    ///
    /// assert_eq!(Bus::builder().capacity(0).build().unwrap_err(), ConfigError::Capacity(0));
    /// let bus = Bus::builder().workers(2).shards(8).capacity(1000).build()?;
    /// assert_eq!(bus.capacity(), 1024);
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn build(self) -> Result<Bus, ConfigError> {
        let config = self.config()?;
        let executor = Arc::new(Executor::new(config));
        let workers = match spawn_workers(&executor) {
            Ok(workers) => workers,
            Err(error) => {
                // Let the threads that did start exit.
                executor.stop();
                return Err(ConfigError::Spawn(error.to_string()));
            }
        };
        let owners = std::sync::Arc::new_cyclic(|owners| {
            Owners(Arc::new(Inner {
                executor,
                workers: Mutex::new(workers),
                #[cfg(not(diana_bus_loom))]
                runtime: self.runtime,
                on_full: match self.backpressure {
                    Backpressure::Block => OnFull::Wait,
                    Backpressure::Reject => OnFull::Refuse,
                },
                owners: owners.clone(),
            }))
        });
        Ok(Bus {
            inner: Arc::clone(&owners.0),
            owners: Some(owners),
            lent_to: None,
        })
    }
}

#[cfg(not(diana_bus_loom))]
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(diana_bus_loom)]
fn default_workers() -> usize {
    1
}

/// What [`Bus::shutdown`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events accepted over the bus's life.
    pub published: u64,
    /// Successful handler runs.
    pub delivered: u64,
    /// Failed or panicked handler runs.
    pub failed: u64,
    /// (event, handler) pairs recorded as dead letters.
    pub dead_lettered: u64,
    /// Publishes refused.
    pub rejected: u64,
    /// Whether this call drained the bus and joined its workers. False when
    /// called from a handler (sync, on a worker thread, or async): the
    /// drain would wait for the handler itself, so a helper thread
    /// finishes it in the background; and false when an earlier call took
    /// the workers to join them (this one still waits for the drain).
    pub joined: bool,
}

/// The event bus: a cheap, cloneable handle (`Send + Sync`); every method
/// takes `&self`.
///
/// # Examples
///
/// ```
/// use diana_bus::{Bus, Context, Event, HandlerResult};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// struct UserMessage { user_id: u64 }
/// impl Event for UserMessage {
///     fn key(&self) -> Option<u64> { Some(self.user_id) }
/// }
///
/// let bus = Bus::builder().workers(2).build()?;
/// let total = Arc::new(AtomicU64::new(0));
/// let sum = total.clone();
/// bus.subscribe(move |m: &UserMessage, _: &Context| -> HandlerResult {
///     sum.fetch_add(m.user_id, Ordering::Relaxed);
///     Ok(())
/// });
/// for user_id in 1..=10 {
///     bus.publish(UserMessage { user_id })?;
/// }
/// bus.flush();
/// assert_eq!(total.load(Ordering::Relaxed), 55);
/// let report = bus.shutdown();
/// assert_eq!((report.published, report.delivered), (10, 10));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Bus {
    /// Shared by the handles users hold (see [`Owners`]); `None` in a bus
    /// lent to an async handler's context, which must not keep the bus
    /// open.
    owners: Option<std::sync::Arc<Owners>>,
    inner: Arc<Inner>,
    /// In a handle lent to an async handler's run
    /// ([`crate::AsyncContext::bus`]) and its clones: whether the run still
    /// lasts. Till it ends, their publishes pass the backlog gate, since the
    /// run may wait for them (from a task it spawned, say).
    lent_to: Option<RunLasts>,
}

struct Inner {
    executor: Arc<Executor>,
    workers: Mutex<Vec<thread::JoinHandle<()>>>,
    #[cfg(not(diana_bus_loom))]
    runtime: Option<tokio::runtime::Handle>,
    on_full: OnFull,
    /// For a clone of a lent bus, which is the user's own handle.
    owners: std::sync::Weak<Owners>,
}

/// The users' share of a bus. Dropping the last handle that holds it shuts
/// the bus down, while `Inner` is still there: the async runs that the
/// shutdown's drain waits for reach the bus through a weak reference
/// (the bus holds their handlers, so they must not keep it alive), and
/// can, until the drain is over.
struct Owners(Arc<Inner>);

impl Drop for Owners {
    fn drop(&mut self) {
        // On a runtime thread, blocking for the drain could wait for async
        // runs that need this very thread: the drain goes to a helper.
        #[cfg(not(diana_bus_loom))]
        let on_runtime = tokio::runtime::Handle::try_current().is_ok();
        #[cfg(diana_bus_loom)]
        let on_runtime = false;
        Inner::shutdown(&self.0, on_runtime);
    }
}

/// A clone is a handle of its own, and keeps the bus open: also a clone of
/// a lent bus ([`crate::AsyncContext::bus`]), unless the bus is already
/// shutting down.
impl Clone for Bus {
    fn clone(&self) -> Self {
        Bus {
            owners: self.owners.clone().or_else(|| self.inner.owners.upgrade()),
            inner: Arc::clone(&self.inner),
            lent_to: self.lent_to.clone(),
        }
    }
}

impl Bus {
    /// Settings for a new bus.
    pub fn builder() -> BusBuilder {
        BusBuilder::default()
    }

    /// Ring slots per shard, after rounding.
    pub fn capacity(&self) -> usize {
        self.inner.executor.config().capacity
    }

    /// Number of shards, after rounding.
    pub fn shards(&self) -> usize {
        self.inner.executor.config().shards
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.inner.executor.config().workers
    }

    /// Subscribes `handler` to events of type `E`. An event published after
    /// this returns is delivered to it. On a bus that was shut down, the
    /// subscription lives until the shutdown's drain ends (it sees the
    /// follow-ups that handlers publish meanwhile), and then `handler` is
    /// dropped, with what it holds: at once, if the drain has ended.
    pub fn subscribe<E, F>(&self, handler: F) -> Subscription
    where
        E: Event,
        F: Fn(&E, &Context<'_>) -> HandlerResult + Send + Sync + 'static,
    {
        self.subscriber::<E>().subscribe(handler)
    }

    /// A subscription with options: name, tenant scope, stage.
    pub fn subscriber<E: Event>(&self) -> SubscriberBuilder<'_, E> {
        SubscriberBuilder {
            bus: self,
            name: None,
            tenant: None,
            stage: 0,
            retry: RetryPolicy::none(),
            strict_order: false,
            concurrency: DEFAULT_CONCURRENCY,
            backlog: None,
            event: PhantomData,
        }
    }

    /// Removes a subscription. When it returns, a sync handler is not
    /// running and never runs again (an async handler starts no new run,
    /// but one under way on the runtime finishes: `flush` waits for it);
    /// returns false if it was already removed (or belongs to another
    /// bus, or the bus was shut down: the end of the drain removes every
    /// subscription). Its pending retries end at once, with what
    /// they held back: later stages, the event's key, a `flush`; so do an
    /// async handler's runs waiting out a retry pause (a run under way on
    /// the runtime finishes).
    ///
    /// Called from a handler (on a worker thread) it does not wait for
    /// calls of the handler running on other workers, which could deadlock:
    /// no call starts after it returns, and the running ones finish.
    pub fn unsubscribe(&self, subscription: &Subscription) -> bool {
        let executor = &self.inner.executor;
        match executor.registry.remove(subscription) {
            Some(subscriber) => {
                executor.quiesce();
                executor.expedite_retries_of(&subscriber);
                if let Some(runner) = &subscriber.start {
                    runner.unsubscribed(executor);
                }
                drop(subscriber);
                true
            }
            None => false,
        }
    }

    /// The number of live subscriptions to events of type `E` (0 once a
    /// shutdown's drain has ended: see [`Bus::subscribe`]).
    pub fn subscribers<E: Event>(&self) -> usize {
        self.inner
            .executor
            .registry
            .count(std::any::TypeId::of::<E>())
    }

    /// Publishes `event`: with [`Backpressure::Block`] it waits for room in
    /// a full ring, with [`Backpressure::Reject`] it returns
    /// [`PublishError::Full`] (and likewise for a tenant quota and the
    /// backlog gate, see [`Backpressure`]). After shutdown:
    /// [`PublishError::Closed`].
    #[inline]
    pub fn publish<E: Event>(&self, event: E) -> Result<EventId, PublishError<E>> {
        self.publish_with(event, Meta::new())
    }

    /// [`Bus::publish`] with tenant, key or id set by `meta`. An id already
    /// published for the same tenant within the dedup window (see
    /// [`BusBuilder::dedup_window`]) is acknowledged with `Ok(id)` and not
    /// handled again; `MetricsSnapshot::deduplicated` counts it.
    #[inline]
    pub fn publish_with<E: Event>(&self, event: E, meta: Meta) -> Result<EventId, PublishError<E>> {
        self.send(event, meta, None, self.inner.on_full, None)
            .map(|sent| sent.id())
    }

    /// Publishes without ever blocking: a full ring returns
    /// [`PublishError::Full`] whatever the backpressure policy (a used-up
    /// quota [`PublishError::QuotaExceeded`], the backlog gate raised
    /// [`PublishError::Backlogged`], unless the gate lets it through: see
    /// [`SubscriberBuilder::backlog`]).
    #[inline]
    pub fn try_publish<E: Event>(&self, event: E) -> Result<EventId, PublishError<E>> {
        self.send(event, Meta::new(), None, OnFull::Refuse, None)
            .map(|sent| sent.id())
    }

    /// Every publish: deduplication, the tenant's quota, the push. A
    /// refused event comes back; with [`OnFull::Retry`] a full ring or
    /// quota is not counted as a refusal (the async caller tries again).
    /// A follow-up of `parent` (from an async handler) joins its flush
    /// epoch and records it as its cause.
    ///
    /// The only code of each event type's own: its tenant and key, and its
    /// ring entry, built in this frame (the push copies it from here into
    /// its slot). The rest is [`Bus::send_entry`], one function for every
    /// type. With routing and the push inline here, each type's publish
    /// was 0.9 KB of code, and a thousand types published in turn missed
    /// the instruction cache 11 times a publish at dc8a85f (now 0.4 KB and
    /// 6 misses, in callgrind's cache simulation).
    ///
    /// # Store forwarding
    ///
    /// A push's stores to its slot may wait in the store buffer for the
    /// slot's cache lines to come from the worker's core. A later load
    /// that the store buffer cannot forward (one wider than the stores it
    /// reads: a 16-byte test of a niche-encoded `Option` or `Result`
    /// written as two 8-byte fields) waits for every store before it,
    /// those included. So the publish path never reads back that way what
    /// it has just written: the tenant and key go into the entry here,
    /// not through a resolved `Meta` that `send_entry` would read back
    /// (that stall halved spsc); `Sent` is `repr(u8)`, so a result is
    /// tested by its tag byte (the 16-byte test cost spsc a third of its
    /// speed); the empty lineage an accepted push leaves is forgotten,
    /// not dropped (its drop's test cost a tenth).
    #[inline]
    pub(crate) fn send<E: Event>(
        &self,
        event: E,
        meta: Meta,
        tracker: Option<Arc<Tracker>>,
        on_full: OnFull,
        parent: Option<&Routing>,
    ) -> Result<Sent, PublishError<E>> {
        let (tenant, key) = meta.tenant_and_key(&event);
        let mut entry = Some(RingEntry::of(Payload::new(event), tenant, key));
        match self.send_entry(&mut entry, &meta, tracker, on_full, parent) {
            Ok(sent) => {
                // Taken: nothing is left to drop, and forgetting the empty
                // `Option` keeps its drop code out of every type's publish.
                debug_assert!(entry.is_none());
                std::mem::forget(entry);
                Ok(sent)
            }
            Err(refused) => Err(give_back(refused, entry)),
        }
    }

    /// [`Bus::send`] once the event's type is erased: `entry` holds it,
    /// with its tenant and key. Takes the entry unless the publish is
    /// refused (a duplicate is dropped). Kept to the common case (no
    /// explicit id, no quota, no parent, the gate down: routing and the
    /// push); the rest is out of line.
    #[inline(never)]
    fn send_entry(
        &self,
        entry: &mut Option<RingEntry>,
        meta: &Meta,
        tracker: Option<Arc<Tracker>>,
        on_full: OnFull,
        parent: Option<&Routing>,
    ) -> Result<Sent, PublishError<()>> {
        let executor = &self.inner.executor;
        if meta.get_id().is_some()
            || parent.is_some()
            || executor.quota.is_some()
            || executor.gate.is_raised()
        {
            return self.send_guarded(entry, meta, tracker, on_full, parent);
        }
        let routing = self.route(entry, meta);
        self.push_entry(entry, &routing, tracker, on_full, WhenClosed::Refuse)
            .map(|place| Sent::Accepted(executor.accepted(None, place)))
    }

    /// [`Bus::send_entry`] with an explicit id, a quota, a parent, or the
    /// backlog gate raised.
    #[cold]
    fn send_guarded(
        &self,
        entry: &mut Option<RingEntry>,
        meta: &Meta,
        tracker: Option<Arc<Tracker>>,
        on_full: OnFull,
        parent: Option<&Routing>,
    ) -> Result<Sent, PublishError<()>> {
        let executor = &self.inner.executor;
        let mut routing = self.route(entry, meta);
        if let Some(parent) = parent {
            routing.epoch = parent.epoch;
            (routing.cause, routing.caused) = (parent.id, true);
        }
        // A follow-up from an async handler's own code is accepted during
        // the shutdown drain, like a sync handler's: the drain waits for
        // the handler, and so for what it publishes meanwhile.
        let when_closed = if parent.is_some() && executor.in_handler() {
            WhenClosed::Accept
        } else {
            WhenClosed::Refuse
        };
        let (id, tenant) = (routing.id, routing.tenant);
        let explicit = meta.get_id().is_some();
        // A closed bus refuses here, before the id and the quota are
        // looked at: a duplicate would be acknowledged, and an async
        // publisher over its quota would wait for a unit (it tries again
        // when `close` wakes it, and lands here). A publish that races the
        // close is refused by the ring instead.
        if when_closed == WhenClosed::Refuse && executor.is_closed() {
            executor.count_rejected(&routing);
            return Err(PublishError::Closed(()));
        }
        let reservation = match explicit {
            true => match executor.dedup.reserve(tenant, id) {
                Some(reservation) => Some(reservation),
                None => {
                    *entry = None;
                    return Ok(Sent::Duplicate(id));
                }
            },
            false => None,
        };
        let release = |reservation: Option<Reservation>| {
            if let Some(reservation) = reservation {
                executor.dedup.release(tenant, id, reservation);
            }
        };
        if let Err(refused) = self.admit(tenant, parent, on_full) {
            // An async publisher waits for what refused it and tries again.
            if on_full != OnFull::Retry || refused.is_closed() {
                executor.count_rejected(&routing);
            }
            release(reservation);
            return Err(refused);
        }
        let pushed = self
            .push_entry(entry, &routing, tracker, on_full, when_closed)
            .map(|place| executor.accepted(explicit.then_some(id), place));
        if pushed.is_err() {
            release(reservation);
            if let Some(quota) = &executor.quota {
                quota.give_back(tenant, 1);
                // A publisher may wait for this very unit.
                quota.notify();
            }
        }
        if let (Ok(_), Some(parent)) = (&pushed, parent) {
            executor.count_follow_up(parent.epoch);
        }
        pushed.map(Sent::Accepted)
    }

    /// The routing of the publish of `entry` with `meta`.
    #[inline(always)]
    fn route(&self, entry: &Option<RingEntry>, meta: &Meta) -> Routing {
        let entry = entry.as_ref().expect("a publish brings its entry");
        let executor = &self.inner.executor;
        executor.route(entry.tenant(), entry.key(), *meta, executor.epoch())
    }

    /// Completes `entry` for `routing` and pushes it; a refused push
    /// leaves it where it is.
    #[inline(always)]
    fn push_entry(
        &self,
        entry: &mut Option<RingEntry>,
        routing: &Routing,
        tracker: Option<Arc<Tracker>>,
        on_full: OnFull,
        when_closed: WhenClosed,
    ) -> Result<Place, PublishError<()>> {
        let mut lineage = entry
            .as_mut()
            .expect("a publish brings its entry")
            .complete(routing, tracker);
        let pushed = self
            .inner
            .executor
            .push((entry, &mut lineage), on_full, when_closed);
        if pushed.is_ok() {
            // Taken with the entry. Not dropped: see "Store forwarding" in
            // `Bus::send`.
            debug_assert!(lineage.is_none());
            std::mem::forget(lineage);
        }
        pushed
    }

    /// The executor, for the async adapter.
    pub(crate) fn executor(&self) -> &Executor {
        &self.inner.executor
    }

    /// The runtime async handlers run on.
    #[cfg(not(diana_bus_loom))]
    pub(crate) fn runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.inner.runtime.as_ref()
    }

    /// A handle that does not keep the bus alive (for async handlers,
    /// which the bus itself holds).
    #[cfg(not(diana_bus_loom))]
    pub(crate) fn downgrade(&self) -> WeakBus {
        WeakBus(Arc::downgrade(&self.inner))
    }

    /// The bus, for an async handler's context: it does not keep the bus
    /// open (its clones do), and while the run lasts (`to` is true) its
    /// publishes and its clones' pass the backlog gate.
    #[cfg(not(diana_bus_loom))]
    pub(crate) fn lent(&self, to: &RunLasts) -> Bus {
        Bus {
            owners: None,
            inner: Arc::clone(&self.inner),
            lent_to: Some(to.clone()),
        }
    }

    /// Lets a publish through the backlog gate, then takes a unit of its
    /// tenant's quota, waiting for them or not as `on_full` says.
    fn admit(
        &self,
        tenant: TenantId,
        parent: Option<&Routing>,
        on_full: OnFull,
    ) -> Result<(), PublishError<()>> {
        let executor = &self.inner.executor;
        if executor.gate.is_raised() {
            self.pass_gate(parent, on_full)?;
        }
        if let Some(quota) = &executor.quota {
            self.take_budget(quota, tenant, on_full == OnFull::Wait)
                .map_err(|over| match over {
                    Over::Limit => PublishError::QuotaExceeded(()),
                    Over::Closed => PublishError::Closed(()),
                })?;
        }
        Ok(())
    }

    /// A root publish at the raised backlog gate (see
    /// `reliability::backlog`): waits for it to be lowered, or is refused,
    /// as `on_full` says. A follow-up, a publish from a handler's code or
    /// through a handler's handle pass: the runs the gate waits for may be
    /// waiting for them. So does a blocking publish that could hold up the
    /// runs themselves (see [`Bus::may_block_for_runs`]).
    #[cold]
    fn pass_gate(&self, parent: Option<&Routing>, on_full: OnFull) -> Result<(), PublishError<()>> {
        let executor = &self.inner.executor;
        let lent_to_a_run = self
            .lent_to
            .as_ref()
            .is_some_and(|lasts| lasts.load(std::sync::atomic::Ordering::Relaxed));
        if parent.is_some() || lent_to_a_run || executor.in_handler() {
            return Ok(());
        }
        match on_full {
            OnFull::Wait if !self.may_block_for_runs() => Ok(()),
            OnFull::Wait => executor
                .gate
                .wait(|| executor.is_closed())
                .map_err(|Closed| PublishError::Closed(())),
            OnFull::Refuse | OnFull::Retry => Err(PublishError::Backlogged(())),
        }
    }

    /// Whether this thread may block until async runs have started. Not on
    /// a thread in a tokio runtime's context, which may be one that the
    /// runs need; nor anywhere when the bus's runtime is a current-thread
    /// one, whose runs go on only while its thread drives it, and that
    /// thread may be this one, between two `block_on`s.
    fn may_block_for_runs(&self) -> bool {
        #[cfg(not(diana_bus_loom))]
        {
            use tokio::runtime::{Handle, RuntimeFlavor};
            let current_thread = self
                .runtime()
                .is_some_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::CurrentThread);
            !current_thread && Handle::try_current().is_err()
        }
        #[cfg(diana_bus_loom)]
        true
    }

    /// One unit of `tenant`'s quota: waits for it with `block`, except on a
    /// worker thread, which takes it even over the limit (it cannot wait
    /// for itself).
    #[cold]
    fn take_budget(&self, quota: &TenantQuota, tenant: TenantId, block: bool) -> Result<(), Over> {
        if quota.try_take(tenant) {
            return Ok(());
        }
        let executor = &self.inner.executor;
        if !block {
            return Err(Over::Limit);
        }
        if executor.current_worker().is_some() {
            quota.take_anyway(tenant);
            return Ok(());
        }
        quota.take_waiting(tenant, || executor.is_closed())
    }

    /// Returns when every event accepted before the call, and everything
    /// their handlers published through `ctx` (transitively), is fully
    /// handled. Called from a handler it returns at once (the handler's own
    /// event cannot be settled from inside it).
    ///
    /// Events published meanwhile by other threads do not hold up its
    /// first round; if its events have follow-ups, a further round waits
    /// for all that was accepted by then, and a follow-up chain of events
    /// published after the call may hold it up while another thread's
    /// flush waits for that chain (follow-ups are counted against the
    /// latest flush). See "Flush" in the README.
    pub fn flush(&self) {
        self.inner.executor.flush();
    }

    /// The counters, summed over the workers.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.executor.snapshot()
    }

    /// A copy of the dead letters, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inner.executor.dead_letters.list()
    }

    /// Removes and returns the dead letters, oldest first.
    pub fn take_dead_letters(&self) -> Vec<DeadLetter> {
        self.inner.executor.dead_letters.take_all()
    }

    /// Runs the failed handler of each dead letter that `filter` selects
    /// again, as a fresh series of attempts under its retry policy (only
    /// that handler: the ones that succeeded do not see the event again).
    /// The letters leave the store; a letter whose subscription is gone
    /// stays. Returns how many were replayed; `flush` waits for them.
    /// `filter` runs outside the store's lock, on copies: it may read the
    /// store, and if it panics, no letter has left.
    pub fn replay_dead_letters(&self, mut filter: impl FnMut(&DeadLetter) -> bool) -> usize {
        let executor = &self.inner.executor;
        if executor.is_closed() {
            return 0;
        }
        let chosen = executor.dead_letters.choose(|letter| {
            letter.subscriber().is_some_and(|s| !s.is_unsubscribed()) && filter(letter)
        });
        executor.replay(&chosen)
    }

    /// Whether the bus was shut down.
    pub fn is_closed(&self) -> bool {
        self.inner.executor.is_closed()
    }

    /// Stops accepting events, handles every accepted one, joins the
    /// workers. Safe to call more than once, and from any clone.
    pub fn shutdown(&self) -> ShutdownReport {
        Inner::shutdown(&self.inner, false)
    }
}

impl Inner {
    /// Closes the bus and drains it: here, or on a helper thread when
    /// called from a handler (which the drain would wait for), from a
    /// waker on a timer thread (which keeps the deadlines of the async
    /// runs the drain may wait for) or when `off_thread` says so. The
    /// helper holds the bus, so the async runs the drain waits for can
    /// still reach it.
    fn shutdown(inner: &Arc<Inner>, off_thread: bool) -> ShutdownReport {
        let executor = &inner.executor;
        if executor.close() {
            tracing::info!("diana-bus shutting down");
        }
        let workers = std::mem::take(&mut *lock(&inner.workers));
        let joined = if off_thread || executor.must_not_wait() {
            if !workers.is_empty() {
                let inner = Arc::clone(inner);
                thread::spawn(move || finish(&inner.executor, workers));
            }
            false
        } else {
            // Another call may have taken the workers: it joins them.
            let joined = !workers.is_empty();
            finish(executor, workers);
            joined
        };
        let metrics = executor.snapshot();
        ShutdownReport {
            published: metrics.published,
            delivered: metrics.delivered,
            failed: metrics.failed,
            dead_lettered: metrics.dead_lettered,
            rejected: metrics.rejected,
            joined,
        }
    }
}

/// Drains a closed bus, stops its workers and joins them, then lets go of
/// its subscribers (see `Registry::clear`).
fn finish(executor: &Executor, workers: Vec<thread::JoinHandle<()>>) {
    executor.flush();
    executor.stop();
    for worker in workers {
        if worker.join().is_err() {
            tracing::error!("a diana-bus worker thread panicked outside a handler");
        }
    }
    executor.registry.clear();
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let config = self.inner.executor.config();
        f.debug_struct("Bus")
            .field("workers", &config.workers)
            .field("shards", &config.shards)
            .field("capacity", &config.capacity)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Options for one subscription; from [`Bus::subscriber`].
pub struct SubscriberBuilder<'b, E> {
    bus: &'b Bus,
    name: Option<String>,
    tenant: Option<TenantId>,
    stage: u32,
    retry: RetryPolicy,
    strict_order: bool,
    concurrency: usize,
    backlog: Option<usize>,
    event: PhantomData<fn(&E)>,
}

impl<E: Event> SubscriberBuilder<'_, E> {
    /// The name in logs, metrics and dead letters (default, and for an
    /// empty name, `"Event#id"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only events of this tenant reach the handler.
    pub fn tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// The handlers of one event run in ascending stage order (default 0;
    /// equal stages run in subscription order).
    pub fn stage(mut self, stage: u32) -> Self {
        self.stage = stage;
        self
    }

    /// How failed runs are retried (default [`RetryPolicy::none`]: a
    /// failure goes straight to the dead letters).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// With strict order, while this handler's run on an event is being
    /// retried, later events of the same (tenant, key) wait behind it, for
    /// every subscription, so this handler sees one key's events strictly
    /// in order, retries included. The default (false) lets them pass: a
    /// slow retry then holds up nothing, and the retried run comes after
    /// later events of its key (unless handlers of a later stage follow
    /// for the event: they wait for it, and so does its key).
    pub fn strict_order(mut self, strict: bool) -> Self {
        self.strict_order = strict;
        self
    }

    /// For async handlers: how many runs of this subscription may be in
    /// flight at once (default 16), over all keys; one key's runs never
    /// overlap. A run is in flight until it succeeds or gives up, its
    /// retry pauses included: a run waiting out a long pause holds its
    /// place.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit;
        self
    }

    /// For async handlers: how many runs may wait to start (for a slot of
    /// `concurrency`, or for their key) before the bus holds back its
    /// publishers (default: as many as the rings hold, shards times
    /// capacity). Over it, root publishes wait until no more than half the
    /// backlog still wait ([`Backpressure::Block`], [`Bus::publish_async`]),
    /// or are refused with [`PublishError::Backlogged`]
    /// ([`Backpressure::Reject`], [`Bus::try_publish`]); the bound is soft
    /// by the events already accepted. What the runs may wait for is not held back (follow-ups,
    /// handlers' own publishes, blocking publishes on a runtime's thread,
    /// or anywhere with a current-thread runtime): see "Backpressure from
    /// async handlers" in the README.
    pub fn backlog(mut self, runs: usize) -> Self {
        self.backlog = Some(runs);
        self
    }

    /// Subscribes `handler` with these options.
    pub fn subscribe<F>(self, handler: F) -> Subscription
    where
        F: Fn(&E, &Context<'_>) -> HandlerResult + Send + Sync + 'static,
    {
        self.subscribe_erased(None, move |event, ctx| handler(event, ctx))
    }

    /// The bus, and the options' concurrency limit and backlog.
    #[cfg(not(diana_bus_loom))]
    pub(crate) fn async_parts(&self) -> (&Bus, usize, usize) {
        let backlog = self
            .backlog
            .unwrap_or(self.bus.shards() * self.bus.capacity());
        (self.bus, self.concurrency, backlog)
    }

    /// Files `handler` under `E`'s TypeId with these options; an async
    /// handler comes as `start` instead (and a `handler` never called).
    pub(crate) fn subscribe_erased(
        self,
        start: Option<AsyncStart>,
        handler: impl Fn(&E, &Context<'_>) -> HandlerResult + Send + Sync + 'static,
    ) -> Subscription {
        let options = SubscriberOptions {
            type_id: std::any::TypeId::of::<E>(),
            event_name: short_type_name::<E>(),
            name: self.name,
            tenant: self.tenant,
            stage: self.stage,
            retry: self.retry,
            strict_order: self.strict_order,
            start,
        };
        // The registry files this handler under `E`'s TypeId, so the
        // downcast always succeeds. It reads that TypeId from beside the
        // handler's captures, a line the call reads anyway.
        let of = TypeIdOf::<E>::new();
        let erased = Box::new(move |payload: &Payload, ctx: &Context<'_>| {
            payload
                .downcast_ref_by(&of)
                .map_or(Ok(()), |event| handler(event, ctx))
        });
        self.bus.inner.executor.registry.insert(options, erased)
    }
}

impl<E> std::fmt::Debug for SubscriberBuilder<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberBuilder")
            .field("event", &short_type_name::<E>())
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .field("stage", &self.stage)
            .field("retry", &self.retry)
            .finish()
    }
}
