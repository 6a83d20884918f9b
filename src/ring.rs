//! A bounded, lock-free, multi-producer single-consumer ring with
//! per-slot sequence stamps (the Disruptor's multi-producer sequencer: a
//! claimed position, then a published stamp), batch pop, a close bit, and a
//! side entry per slot for what few values carry.
//!
//! # Protocol
//!
//! Fields:
//! - `slots[i].stamp`: `p + 1` once the value of position `p` (index
//!   `p & mask`) is written: the slot is *full, ready for a pop at `p`*
//!   exactly when `stamp == p + 1`. Initially every stamp is 0. Only
//!   producers write stamps; the consumer only reads them, so a slot's
//!   cache lines are never dirtied by the consumer and travel back to the
//!   next lap's producer clean.
//! - `head`: the next position to pop. Written only by the consumer, with
//!   a Release store once it is done with a batch (each value moved out or
//!   dropped in place, none still lent): every position below `head` is
//!   free for the next lap.
//! - `tail.next`: the next position to push, plus the [`CLOSED`] bit.
//!   Written only by compare-and-swap (push) and `fetch_or` (close).
//! - `tail.room_until`: a position below which pushes have room for
//!   certain, on the producers' own line: `head + capacity` for some
//!   `head` a producer has read, so never above the true limit. A push
//!   reads `head` (the consumer's line) only when it reaches this limit,
//!   about once a lap when the consumer keeps up.
//!
//! Push at `p = tail.next & !CLOSED`: if `p < room_until`, or failing that
//! `p < head + capacity` (then stored as the new `room_until`), claim `p`
//! by CAS `tail.next: p -> p + 1`; the winner alone writes the value, then
//! stores `stamp = p + 1` (Release). Otherwise the ring is full.
//!
//! Pop of up to `n`, by the one consumer: from `h = head`, count the
//! consecutive slots whose stamp is `position + 1` (Acquire), use each
//! value where it lies (read it, move it out or drop it: the bus runs an
//! event's handlers in its slot), then store `head = h + k` (Release).
//! Until that store the batch's slots stay the consumer's, so producers
//! have `capacity - k` slots meanwhile.
//!
//! One consumer at a time is the caller's promise ([`Ring::pop_in_place`]
//! is `unsafe`): the bus pops a shard's ring only while holding the
//! shard's claim, which hands `head` and the slots from one claimer to the
//! next (Release on letting go, Acquire on taking it).
//!
//! Memory orderings:
//! - `stamp` Release (producer) / Acquire (consumer) hands a value from
//!   its producer to the consumer: it is never read before it is written.
//! - `head` Release (consumer) / Acquire (producer) hands a slot back: a
//!   value is never overwritten while the consumer still uses it. A
//!   producer that trusts `room_until` instead is ordered after that
//!   Acquire load by the `room_until` Release store / Acquire load. (The
//!   loom build's claim fence, below, between these loads and the slot
//!   writes, would also order them, so the loom models cannot tell the two
//!   Acquire loads from Relaxed ones; they do catch a Relaxed `head` or
//!   `room_until` store.)
//! - The CAS on `tail.next` decides who owns a position; the slot contents
//!   are ordered by the stamp and `head`. It is `SeqCst` for the wake-up
//!   protocols built on the ring (see `park`), which pair it with the
//!   producer's `SeqCst` loads after the push: a consumer that announces
//!   sleep, fences (`SeqCst`) and then reads `tail` either sees the claim,
//!   or those loads see the announcement. By C++20's rules for the single
//!   order S of `SeqCst` operations ([atomics.order] p4), were both
//!   missed: the consumer's read of `tail` is coherence-ordered before
//!   the claim, and its fence happens before that read, so the fence
//!   precedes the claim in S (p4.3); the producer's load is
//!   coherence-ordered before the announcement, which happens before the
//!   fence, so the load precedes the fence (p4.2); and the claim, sequenced
//!   before the load, precedes it (p4's first rule): a cycle.
//! - Loom cannot check that: it models `SeqCst` loads and read-modify-
//!   writes as `Acquire` and `AcqRel` (tokio-rs/loom#108, #180), so it
//!   would fail the protocol above. The loom build adds a `SeqCst` fence
//!   right after the claim, the *claim fence*, which the fence-to-fence
//!   rule (p4.4) orders against the consumer's: that is the protocol the
//!   models check, and the release build's `SeqCst` CAS and loads give the
//!   same guarantee by the argument above. Miri, whose weak memory
//!   emulation is sound but incomplete for C++20 (it never shows what
//!   C++20 forbids, and not all it allows), runs the release build's
//!   form: `park`'s test (`cargo +nightly miri test -p diana-bus --lib
//!   park`) fails there with the producer's load only `Acquire`, but not
//!   with the claim only `Relaxed`. That the claim is `SeqCst` rests on
//!   the argument alone. The release build had the fence too, until
//!   measured: without it, in alternating pairs, spsc ran 1.08x, mpsc
//!   1.21x, fanout4 1.06x and tenants 1.22x as fast.
//! - `close` sets [`CLOSED`] with `fetch_or`: every push's CAS either comes
//!   before it in `tail.next`'s modification order (its position is
//!   claimed, and its value will be published) or sees the bit and is
//!   refused. So "accepted" and "closed" never race.
//!
//! Stamps from earlier laps never look ready: slot `i` holds stamps
//! `i + 1`, `i + capacity + 1`, ..., and position `p + capacity` can be
//! claimed only once `head` has passed `p`.
//!
//! Capacity is rounded up to a power of two, and is at least 2 (the bus's
//! rings always were; one slot would work, but gains nothing).
//!
//! # Slots and side entries
//!
//! A slot is cache-line aligned, so a value of up to 56 bytes, or 120, is
//! written and read in one line, or two: the bytes a value spans are the
//! cache lines that move from the producer's core to the consumer's, which
//! is what a push costs most. What only some values carry goes to the
//! slot's *side entry* (`extras[i]`, an `X: Default`), which belongs to
//! whoever owns the slot: the producer that claimed position `p` may
//! write it before publishing the stamp, the consumer's visit may take it
//! (leaving `X::default()`) before `head` moves past the slot; what the
//! visit leaves there stays for the next lap's producer to overwrite, or
//! for the ring's drop. A value that carries nothing there (and says so
//! itself) never touches the side entry's cache line: neither its producer
//! nor its consumer reads or writes it.
//!
//! # Prefetching
//!
//! Those line transfers are also what a push and a pop wait for, unless
//! they are asked for ahead:
//! - A producer, having claimed position `p`, prefetches for writing the
//!   lines of the slot [`PREFETCH_AHEAD`] positions on (x86-64's
//!   `prefetchw`, where CPUID reports it), if it knows that slot to be
//!   free (below `room_until`; one the consumer has yet to read would
//!   only be taken from it). Otherwise a slot's lines still belong to the
//!   consumer, which read them a lap before, and each push's stores wait
//!   in the store buffer for two transfers, and so does any later load of
//!   the producer's that the store buffer cannot forward (see "Store
//!   forwarding" in `Bus::send`). Without it, spsc and mpsc ran at half
//!   speed.
//! - The consumer, counting a batch's published stamps, prefetches each
//!   slot's lines, so the second line comes in while the loop goes on to
//!   the next stamp instead of when the visit first reads it. Without it,
//!   spsc and mpsc ran at 60% to 65% of their speed.
//!
//! A prefetch is a hint: it reads and writes nothing the program sees, so
//! the protocol above does not depend on it, and it is left out under
//! loom and miri, and on other targets.
//!
//! Positions are `usize` and never wrap in practice, which needs 64 bits
//! (the crate refuses to build on narrower targets).
//!
//! All of the queue's `unsafe` code is in this file; `Ring` owns the
//! invariant "a slot's value is initialised when its stamp says full at a
//! position in `head..tail` that the pop under way (if any) has not lent
//! out yet, and it and its side entry are touched only by the slot's
//! owner: the producer that claimed the position, until its stamp store,
//! then the consumer, until its `head` store". Code from outside runs
//! while a slot is owned: `make` sees only that slot's side entry, by a
//! `&mut` it cannot keep, and must not unwind (a claimed position never
//! published would stop the consumer for good, so an unwinding `make`
//! aborts the process instead); `visit` sees one lent value, by an
//! [`InSlot`] it cannot keep, which moves or drops the value at most once
//! (forgetting the `InSlot` leaks the value, soundly), and if it unwinds
//! the pop still drops the rest of its batch and frees the slots (a
//! second panic there, from a value's drop, aborts).

