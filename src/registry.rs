//! The subscriber tables: `TypeId` to the handlers of that event type,
//! sharded by type, each shard an immutable [`Table`] behind an arc-swap
//! cell.
//!
//! # Protocol
//!
//! - Readers (workers) load a shard's table once per batch and never lock.
//! - Writers (subscribe, unsubscribe) serialise on `write`, copy the shard's
//!   table, change the copy and store it. A worker that loaded the old table
//!   keeps using it until its batch ends.
//! - Unsubscribing sets the subscriber's `unsubscribed` flag *before* it
//!   stores the table without it; workers check the flag before every call.
//!   The flag and the table stop new batches and later calls in running
//!   batches; what is left, a call already running, is waited out by the
//!   executor's batch quiescence (see `executor`), which is why the flag is
//!   read after the batch's `SeqCst` fence.
//!
//! Handlers of one type are kept sorted by (stage, subscription order), so a
//! worker runs them in stage order by walking the list.

use std::any::TypeId;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use smallvec::SmallVec;

use crate::context::Context;
use crate::envelope::Envelope;
use crate::error::HandlerResult;
use crate::event::TenantId;
use crate::executor::Executor;
use crate::payload::Payload;
use crate::reliability::retry::RetryPolicy;
use crate::reliability::schedule::Continuation;
use crate::sync::{lock, Arc, ArcCell, AtomicBool, AtomicU64, Mutex, Ordering, Snapshot};

#[cfg(not(diana_bus_loom))]
const TABLE_SHARDS: usize = 16;
#[cfg(diana_bus_loom)]
const TABLE_SHARDS: usize = 2;

/// A type-erased handler: downcasts the payload and calls the user's code.
pub(crate) type ErasedHandler = Box<dyn Fn(&Payload, &Context<'_>) -> HandlerResult + Send + Sync>;

/// An async subscription's side on the runtime (see `async_api::handler`).
pub(crate) trait AsyncRunner: Send + Sync {
    /// Starts one run of the handler, or queues it; raises the executor's
    /// backlog gate if too many wait (see `reliability::backlog`).
    fn start(&self, run: AsyncRun, executor: &Executor);
    /// The subscription was removed: runs waiting out a retry pause end
    /// now, unretried, and so do the runs not yet started.
    fn unsubscribed(&self, executor: &Executor);
}

/// Starts an async handler's runs on the runtime.
pub(crate) type AsyncStart = Box<dyn AsyncRunner>;

/// One run of an async handler, as a worker hands it over: the event (held
/// open until the run ends), which attempt, and what waits for its end.
// The loom build leaves out async handlers, which read it.
#[cfg_attr(diana_bus_loom, allow(dead_code))]
pub(crate) struct AsyncRun {
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) subscriber: Arc<Subscriber>,
    pub(crate) attempt: u32,
    pub(crate) then: Option<Arc<Continuation>>,
}

/// One subscription as the workers see it.
///
/// Laid out for the worker's call: what it reads on every call (the
/// handler, whether it is async, the tenant filter, the stage and the
/// unsubscribed flag) comes first, and the struct is cache-line aligned,
/// so that is one line; the rest (read on failures, in logs) follows.
/// With many event types, where each event meets a different subscriber,
/// that line is a cache miss per call: callgrind's cache simulation of
/// the `types` profile with 1,000 types counts 14.4 first-level data
/// misses per event on the worker this way, 15.7 with the fields where
/// the compiler put them.
#[repr(C, align(64))]
pub struct Subscriber {
    pub(crate) handler: ErasedHandler,
    /// An async handler's start: the workers hand it the run instead of
    /// calling `handler` (see `async_api::handler`).
    pub(crate) start: Option<AsyncStart>,
    pub(crate) tenant: Option<TenantId>,
    pub(crate) stage: u32,
    unsubscribed: AtomicBool,
    pub(crate) strict_order: bool,
    pub(crate) id: u64,
    /// std's `Arc` even under loom: a name is shared, never synchronised.
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) retry: RetryPolicy,
}

impl Subscriber {
    /// Whether this subscriber takes events of `tenant`.
    #[inline(always)]
    pub(crate) fn accepts(&self, tenant: TenantId) -> bool {
        self.tenant.is_none_or(|t| t == tenant)
    }

