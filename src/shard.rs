//! One shard: a ring of envelopes, the claim that lets one worker at a time
//! drain it, and the overflow queue that keeps `ctx.publish` from ever
//! waiting on a full ring.
//!
//! # Ownership and claims
//!
//! Shard `s` is owned by worker `s % workers`, which is the one woken when
//! an event arrives. Any worker drains a shard only while holding its claim
//! (`claimed`, taken with an Acquire CAS, released with a Release store), so
//! the ring has one consumer at a time, as it requires (see `ring`), and
//! a shard's events are handled by one thread at a time, in ring order:
//! that, and one (tenant, key) mapping to one shard, is per-key order. An
//! idle worker may claim another's shard when its backlog is at least a
//! batch (the batch's last event is published); after releasing such a
//! claim it fences and wakes the owner if events arrived meanwhile,
//! because the owner may have parked seeing the shard claimed.
//!
//! # Overflow
//!
//! A handler's publish (and a blocking publish made on a worker thread)
//! must not wait for ring space: the worker it would wait for may be
//! itself. When the ring is full, the envelope goes to `overflow` instead,
//! tagged with the ring's `pushed()` position at that moment. The claimer
//! takes an overflow envelope only once the ring's head has reached its
//! tag, so every ring event pushed before it is handled before it; and
//! while the overflow queue is not empty, workers put their follow-ups
//! there too (checked under its lock), so a publisher's later events never
//! overtake its earlier ones.
//!
//! # Held keys
//!
//! While an event's later stages wait for an earlier stage's retries, or a
//! `strict_order` subscription retries an event, that event's (tenant, key)
//! is *held*: the shard's later events of the key are not dispatched but
//! queued here, whole and in order, and released one by one when the
//! holding event's series ends (see `executor`). `held_keys` lets the
//! dispatch path skip the lock while nothing is held.
//!
//! # Progress counters (for `flush` and `Meta::after`)
//!
//! `completed` is the ring position up to which every event's batch has
//! ended, and `overflow_done` the number of overflow envelopes whose batch
//! has ended; only the claimer writes them, after the handlers ran (and
//! after any hold of an event that is not fully handled yet was taken, see
//! `completion`). An event's place (`place`) is its ring position, or its
//! overflow sequence number, so one comparison tells whether the shard has
//! passed it.
//!
//! # Waiters on places the shard has not passed
//!
//! `awaiting` keeps them, `awaiting_len` lets the claimer skip its lock
//! while there are none. A waiter is pushed, then (SeqCst fence) the
//! progress re-checked; the claimer stores progress, then (SeqCst fence,
//! the one after each batch) reads `awaiting_len`. So either the claimer
//! sees the waiter and hands it on, or the waiter sees the progress and
//! hands itself on: `take_due` under the lock makes sure only one does.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use crate::envelope::{Envelope, Lineage, RingEntry, Seed, SlotEvent};
use crate::event::{EventId, TenantId};
use crate::park::WaitQueue;
use crate::place::{Place, OVERFLOW};
use crate::reliability::completion::Waiter;
use crate::ring::{PushError, Ring};
use crate::sync::{
    fence, lock, Arc, AtomicBool, AtomicU64, AtomicUsize, CachePadded, Mutex, Ordering,
};

/// See the module docs.
#[derive(Debug)]
pub struct Shard {
    index: usize,
    /// The bus's tag, for the ids generated from places (see `place`).
    tag: u64,
    /// The worker woken for this shard's events (shard number modulo the
    /// workers, worked out once: publishes look it up).
    pub(crate) owner: usize,
    pub(crate) ring: Ring<RingEntry, Option<Lineage>>,
    claimed: CachePadded<AtomicBool>,
    overflow: Mutex<VecDeque<(usize, Envelope)>>,
    overflow_len: AtomicUsize,
    overflow_pushed: AtomicU64,
    overflow_done: AtomicU64,
    completed: AtomicU64,
    /// Publishers blocked on a full ring.
    pub(crate) space: WaitQueue,
    /// Publishes refused (full or closed).
    pub(crate) rejected: AtomicU64,
    held: Mutex<HeldKeys>,
    held_keys: AtomicUsize,
    awaiting: Mutex<Vec<(u64, Waiter)>>,
    awaiting_len: AtomicUsize,
}

/// Why a seed's entry is there: a push takes it only once accepted.
const TAKEN_ONCE: &str = "a seed's entry is taken only by the push that accepts it";