use std::mem::{size_of, MaybeUninit};

#[cfg(diana_bus_loom)]
use crate::sync::fence;
use crate::sync::{AtomicUsize, CachePadded, Ordering, UnsafeCell};
use hint::{has_prefetchw, prefetch_line};

#[cfg(not(target_pointer_width = "64"))]
compile_error!("diana-bus needs 64-bit ring positions (a 32-bit tail would reach the CLOSED bit)");

/// The bit of `tail` that marks a closed ring.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// Why a push was refused; the value comes back.
#[derive(Debug)]
pub enum PushError<T> {
    /// No free slot.
    Full(T),
    /// The ring was closed.
    Closed(T),
}

/// The producers' cache line (see the module docs).
struct Tail {
    /// The next position to push, and the [`CLOSED`] bit.
    next: AtomicUsize,
    /// `head + capacity` for a `head` some producer read: room for certain
    /// below it.
    room_until: AtomicUsize,
}

#[repr(align(64))]
struct Slot<T> {
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// How far ahead of its claim a producer prefetches (see "Prefetching"):
/// far enough that the lines arrive before the push that needs them.
/// Distances from 2 to 32 measured the same.
const PREFETCH_AHEAD: usize = 4;

/// What a prefetched cache line is for.
#[derive(Clone, Copy)]
enum Prefetch {
    Read,
    Write,
}

impl<T> Slot<T> {
    /// Prefetches the slot's first two cache lines, the most a pushed
    /// value is meant to span (see "Slots and side entries").
    #[inline(always)]
    fn prefetch(&self, how: Prefetch) {
        let start = (self as *const Self).cast::<u8>();
        prefetch_line(start, how);
        if size_of::<Self>() > 64 {
            prefetch_line(start.wrapping_add(64), how);
        }
    }
}

/// The prefetch instructions, on x86-64 outside loom and miri; elsewhere,
/// nothing is prefetched.
#[cfg(all(target_arch = "x86_64", not(diana_bus_loom), not(miri)))]
mod hint {
    use super::Prefetch;