    /// Whether `unsubscribe` has begun for it; checked before every call.
    #[inline(always)]
    pub fn is_unsubscribed(&self) -> bool {
        self.unsubscribed.load(Ordering::Relaxed)
    }
}

impl Drop for Subscriber {
    /// Drops the handler and what it captured. The last reference can be
    /// a worker's table snapshot, let go at the end of a batch on a worker
    /// thread, which must go on: a panic there is logged and goes no
    /// further.
    fn drop(&mut self) {
        let noop: ErasedHandler = Box::new(|_: &Payload, _: &Context<'_>| Ok(()));
        let handler = std::mem::replace(&mut self.handler, noop);
        let start = self.start.take();
        crate::caught::contain(
            format_args!("handler {} panicked on drop", self.name),
            move || drop((handler, start)),
        );
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .field("stage", &self.stage)
            .field("retry", &self.retry)
            .finish()
    }
}

/// A handle to one subscription, for [`crate::Bus::unsubscribe`].
///
/// It is only an id: cloning, sending or dropping it does nothing to the
/// subscription.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subscription {
    pub(crate) id: u64,
    /// The tag of its bus.
    bus: u64,
    pub(crate) type_id: TypeId,
    pub(crate) name: String,
}

impl Subscription {
    /// The subscription's name: the one given, or `"EventName#id"`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Hashes a `TypeId` by the 64 bits it writes, which are already a hash.
#[derive(Default)]
pub(crate) struct TypeIdHasher(u64);

impl Hasher for TypeIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type TypeMap<V> = HashMap<TypeId, V, BuildHasherDefault<TypeIdHasher>>;

/// A number for each event type ever subscribed to on a bus: dense from
/// 0, kept when the type's last subscriber goes, never reused. Workers
/// find a type's counter row by it (see `metrics::Counter`), which the
/// handler lookup brings along, instead of a hash lookup of their own.
pub(crate) type TypeNumber = u32;

/// The handlers of one event type, sorted by (stage, id), and its number.
#[derive(Clone, Debug)]
pub(crate) struct TypeEntry {
    pub(crate) number: TypeNumber,
    pub(crate) handlers: SmallVec<[Arc<Subscriber>; 4]>,
}

/// The handlers of one shard's event types.
#[derive(Default, Debug)]
pub struct Table {
    by_type: TypeMap<TypeEntry>,
}

impl Table {
    /// The handlers of `type_id`, in the order they run.
    #[inline]
    pub fn handlers(&self, type_id: TypeId) -> &[Arc<Subscriber>] {
        self.entry(type_id).map_or(&[], |entry| &entry.handlers)
    }

    /// `type_id`'s entry, if it has subscribers.
    #[inline]
    pub(crate) fn entry(&self, type_id: TypeId) -> Option<&TypeEntry> {
        self.by_type.get(&type_id)
    }
}

/// What the registry's writers share under its lock.
#[derive(Default)]
struct Writers {
    numbers: TypeMap<TypeNumber>,
    /// Set by [`Registry::clear`]: the bus is shut down, and no
    /// subscriber is filed again.
    cleared: bool,
}

/// The sharded subscriber tables.
pub struct Registry {
    shards: [ArcCell<Table>; TABLE_SHARDS],
    /// Serialises the writers; holds every type's number, and whether the
    /// tables were cleared for good.
    write: Mutex<Writers>,
    next_id: AtomicU64,
    /// The tag of the bus it belongs to (see `place::next_bus_tag`), which
    /// its subscriptions carry: ids are counted per registry.
    bus: u64,
}

impl Registry {
    /// The registry of the bus tagged `bus`.
    pub(crate) fn new(bus: u64) -> Self {
        Registry {
            shards: std::array::from_fn(|_| ArcCell::new(Table::default())),
            write: Mutex::new(Writers::default()),
            next_id: AtomicU64::new(1),
            bus,
        }
    }
}

/// Which table shard holds `type_id`.
#[inline(always)]
pub(crate) fn table_shard(type_id: TypeId) -> usize {
    let mut h = TypeIdHasher::default();
    std::hash::Hash::hash(&type_id, &mut h);
    (h.finish() as usize) & (TABLE_SHARDS - 1)
}

/// The tables a worker loaded during one batch: at most one load per
/// shard, on first use.
pub(crate) struct TableCache<'r> {
    registry: &'r Registry,
    loaded: [OnceCell<Snapshot<Table>>; TABLE_SHARDS],
}