/// Each held (tenant, key), with the events queued behind it, in order.
type HeldKeys = HashMap<(TenantId, u64), VecDeque<Arc<Envelope>>>;

/// Where the shard's progress stood at one moment: what `flush` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    ring: u64,
    overflow: u64,
}

impl Shard {
    /// Shard number `index` of the bus tagged `tag`, woken on worker
    /// `owner`.
    pub(crate) fn new(index: usize, tag: u64, owner: usize, capacity: usize) -> Self {
        Shard {
            index,
            tag,
            owner,
            ring: Ring::new(capacity),
            claimed: CachePadded(AtomicBool::new(false)),
            overflow: Mutex::new(VecDeque::new()),
            overflow_len: AtomicUsize::new(0),
            overflow_pushed: AtomicU64::new(0),
            overflow_done: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            space: WaitQueue::default(),
            rejected: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
            held_keys: AtomicUsize::new(0),
            awaiting: Mutex::new(Vec::new()),
            awaiting_len: AtomicUsize::new(0),
        }
    }

    /// Whether (tenant, key) is held; no lock while nothing is held.
    #[inline]
    pub(crate) fn is_held(&self, tenant: TenantId, key: u64) -> bool {
        self.held_keys.load(Ordering::Acquire) > 0 && lock(&self.held).contains_key(&(tenant, key))
    }

    /// Holds (tenant, key), if it is not held already.
    pub(crate) fn hold(&self, tenant: TenantId, key: u64) {
        let mut held = lock(&self.held);
        if let Entry::Vacant(slot) = held.entry((tenant, key)) {
            slot.insert(VecDeque::new());
            self.held_keys.fetch_add(1, Ordering::Release);
        }
    }

    /// Queues `envelope` behind its held key; gives it back if the key was
    /// released meanwhile (then it is next in line and can run).
    pub(crate) fn defer(&self, envelope: Arc<Envelope>) -> Result<(), Arc<Envelope>> {
        let routing = &envelope.routing;
        match lock(&self.held).get_mut(&(routing.tenant, routing.key)) {
            Some(queue) => {
                queue.push_back(envelope);
                Ok(())
            }
            None => Err(envelope),
        }
    }

    /// The next queued event of a held key whose holder is done; when none
    /// is left, the key is released.
    pub(crate) fn next_held(&self, tenant: TenantId, key: u64) -> Option<Arc<Envelope>> {
        let mut held = lock(&self.held);
        let queue = held.get_mut(&(tenant, key))?;
        let next = queue.pop_front();
        if next.is_none() {
            held.remove(&(tenant, key));
            self.held_keys.fetch_sub(1, Ordering::Release);
        }
        next
    }

    /// Takes the claim, if free.
    #[inline]
    pub(crate) fn try_claim(&self) -> bool {
        !self.claimed.load(Ordering::Relaxed)
            && self
                .claimed
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Gives the claim back.
    #[inline]
    pub(crate) fn release(&self) {
        self.claimed.store(false, Ordering::Release);
    }

    pub(crate) fn is_claimed(&self) -> bool {
        self.claimed.load(Ordering::Relaxed)
    }

    /// Whether events are waiting (in the ring or the overflow), counting
    /// a push still being written: what the sleeper protocol checks.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        !self.ring.is_empty() || self.overflow_len.load(Ordering::Relaxed) > 0
    }

    /// Whether an event is ready to pop (published in the ring, or in the
    /// overflow): what a worker polls while it streams. Unlike
    /// [`Shard::has_pending`] it does not read the ring's `tail`, which
    /// every publish writes; each read of it would cost the next publish a
    /// cache miss.
    #[inline]
    pub(crate) fn has_published(&self) -> bool {
        self.ring.is_published(0) || self.overflow_len.load(Ordering::Relaxed) > 0
    }

    /// Events accepted into this shard so far (ring and overflow).
    pub(crate) fn accepted(&self) -> u64 {
        self.ring.pushed() as u64 + self.overflow_pushed.load(Ordering::Relaxed)
    }