    /// Whether this processor has `prefetchw`: CPUID's PRFCHW bit (which
    /// `is_x86_feature_detected!` does not know).
    pub(super) fn has_prefetchw() -> bool {
        use std::arch::x86_64::__cpuid;
        const PRFCHW: u32 = 1 << 8;
        // `__cpuid` is an unsafe function in the older Rust this crate
        // builds with (from 1.91), a safe one in newer.
        #[allow(unused_unsafe)]
        // SAFETY: every x86-64 processor has CPUID, and its leaf
        // 0x8000_0001 (the long-mode bit is there).
        let leaf = unsafe { __cpuid(0x8000_0001) };
        leaf.ecx & PRFCHW != 0
    }

    /// Asks the processor for the cache line holding `at`, to read or to
    /// write soon (`prefetcht0`, `prefetchw`: only where
    /// [`has_prefetchw`] says so).
    #[inline(always)]
    pub(super) fn prefetch_line(at: *const u8, how: Prefetch) {
        // SAFETY: a prefetch neither reads nor writes memory the program
        // can observe, and cannot fault, whatever the address; `prefetchw`
        // is only asked for where the processor has it. `readonly` (not
        // `nomem`) keeps the compiler from moving the hint after the
        // stores it is for.
        unsafe {
            match how {
                Prefetch::Read => std::arch::asm!(
                    "prefetcht0 [{0}]",
                    in(reg) at,
                    options(nostack, readonly, preserves_flags)
                ),
                Prefetch::Write => std::arch::asm!(
                    "prefetchw [{0}]",
                    in(reg) at,
                    options(nostack, readonly, preserves_flags)
                ),
            }
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", not(diana_bus_loom), not(miri))))]
mod hint {
    use super::Prefetch;

    pub(super) fn has_prefetchw() -> bool {
        false
    }

    #[inline(always)]
    pub(super) fn prefetch_line(_: *const u8, _: Prefetch) {}
}

/// A bounded multi-producer single-consumer ring of `T`s, with a side
/// entry `X` per slot; see the module docs for the protocol.
pub struct Ring<T, X = ()> {
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<Tail>,
    slots: Box<[Slot<T>]>,
    extras: Box<[UnsafeCell<X>]>,
    mask: usize,
    /// Whether this processor has `prefetchw` (see "Prefetching").
    prefetchw: bool,
}

// SAFETY: values and side entries move between threads through the ring,
// so `T: Send` and `X: Send` are needed and enough: a slot's value and side
// entry are only ever accessed by the one thread that owns its position
// (module protocol), never shared.
unsafe impl<T: Send, X: Send> Send for Ring<T, X> {}
// SAFETY: as above; `&Ring` moves whole values in and out, and lends a
// value (`&mut T`, in place) and its side entry only to the owner of its
// slot.
unsafe impl<T: Send, X: Send> Sync for Ring<T, X> {}

/// Aborts the process when dropped: armed while a push's `make` runs on its
/// claimed slot, where unwinding would leave the slot unpublished (see the
/// module doc), and defused with `mem::forget` once it has returned.
/// Inert under loom, which reports a model's violation by panicking inside
/// a closure (an abort would swallow the report).
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        #[cfg(not(diana_bus_loom))]
        std::process::abort();
    }
}

/// The bytes one slot takes for values of type `T`.
#[cfg(all(test, not(diana_bus_loom)))]
pub(crate) const fn slot_size<T>() -> usize {
    std::mem::size_of::<Slot<T>>()
}

/// The capacity a request for `requested` slots gets: the next power of
/// two, and at least 2.
pub fn effective_capacity(requested: usize) -> usize {
    requested.max(2).next_power_of_two()
}

impl<T, X: Default> Ring<T, X> {
    /// A ring with [`effective_capacity`]`(capacity)` slots.
    pub fn new(capacity: usize) -> Self {
        let capacity = effective_capacity(capacity);
        let slots = (0..capacity)
            .map(|_| Slot {
                stamp: AtomicUsize::new(0),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Ring {
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(Tail {
                next: AtomicUsize::new(0),
                room_until: AtomicUsize::new(capacity),
            }),
            slots,
            extras: (0..capacity)
                .map(|_| UnsafeCell::new(X::default()))
                .collect(),
            mask: capacity - 1,
            prefetchw: has_prefetchw(),
        }
    }
}

impl<T, X> Ring<T, X> {
    /// How many values the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Pushes `value`, unless the ring is full or closed.
    // The bus builds values in place (`push_with`); the tests and loom
    // models push plain values.
    #[cfg_attr(not(any(test, diana_bus_loom)), allow(dead_code))]
    #[inline]
    pub fn push(&self, value: T) -> Result<usize, PushError<T>> {
        self.push_with(value, |value, _, _| value, true)
    }

    /// Claims a slot, then builds the value in it from `seed` and the
    /// claimed position with `make`, so a large value is written once, in
    /// place (`make` runs before consumers can see the slot, must not panic,
    /// and may fill the slot's side entry, which holds what the last
    /// consumer left there: `X::default()` if it took it). Returns the
    /// claimed position; a refused push gives the seed back. With
    /// `refuse_when_closed` false it pushes into a closed ring too.
    #[inline(always)]
    pub fn push_with<S>(
        &self,
        seed: S,
        make: impl FnOnce(S, usize, &mut X) -> T,
        refuse_when_closed: bool,
    ) -> Result<usize, PushError<S>> {
        let mut tail = self.tail.next.load(Ordering::Relaxed);
        loop {
            if refuse_when_closed && tail & CLOSED != 0 {
                return Err(PushError::Closed(seed));
            }
            let pos = tail & !CLOSED;
            // Acquire (both loads): pairs with the consumer's Release
            // store of `head`, which follows its last use of the slot's
            // previous value; for `room_until`, through the producer that
            // read that `head` and stored it (Release).
            let mut room_until = self.tail.room_until.load(Ordering::Acquire);
            if pos >= room_until {
                room_until = self.head.load(Ordering::Acquire) + self.capacity();
                if pos >= room_until {
                    return Err(PushError::Full(seed));
                }
                self.tail.room_until.store(room_until, Ordering::Release);
            }
            // `tail + 1` keeps the CLOSED bit as it was.
            match self.tail.next.compare_exchange_weak(
                tail,
                tail + 1,
                // SeqCst: the wake-up protocols (see "Memory orderings";
                // argued there, and not caught by a test if weakened).
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // What loom needs instead (see "Memory orderings").
                    #[cfg(diana_bus_loom)]
                    fence(Ordering::SeqCst);
                    // Before this push's own stores, and only into a
                    // slot the consumer is done with: see "Prefetching".
                    if self.prefetchw && pos + PREFETCH_AHEAD < room_until {
                        self.slots[(pos + PREFETCH_AHEAD) & self.mask].prefetch(Prefetch::Write);
                    }
                    let slot = &self.slots[pos & self.mask];
                    debug_assert_ne!(slot.stamp.load(Ordering::Relaxed), pos + 1);
                    let extra = &self.extras[pos & self.mask];
                    let armed = AbortOnUnwind;
                    // SAFETY: winning the CAS for `pos` makes this thread
                    // the only producer of the slot and its side entry
                    // until it publishes the stamp below. `head` (read
                    // above, directly or through `room_until`) was past the
                    // slot's previous position, so the consumer is done
                    // with that value and the side entry, and the Acquire
                    // loads order this after it. `make` cannot keep the
                    // `&mut`.
                    let value = extra.with_mut(|x| make(seed, pos, unsafe { &mut *x }));
                    std::mem::forget(armed);
                    // SAFETY: as above.
                    slot.value.with_mut(|v| unsafe { (*v).write(value) });
                    // Release: the value is visible before the stamp.
                    slot.stamp.store(pos + 1, Ordering::Release);
                    return Ok(pos);
                }
                Err(current) => tail = current,
            }
        }
    }

    /// Moves up to `max` values, oldest first, to the end of `out`, and
    /// returns how many. Frees their slots with one store.
    ///
    /// # Safety
    ///
    /// As for [`Ring::pop_in_place`].
    // The bus runs values where they lie (`pop_in_place`); the tests and
    // loom models pop plain values.
    #[cfg_attr(not(any(test, diana_bus_loom)), allow(dead_code))]
    pub unsafe fn pop_batch(&self, out: &mut Vec<T>, max: usize) -> usize
    where
        X: Default,
    {
        // SAFETY: the caller's promise.
        unsafe { self.pop_in_place(max, |value| out.push(value.take())) }
    }

    /// Lends up to `max` values, oldest first, to `visit`, each where it
    /// lies in its slot; then frees their slots with one store and returns
    /// how many. `visit` may move a value out ([`InSlot::take`]); one it
    /// leaves is dropped in its slot. The side entry is `visit`'s to take
    /// too ([`InSlot::side`], leaving `X::default()`).
    ///
    /// If `visit` unwinds, the batch ends all the same: the values it has
    /// not seen are dropped (their side entries reset) and every slot of
    /// the batch is freed, so none is popped twice or lost for good.
    ///
    /// # Safety
    ///
    /// No other pop of this ring may run at the same time, and each pop
    /// must happen after the one before it (the same thread, or a lock or
    /// claim handed on with Release and taken with Acquire): the ring has
    /// one consumer at a time.
    #[inline]
    pub unsafe fn pop_in_place(&self, max: usize, mut visit: impl FnMut(InSlot<'_, T, X>)) -> usize
    where
        X: Default,
    {
        // Relaxed: only consumers store `head`, and the caller orders them.
        let head = self.head.load(Ordering::Relaxed);
        let mut count = 0;
        while count < max {
            let pos = head + count;
            // Acquire: pairs with the producer's Release, so the value is
            // fully written before we read it.
            if self.slots[pos & self.mask].stamp.load(Ordering::Acquire) != pos + 1 {
                break;
            }
            // See "Prefetching".
            self.slots[pos & self.mask].prefetch(Prefetch::Read);
            count += 1;
        }
        if count == 0 {
            return 0;
        }
        let mut batch = PoppedBatch {
            ring: self,
            next: head,
            end: head + count,
        };
        while batch.next < batch.end {
            let pos = batch.next;
            // From here the value is `visit`'s: its `InSlot` drops it, or
            // hands it out, even if `visit` unwinds.
            batch.next += 1;
            let index = pos & self.mask;
            self.slots[index].value.with_mut(|value| {
                self.extras[index].with_mut(|side| {
                    // SAFETY: the stamp said full (checked with Acquire
                    // above), so the value is initialised; the caller is
                    // the one consumer, and producers leave the slot alone
                    // until `batch` stores `head` past it. The `InSlot`
                    // cannot outlive this call, and it moves or drops the
                    // value at most once (a forgotten one leaks it). Then
                    // nothing touches the value again: `batch` has already
                    // passed `pos`, and `Ring`'s drop starts at `head`.
                    let value = unsafe { &mut *value };
                    // SAFETY: as above, for the slot's side entry.
                    let side = unsafe { &mut *side };
                    visit(InSlot { value, side, pos })
                })
            });
        }
        count
    }

    /// Whether the value `ahead` positions past `head` is published: a
    /// hint for polling, which reads `head` and that one slot's stamp
    /// (Relaxed) but not `tail`, the line every push writes. Any thread may
    /// ask; off the consumer, `head` may be stale, so the answer may be
    /// about a position already popped. A position claimed and not yet
    /// published reads as absent, so this is no substitute for
    /// [`Ring::len`] where a claim must count (the wake-up protocols): a
    /// poller that falls back on those loses nothing to a wrong answer but
    /// time.
    #[inline]
    pub fn is_published(&self, ahead: usize) -> bool {
        let pos = self.head.load(Ordering::Relaxed) + ahead;
        self.slots[pos & self.mask].stamp.load(Ordering::Relaxed) == pos + 1
    }

    /// Refuses every later [`Ring::push`]; returns whether it was open.
    pub fn close(&self) -> bool {
        self.tail.next.fetch_or(CLOSED, Ordering::SeqCst) & CLOSED == 0
    }

    /// Whether [`Ring::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.tail.next.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// Positions claimed by producers so far: the number of values ever
    /// accepted (some may still be being written).
    pub fn pushed(&self) -> usize {
        self.tail.next.load(Ordering::Relaxed) & !CLOSED
    }

    /// Positions popped and freed so far (`head`).
    pub fn popped(&self) -> usize {
        self.head.load(Ordering::Relaxed)
    }

    /// Positions claimed by producers and not yet freed by the consumer. A
    /// snapshot: exact only when no push or pop is under way.
    pub fn len(&self) -> usize {
        // Saturating: the two loads are not ordered with each other, so a
        // stale `tail` may trail a fresh `head`.
        let head = self.popped();
        self.pushed().saturating_sub(head)
    }

    /// Whether [`Ring::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A value lent by [`Ring::pop_in_place`] where it lies in its slot, with
/// the slot's side entry: read in place, or moved out with
/// [`InSlot::take`]; dropping it drops the value.
#[derive(Debug)]
pub struct InSlot<'s, T, X> {
    value: &'s mut MaybeUninit<T>,
    side: &'s mut X,
    pos: usize,
}

impl<T, X> InSlot<'_, T, X> {
    /// The value's position in the ring.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The value, in its slot.
    pub fn get(&self) -> &T {
        // SAFETY: an `InSlot` holds an initialised value until `take` or
        // `drop` consumes it (`pop_in_place`).
        unsafe { self.value.assume_init_ref() }
    }

    /// The slot's side entry: what the value's producer left there.
    pub fn side(&mut self) -> &mut X {
        self.side
    }

    /// Moves the value out of its slot.
    pub fn take(self) -> T {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: initialised (as in `get`), and read out once: `this` is
        // never dropped, so the slot's value is not dropped again.
        unsafe { this.value.assume_init_read() }
    }
}

impl<T, X> Drop for InSlot<'_, T, X> {
    fn drop(&mut self) {
        // SAFETY: initialised (as in `get`); the `InSlot` is gone after
        // this, and the slot's value is not touched again until a producer
        // writes the next lap's.
        unsafe { self.value.assume_init_drop() }
    }
}

/// The slots `head..end` that [`Ring::pop_in_place`] is lending out, the
/// ones from `next` on not yet lent. Dropping it ends the batch: the
/// values never lent are dropped (only if `visit` unwound) and `head` moves
/// to `end`.
struct PoppedBatch<'r, T, X: Default> {
    ring: &'r Ring<T, X>,
    next: usize,
    end: usize,
}

impl<T, X: Default> Drop for PoppedBatch<'_, T, X> {
    fn drop(&mut self) {
        let ring = self.ring;
        for pos in self.next..self.end {
            let index = pos & ring.mask;
            // SAFETY: full slots of this batch, never lent out: still
            // initialised, and still the one consumer's.
            ring.slots[index]
                .value
                .with_mut(|value| unsafe { (*value).assume_init_drop() });
            // SAFETY: as above.
            ring.extras[index].with_mut(|side| drop(std::mem::take(unsafe { &mut *side })));
        }
        // Release: the values are moved out or dropped, and the side
        // entries taken, before a producer reuses their slots.
        ring.head.store(self.end, Ordering::Release);
    }
}

impl<T, X> Drop for Ring<T, X> {
    fn drop(&mut self) {
        let head = self.popped();
        let tail = self.pushed();
        for pos in head..tail {
            let slot = &self.slots[pos & self.mask];
            if slot.stamp.load(Ordering::Relaxed) == pos + 1 {
                // SAFETY: `&mut self` excludes every other access, and the
                // stamp says the slot holds position `pos`'s value, which no
                // consumer moved out.
                slot.value.with_mut(|v| unsafe { (*v).assume_init_drop() });
            }
        }
    }
}

impl<T, X> std::fmt::Debug for Ring<T, X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(all(test, not(diana_bus_loom)))]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// `pop_batch` in a test that pops from one thread at a time.
    fn pop<T, X: Default>(ring: &Ring<T, X>, out: &mut Vec<T>, max: usize) -> usize {
        // SAFETY: each test pops from one thread, or under a lock.
        unsafe { ring.pop_batch(out, max) }
    }

    #[test]
    fn capacity_rounds_up_to_a_power_of_two_of_at_least_two() {
        assert_eq!(effective_capacity(0), 2);
        assert_eq!(effective_capacity(1), 2);
        assert_eq!(effective_capacity(3), 4);
        assert_eq!(Ring::<u8>::new(1000).capacity(), 1024);
    }

    #[test]
    fn fifo_through_full_and_empty_edges_for_many_laps() {
        let ring = Ring::<_>::new(4);
        let mut out = Vec::new();
        let mut next = 0u32;
        let mut expected = 0u32;
        for _ in 0..50 {
            while ring.push(next).is_ok() {
                next += 1;
            }
            assert!(matches!(ring.push(99), Err(PushError::Full(99))));
            assert_eq!(ring.len(), 4);
            out.clear();
            assert_eq!(pop(&ring, &mut out, 3), 3);
            for v in out.drain(..) {
                assert_eq!(v, expected);
                expected += 1;
            }
        }
        assert_eq!(pop(&ring, &mut out, 10), 1);
        assert_eq!(pop(&ring, &mut out, 10), 0);
        assert!(ring.is_empty());
    }

    #[test]
    fn published_is_what_a_pop_would_take_and_not_a_claim() {
        let ring = Ring::<u32>::new(4);
        assert!(!ring.is_published(0));
        // While `make` runs, the position is claimed (`len` counts it) but
        // not published.
        let mut while_made = None;
        ring.push_with(
            7,
            |value, _, _| {
                while_made = Some((ring.is_published(0), ring.len()));
                value
            },
            true,
        )
        .unwrap();
        assert_eq!(while_made, Some((false, 1)));
        assert!(ring.is_published(0));
        assert!(!ring.is_published(1));
        ring.push(8).unwrap();
        assert!(ring.is_published(1));
        let mut out = Vec::new();
        pop(&ring, &mut out, 1);
        assert!(ring.is_published(0), "8 is next");
        assert!(!ring.is_published(1));
        pop(&ring, &mut out, 1);
        assert!(!ring.is_published(0));
        // Nothing a lap or more ahead is published.
        for value in 0..4 {
            ring.push(value).unwrap();
        }
        assert!(ring.is_published(3));
        assert!(!ring.is_published(4));
    }

    #[test]
    fn closing_refuses_pushes_but_keeps_what_was_accepted() {
        let ring = Ring::<_>::new(4);
        ring.push(1).unwrap();
        assert!(ring.close());
        assert!(!ring.close());
        assert!(matches!(ring.push(2), Err(PushError::Closed(2))));
        ring.push_with(3, |value, _, _| value, false).unwrap();
        let mut out = Vec::new();
        pop(&ring, &mut out, 8);
        assert_eq!(out, [1, 3]);
        assert_eq!(ring.pushed(), 2);
    }

    #[test]
    fn dropping_a_ring_drops_what_it_still_holds() {
        let value = Arc::new(());
        let ring = Ring::<_>::new(8);
        for _ in 0..5 {
            ring.push(value.clone()).unwrap();
        }
        let mut out = Vec::new();
        pop(&ring, &mut out, 2);
        drop(out);
        assert_eq!(Arc::strong_count(&value), 4);
        drop(ring);
        assert_eq!(Arc::strong_count(&value), 1);
    }

    /// Whether `body` aborts the process. The test `name` calls this; it
    /// runs in a child (this test binary again, running only `name`),
    /// where a `body` that unwinds instead ends the child normally.
    #[cfg(all(unix, not(miri)))]
    fn aborts(name: &str, body: impl FnOnce()) -> bool {
        use std::os::unix::process::ExitStatusExt;
        const CHILD: &str = "DIANA_BUS_RING_TEST_CHILD";
        const SIGABRT: i32 = 6;
        if std::env::var_os(CHILD).is_some() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            std::process::exit(0);
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1"])
            .env(CHILD, "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        status.signal() == Some(SIGABRT)
    }

    #[cfg(all(unix, not(miri)))]
    #[test]
    fn a_panicking_make_aborts_instead_of_leaving_its_slot_claimed() {
        let name = "ring::tests::a_panicking_make_aborts_instead_of_leaving_its_slot_claimed";
        assert!(aborts(name, || {
            let ring = Ring::<u32>::new(2);
            let _ = ring.push_with((), |(), _, _| -> u32 { panic!("make fails") }, true);
        }));
    }

    /// Counts its drops.
    struct Counted<'a>(&'a AtomicUsize);

    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn values_left_in_their_slots_are_dropped_there_once() {
        let drops = AtomicUsize::new(0);
        let ring = Ring::<_>::new(4);
        for _ in 0..3 {
            ring.push(Counted(&drops)).ok().unwrap();
        }
        let mut taken = Vec::new();
        // SAFETY: the one consumer.
        let popped = unsafe {
            ring.pop_in_place(3, |value| {
                if value.pos() == 1 {
                    taken.push(value.take());
                }
            })
        };
        assert_eq!(popped, 3);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        drop(taken);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
        drop(ring);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_visit_that_unwinds_still_ends_its_batch() {
        let drops = AtomicUsize::new(0);
        let side = Arc::new(());
        let ring: Ring<Counted<'_>, Option<Arc<()>>> = Ring::new(4);
        for _ in 0..4 {
            let make = |value, _, slot_side: &mut Option<Arc<()>>| {
                *slot_side = Some(side.clone());
                value
            };
            ring.push_with(Counted(&drops), make, true).ok().unwrap();
        }
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: the one consumer.
            unsafe {
                ring.pop_in_place(3, |mut value| {
                    drop(value.side().take());
                    assert_ne!(value.pos(), 1, "visit fails");
                })
            }
        }));
        assert!(unwound.is_err());
        assert_eq!(drops.load(Ordering::Relaxed), 3);
        assert_eq!(Arc::strong_count(&side), 2, "the last one's side is left");
        assert_eq!(ring.popped(), 3);
        let mut out = Vec::new();
        assert_eq!(pop(&ring, &mut out, 4), 1);
        drop((out, ring));
        assert_eq!(drops.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn side_entries_come_out_with_their_values_and_are_dropped_with_the_ring() {
        let side = Arc::new(());
        let ring: Ring<u32, Option<Arc<()>>> = Ring::new(4);
        for value in 0..3 {
            let make = |value, _, slot_side: &mut Option<Arc<()>>| {
                // Only odd values carry something beside them.
                if value % 2 == 1 {
                    *slot_side = Some(side.clone());
                }
                value
            };
            ring.push_with(value, make, true).unwrap();
        }
        let mut out = Vec::new();
        let visit = |mut value: InSlot<'_, u32, Option<Arc<()>>>| {
            let carried = value.side().take().is_some();
            out.push((*value.get(), value.pos(), carried));
        };
        // SAFETY: the one consumer.
        assert_eq!(unsafe { ring.pop_in_place(2, visit) }, 2);
        assert_eq!(out, [(0, 0, false), (1, 1, true)]);
        assert_eq!(
            Arc::strong_count(&side),
            1,
            "the popped side entry was taken and dropped"
        );
        ring.push_with(
            3,
            |value, _, slot_side: &mut Option<Arc<()>>| {
                *slot_side = Some(side.clone());
                value
            },
            true,
        )
        .unwrap();
        assert_eq!(Arc::strong_count(&side), 2);
        drop(ring);
        assert_eq!(
            Arc::strong_count(&side),
            1,
            "an unpopped side entry is dropped with the ring"
        );
    }

    #[test]
    fn many_producers_and_consumers_taking_turns_lose_and_duplicate_nothing() {
        // Miri is some thousand times slower: fewer items, same interleavings.
        const PER: u64 = if cfg!(miri) { 200 } else { 20_000 };
        let ring = Arc::new(Ring::<_>::new(64));
        // The consumers take turns, as the bus's workers do with a shard's
        // claim.
        let turn = Arc::new(Mutex::new(()));
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        let mut v = p * PER + i;
                        while let Err(PushError::Full(back)) = ring.push(v) {
                            v = back;
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (ring, turn) = (ring.clone(), turn.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut last = [None::<u64>; 3];
                    let mut buf = Vec::new();
                    while seen.len() < (3 * PER) as usize {
                        buf.clear();
                        let popped = {
                            let _turn = turn.lock().unwrap();
                            pop(&ring, &mut buf, 16)
                        };
                        if popped == 0 {
                            if ring.is_closed() && ring.is_empty() {
                                break;
                            }
                            std::thread::yield_now();
                        }
                        for &v in &buf {
                            // each producer's values come out in order
                            let p = (v / PER) as usize;
                            assert!(last[p].is_none_or(|l| l < v));
                            last[p] = Some(v);
                        }
                        seen.extend_from_slice(&buf);
                    }
                    seen
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        ring.close();
        let mut all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..3 * PER).collect::<Vec<_>>());
    }
}