impl<'r> TableCache<'r> {
    pub(crate) fn new(registry: &'r Registry) -> Self {
        TableCache {
            registry,
            loaded: std::array::from_fn(|_| OnceCell::new()),
        }
    }

    /// `type_id`'s entry, from this batch's snapshot of its shard.
    #[inline]
    pub(crate) fn entry(&self, type_id: TypeId) -> Option<&TypeEntry> {
        let shard = table_shard(type_id);
        self.loaded[shard]
            .get_or_init(|| self.registry.shards[shard].load())
            .entry(type_id)
    }
}

/// What [`Registry::insert`] needs besides the handler.
pub(crate) struct SubscriberOptions {
    pub(crate) type_id: TypeId,
    pub(crate) event_name: &'static str,
    pub(crate) name: Option<String>,
    pub(crate) tenant: Option<TenantId>,
    pub(crate) stage: u32,
    pub(crate) retry: RetryPolicy,
    pub(crate) strict_order: bool,
    pub(crate) start: Option<AsyncStart>,
}

impl Registry {
    /// Adds a subscriber; workers see it from their next batch on. After
    /// [`Registry::clear`] it is dropped instead (after the lock is let
    /// go: its drop is user code): nothing would ever call it, and what it
    /// holds, a handle of its own bus among them, would be kept as long as
    /// the bus's memory, which that handle keeps.
    pub(crate) fn insert(
        &self,
        options: SubscriberOptions,
        handler: ErasedHandler,
    ) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name = match options.name {
            Some(name) if !name.is_empty() => name,
            _ => format!("{}#{id}", options.event_name),
        };
        let subscriber = Arc::new(Subscriber {
            id,
            name: name.as_str().into(),
            tenant: options.tenant,
            stage: options.stage,
            retry: options.retry,
            strict_order: options.strict_order,
            start: options.start,
            unsubscribed: AtomicBool::new(false),
            handler,
        });
        let mut pending = Some(subscriber);
        self.update(options.type_id, true, |handlers| {
            if let Some(subscriber) = pending.take() {
                let at = handlers.partition_point(|h| (h.stage, h.id) < (subscriber.stage, id));
                handlers.insert(at, subscriber);
            }
        });
        drop(pending);
        Subscription {
            id,
            bus: self.bus,
            type_id: options.type_id,
            name,
        }
    }

    /// Flags the subscriber and removes it from its table; returns it, or
    /// `None` if it was already gone. The caller waits out running calls.
    pub(crate) fn remove(&self, subscription: &Subscription) -> Option<Arc<Subscriber>> {
        if subscription.bus != self.bus {
            return None; // another bus's
        }
        let mut removed = None;
        self.update(subscription.type_id, false, |handlers| {
            if let Some(at) = handlers.iter().position(|h| h.id == subscription.id) {
                let subscriber = handlers.remove(at);
                // Set before the new table is stored (and both before the
                // caller's fence): a worker that still holds the old table
                // sees the flag once it has passed its own batch fence.
                subscriber.unsubscribed.store(true, Ordering::Relaxed);
                removed = Some(subscriber);
            }
        });
        removed
    }

    /// The names of the live subscriptions to `type_id` that see events
    /// of `tenant` (shared, not copied).
    pub(crate) fn names(&self, type_id: TypeId, tenant: TenantId) -> Vec<std::sync::Arc<str>> {
        self.shards[table_shard(type_id)]
            .load()
            .handlers(type_id)
            .iter()
            .filter(|s| s.accepts(tenant))
            .map(|s| std::sync::Arc::clone(&s.name))
            .collect()
    }

    /// The number of live subscriptions to `type_id`.
    pub(crate) fn count(&self, type_id: TypeId) -> usize {
        self.shards[table_shard(type_id)]
            .load()
            .handlers(type_id)
            .len()
    }

    /// Removes every subscriber, once the bus is drained and its workers
    /// stopped: a handler that holds a handle of its own bus (or anything
    /// else) lets go of it, which breaks the cycle through the bus that
    /// would keep its memory and timer thread. The tables are dropped
    /// after the writers' lock is let go: a handler's drop is user code,
    /// and may drop the bus.
    pub(crate) fn clear(&self) {
        let cleared: Vec<_> = {
            let mut writers = lock(&self.write);
            writers.cleared = true;
            self.shards
                .iter()
                .map(|cell| {
                    let old = cell.load_full();
                    cell.store(Arc::new(Table::default()));
                    old
                })
                .collect()
        };
        drop(cleared);
    }

    /// Changes the handlers of `type_id` in a copy of its table shard and
    /// stores the copy. A type without subscribers gets an entry (and its
    /// number, the first time) only when `create` says so: a removal of
    /// what is not there changes nothing. After [`Registry::clear`],
    /// nothing is created: `change` is not called.
    fn update(
        &self,
        type_id: TypeId,
        create: bool,
        change: impl FnOnce(&mut SmallVec<[Arc<Subscriber>; 4]>),
    ) {
        let mut writers = lock(&self.write);
        if create && writers.cleared {
            return;
        }
        let numbers = &mut writers.numbers;
        let cell = &self.shards[table_shard(type_id)];
        let current = cell.load_full();
        if !create && current.entry(type_id).is_none() {
            return;
        }
        let mut by_type = current.by_type.clone();
        let entry = by_type.entry(type_id).or_insert_with(|| {
            let next = numbers.len();
            let number = *numbers.entry(type_id).or_insert_with(|| {
                TypeNumber::try_from(next).expect("fewer than 2^32 event types")
            });
            TypeEntry {
                number,
                handlers: SmallVec::new(),
            }
        });
        change(&mut entry.handlers);
        if entry.handlers.is_empty() {
            by_type.remove(&type_id);
        }
        cell.store(Arc::new(Table { by_type }));
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(diana_bus_loom)))]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    fn subscribe<E: 'static>(registry: &Registry) -> Subscription {
        let options = SubscriberOptions {
            type_id: TypeId::of::<E>(),
            event_name: "E",
            name: None,
            tenant: None,
            stage: 0,
            retry: RetryPolicy::none(),
            strict_order: false,
            start: None,
        };
        registry.insert(options, Box::new(|_: &Payload, _: &Context<'_>| Ok(())))
    }

    fn number_of<E: 'static>(registry: &Registry) -> Option<TypeNumber> {
        TableCache::new(registry)
            .entry(TypeId::of::<E>())
            .map(|entry| entry.number)
    }

    #[test]
    fn a_type_keeps_its_number_while_its_subscribers_come_and_go() {
        let registry = Registry::new(1);
        let first = subscribe::<u8>(&registry);
        subscribe::<u16>(&registry);
        let (a, b) = (number_of::<u8>(&registry), number_of::<u16>(&registry));
        assert_eq!((a, b), (Some(0), Some(1)));
        registry.remove(&first);
        assert_eq!(number_of::<u8>(&registry), None, "no subscribers, no entry");
        // Removing what is not there numbers nothing.
        let stranger = subscribe::<u64>(&Registry::new(2));
        assert!(registry.remove(&stranger).is_none());
        subscribe::<u32>(&registry);
        subscribe::<u8>(&registry);
        assert_eq!(number_of::<u8>(&registry), a);
        assert_eq!(number_of::<u32>(&registry), Some(2));
    }

    #[test]
    fn a_subscription_of_another_bus_removes_nothing() {
        let (ours, theirs) = (Registry::new(1), Registry::new(2));
        let kept = subscribe::<u8>(&ours);
        let stranger = subscribe::<u8>(&theirs);
        assert_eq!((kept.id, stranger.id), (1, 1), "ids are per registry");
        assert!(ours.remove(&stranger).is_none());
        assert_eq!(ours.count(TypeId::of::<u8>()), 1);
        assert!(ours.remove(&kept).is_some());
    }

    #[test]
    fn what_a_call_reads_of_its_subscriber_is_one_cache_line() {
        assert_eq!(align_of::<Subscriber>(), 64);
        let hot_end = [
            offset_of!(Subscriber, handler) + size_of::<ErasedHandler>(),
            offset_of!(Subscriber, start) + size_of::<Option<AsyncStart>>(),
            offset_of!(Subscriber, tenant) + size_of::<Option<TenantId>>(),
            offset_of!(Subscriber, stage) + size_of::<u32>(),
            offset_of!(Subscriber, unsubscribed) + size_of::<AtomicBool>(),
        ]
        .into_iter()
        .max();
        assert!(
            hot_end <= Some(64),
            "the per-call fields end at {hot_end:?}"
        );
    }
}