    /// Pushes `seed` into the ring and returns its place: the entry moves
    /// into the slot, the lineage to the slot's side entry, and an explicit
    /// id to `record_explicit` before any worker can see the event. A
    /// refused seed comes back with both still in it. `refuse_when_closed`
    /// as for [`Ring::push_with`].
    #[inline(always)]
    pub(crate) fn push<'l>(
        &self,
        seed: Seed<'l>,
        record_explicit: impl FnOnce(TenantId, EventId, Place),
        refuse_when_closed: bool,
    ) -> Result<Place, PushError<Seed<'l>>> {
        self.ring
            .push_with(
                seed,
                |(entry, lineage), pos, side| {
                    if let Some(lineage) = lineage.take() {
                        if let Some(id) = lineage.explicit_id() {
                            let tenant = entry.as_ref().expect(TAKEN_ONCE).tenant();
                            record_explicit(tenant, id, Place::ring(self.index, pos));
                        }
                        *side = Some(lineage);
                    }
                    entry.take().expect(TAKEN_ONCE)
                },
                refuse_when_closed,
            )
            .map(|pos| Place::ring(self.index, pos))
    }

    /// For the claimer: lends up to `max` events to `visit`, each where it
    /// lies in the ring (see [`SlotEvent`]), then frees their slots;
    /// returns how many.
    ///
    /// # Safety
    ///
    /// The caller holds the claim ([`Shard::try_claim`]): the ring has one
    /// consumer at a time, and the claim's Release/Acquire orders each
    /// claimer's pops after the last one's.
    #[inline]
    pub(crate) unsafe fn pop_in_place(
        &self,
        max: usize,
        mut visit: impl FnMut(SlotEvent<'_>),
    ) -> usize {
        // SAFETY: the caller's promise is the ring's.
        unsafe {
            self.ring.pop_in_place(max, |entry| {
                visit(SlotEvent::new(entry, self.index, self.tag))
            })
        }
    }

    /// Pushes a follow-up published on a worker thread: into the ring if it
    /// has room and no overflow is waiting, into the overflow otherwise.
    /// Accepted even when the ring is closed (a shutdown drain). Returns
    /// its place.
    pub(crate) fn push_from_worker(
        &self,
        seed: Seed<'_>,
        record_explicit: impl Fn(TenantId, EventId, Place),
    ) -> Place {
        let seed = if self.overflow_len.load(Ordering::Acquire) == 0 {
            match self.push(seed, &record_explicit, false) {
                Ok(place) => return place,
                Err(PushError::Full(back) | PushError::Closed(back)) => back,
            }
        } else {
            seed
        };
        let mut queue = lock(&self.overflow);
        let seed = if queue.is_empty() {
            // The claimer emptied it meanwhile; the ring comes first again.
            match self.push(seed, &record_explicit, false) {
                Ok(place) => return place,
                Err(PushError::Full(back) | PushError::Closed(back)) => back,
            }
        } else {
            seed
        };
        let seq = self.overflow_pushed.load(Ordering::Relaxed);
        let place = Place::overflow(self.index, seq);
        let (entry, lineage) = seed;
        if let Some(id) = lineage.as_ref().and_then(Lineage::explicit_id) {
            record_explicit(entry.as_ref().expect(TAKEN_ONCE).tenant(), id, place);
        }
        let entry = entry.take().expect(TAKEN_ONCE);
        let envelope = Envelope::from_ring(entry, lineage, place, self.tag);
        queue.push_back((self.ring.pushed(), envelope));
        // Only written under the overflow lock.
        self.overflow_pushed.store(seq + 1, Ordering::Relaxed);
        self.overflow_len.store(queue.len(), Ordering::Release);
        // What the ring's `SeqCst` claim is for ring pushes: the owner's
        // re-check before parking, and flush's snapshot, see this push, or
        // the caller's reads after it see their announcements.
        fence(Ordering::SeqCst);
        place
    }

    /// For the claimer: the next overflow envelope, if every ring event
    /// pushed before it has been taken.
    pub(crate) fn pop_due_overflow(&self) -> Option<Envelope> {
        if self.overflow_len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut queue = lock(&self.overflow);
        match queue.front() {
            Some(&(due, _)) if due <= self.ring.popped() => {
                let (_, envelope) = queue.pop_front()?;
                self.overflow_len.store(queue.len(), Ordering::Release);
                // A burst (a handler's fan-out to every user) may have
                // grown the queue far past the ring: once it is empty,
                // its memory goes back, down to the ring's size.
                let ring = self.ring.capacity();
                if queue.is_empty() && queue.capacity() > 4 * ring {
                    queue.shrink_to(ring);
                }
                Some(envelope)
            }
            _ => None,
        }
    }

    /// For the claimer: how many ring events it may take before the next
    /// overflow envelope is due, at most `batch`.
    pub(crate) fn ring_budget(&self, batch: usize) -> usize {
        if self.overflow_len.load(Ordering::Acquire) == 0 {
            return batch;
        }
        match lock(&self.overflow).front() {
            Some(&(due, _)) => due.saturating_sub(self.ring.popped()).min(batch),
            None => batch,
        }
    }

    /// For the claimer, after the handlers of everything it took ran.
    pub(crate) fn record_completed(&self, overflow_handled: u64) {
        if overflow_handled > 0 {
            self.overflow_done
                .fetch_add(overflow_handled, Ordering::Release);
        }
        self.completed
            .store(self.ring.popped() as u64, Ordering::Release);
    }

    /// Everything accepted so far, as a target for [`Shard::reached`].
    pub(crate) fn progress_target(&self) -> Progress {
        Progress {
            ring: self.ring.pushed() as u64,
            overflow: self.overflow_pushed.load(Ordering::Relaxed),
        }
    }

    /// Whether the batch of the event at shard sequence number `seq` ended.
    #[inline]
    pub(crate) fn has_completed(&self, seq: u64) -> bool {
        if seq & OVERFLOW == 0 {
            self.completed.load(Ordering::Acquire) > seq
        } else {
            self.overflow_done.load(Ordering::Acquire) > seq & !OVERFLOW
        }
    }

    /// Whether an event was accepted at shard sequence number `seq`.
    pub(crate) fn has_accepted(&self, seq: u64) -> bool {
        if seq & OVERFLOW == 0 {
            (self.ring.pushed() as u64) > seq
        } else {
            self.overflow_pushed.load(Ordering::Relaxed) > seq & !OVERFLOW
        }
    }

    /// Queues `waiter` until the shard passes `seq`; the caller then
    /// fences and re-checks (see "Waiters").
    pub(crate) fn wait_for(&self, seq: u64, waiter: Waiter) {
        let mut awaiting = lock(&self.awaiting);
        awaiting.push((seq, waiter));
        self.awaiting_len.store(awaiting.len(), Ordering::Relaxed);
    }

    /// Whether waiters are queued; read after the fence that follows a
    /// progress store.
    #[inline]
    pub(crate) fn has_waiters(&self) -> bool {
        self.awaiting_len.load(Ordering::Relaxed) > 0
    }

    /// Takes the waiters whose place the shard has passed.
    pub(crate) fn take_due(&self) -> Vec<(Place, Waiter)> {
        let mut awaiting = lock(&self.awaiting);
        let mut due = Vec::new();
        let mut at = 0;
        while at < awaiting.len() {
            if self.has_completed(awaiting[at].0) {
                let (seq, waiter) = awaiting.swap_remove(at);
                due.push((
                    Place {
                        shard: self.index as u32,
                        seq,
                    },
                    waiter,
                ));
            } else {
                at += 1;
            }
        }
        self.awaiting_len.store(awaiting.len(), Ordering::Relaxed);
        due
    }

    /// Whether everything up to `target` is fully handled.
    pub(crate) fn reached(&self, target: Progress) -> bool {
        self.completed.load(Ordering::Acquire) >= target.ring
            && self.overflow_done.load(Ordering::Acquire) >= target.overflow
    }
}

#[cfg(all(test, not(diana_bus_loom)))]
mod tests {
    use super::*;
    use crate::event::{Meta, Routing};
    use crate::payload::Payload;

    struct Ping;
    impl crate::Event for Ping {}

    /// Pushes `count` events as a worker does: past a full ring, into the
    /// overflow.
    fn push_from_worker(shard: &Shard, count: usize) {
        for _ in 0..count {
            let routing = Routing::resolve(&Ping, Meta::new(), 0);
            let (entry, mut lineage) = RingEntry::new(&routing, Payload::new(Ping), None);
            shard.push_from_worker((&mut Some(entry), &mut lineage), |_, _, _| {});
        }
    }

    #[test]
    fn an_emptied_overflow_gives_back_what_a_burst_grew_it_to() {
        let shard = Shard::new(0, 0, 0, 4);
        push_from_worker(&shard, 4 + 1000);
        assert!(lock(&shard.overflow).capacity() >= 1000);
        // SAFETY: this test is the shard's one consumer.
        let popped = unsafe { shard.pop_in_place(4, |_| {}) };
        assert_eq!(popped, 4);
        while shard.pop_due_overflow().is_some() {}
        assert!(
            lock(&shard.overflow).capacity() <= 4 * 4,
            "down to the ring's size"
        );
    }
}
