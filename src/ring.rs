//! A bounded, lock-free, multi-producer multi-consumer ring with per-slot
//! sequence stamps (Vyukov's bounded queue, the Disruptor family), batch
//! pop, a close bit, and a side entry per slot for what few values carry.
//!
//! # Protocol
//!
//! Fields:
//! - `slots[i].stamp`: the position the slot is ready for. A slot for
//!   position `p` (index `p & mask`) is *free for a push at `p`* when
//!   `stamp == p`, and *full, ready for a pop at `p`* when `stamp == p + 1`.
//!   Initially `slots[i].stamp == i`.
//! - `tail`: the next position to push, plus the [`CLOSED`] bit. Written
//!   only by compare-and-swap (push) and `fetch_or` (close).
//! - `head`: the next position to pop. Written only by compare-and-swap.
//!
//! Push at `p = tail & !CLOSED`: if the slot's stamp is `p`, claim `p` by
//! CAS `tail: p -> p + 1`; the winner alone writes the value, then stores
//! `stamp = p + 1` (Release). A stamp below `p` means the slot still holds
//! the value of position `p - capacity`, or a consumer has claimed it (moved
//! `head` past it) but not yet freed it: if `head + capacity <= p` the ring
//! is full, otherwise the slot is about to be freed, so spin and retry. A
//! stamp above `p` means another producer claimed `p`: reload `tail`.
//!
//! Pop of up to `n`: from `h = head`, count the consecutive slots whose
//! stamp is `position + 1` (Acquire), claim them all with one CAS
//! `head: h -> h + k`, then move each value out and store
//! `stamp = position + capacity` (Release), which frees the slot for the
//! push one lap later.
//!
//! Memory orderings:
//! - `stamp` Release (writer) / Acquire (reader) is what hands the slot's
//!   memory from a producer to a consumer and back: a value is never read
//!   before it is written, nor overwritten before it is read.
//! - The CASes on `tail` and `head` only decide who owns a position; the
//!   slot contents are ordered by the stamp, so they can be Relaxed.
//! - A successful push fences (`SeqCst`) right after its claim, before it
//!   writes the slot: the *claim fence*. It is for the wake-up protocols
//!   built on the ring (see `park`): a consumer that announces sleep,
//!   fences and then reads `tail` either sees the claim, or the producer's
//!   reads after its push see the announcement. Right after the CAS the
//!   store buffer is empty, so the fence is cheap; the same fence after
//!   the stamp store would wait for the stamp's contended cache line.
//! - `close` sets [`CLOSED`] with `fetch_or`: every push's CAS either comes
//!   before it in `tail`'s modification order (its position is claimed, and
//!   its value will be published) or sees the bit and is refused. So
//!   "accepted" and "closed" never race.
//!
//! Capacity is rounded up to a power of two, and is at least 2: with one
//! slot, "free for `p + 1`" and "full at `p`" would be the same stamp.
//!
//! # Slots and side entries
//!
//! A slot is cache-line aligned, so a value of up to 56 bytes, or 120, is
//! written and read in one line, or two: the bytes a value spans are the
//! cache lines that move from the producer's core to the consumer's, which
//! is what a push costs most. What only some values carry goes to the
//! slot's *side entry* (`extras[i]`, an `X: Default`), which belongs to
//! whoever owns the slot: the producer that claimed position `p` may
//! write it before publishing the stamp, the consumer takes it (leaving
//! `X::default()`) before freeing the slot. A value that carries nothing
//! there (and says so itself) never touches the side entry's cache line:
//! neither its producer nor its consumer reads or writes it.
//!
//! Positions are `usize` and never wrap in practice, which needs 64 bits
//! (the crate refuses to build on narrower targets).
//!
//! All of the queue's `unsafe` code is in this file; `Ring` owns the
//! invariant "a slot's value is initialised when its stamp says full, and
//! it and its side entry are otherwise touched only by the one thread that
//! claimed its position". Code from outside (the `make` and `take`
//! closures) runs while a position is claimed and sees only that slot's
//! side entry, by a `&mut` it cannot keep. It must not unwind: a claimed
//! position never handed on would stop consumers (or producers, a lap
//! later) for good, so an unwinding closure aborts the process instead.

use std::mem::MaybeUninit;

use crate::sync::{fence, spin_loop, AtomicUsize, CachePadded, Ordering, UnsafeCell};

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

#[repr(align(64))]
struct Slot<T> {
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded MPMC ring of `T`s, with a side entry `X` per slot; see the
/// module docs for the protocol.
pub struct Ring<T, X = ()> {
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
    slots: Box<[Slot<T>]>,
    extras: Box<[UnsafeCell<X>]>,
    mask: usize,
}

// SAFETY: values and side entries move between threads through the ring,
// so `T: Send` and `X: Send` are needed and enough: a slot's value and side
// entry are only ever accessed by the one thread that owns its position
// (module protocol), never shared.
unsafe impl<T: Send, X: Send> Send for Ring<T, X> {}
// SAFETY: as above; `&Ring` only moves whole values in and out, and lends
// a side entry only to the owner of its slot.
unsafe impl<T: Send, X: Send> Sync for Ring<T, X> {}

/// Aborts the process when dropped: armed while caller code runs on
/// claimed slots, where unwinding would leave them claimed (see the module
/// doc), and defused with `mem::forget` once it has returned. Inert under
/// loom, which reports a model's violation by panicking inside a closure
/// (an abort would swallow the report).
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
            .map(|i| Slot {
                stamp: AtomicUsize::new(i),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Ring {
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
            slots,
            extras: (0..capacity)
                .map(|_| UnsafeCell::new(X::default()))
                .collect(),
            mask: capacity - 1,
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
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            if refuse_when_closed && tail & CLOSED != 0 {
                return Err(PushError::Closed(seed));
            }
            let pos = tail & !CLOSED;
            let slot = &self.slots[pos & self.mask];
            // Acquire: pairs with the consumer's Release of `pos`'s stamp,
            // so the previous lap's value was moved out before we overwrite.
            let stamp = slot.stamp.load(Ordering::Acquire);
            let lag = stamp.wrapping_sub(pos) as isize;
            if lag == 0 {
                // `tail + 1` keeps the CLOSED bit as it was.
                match self.tail.compare_exchange_weak(
                    tail,
                    tail + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // The claim fence (see "Memory orderings"): cheap
                        // here, where the CAS has just drained the store
                        // buffer, unlike after the stamp store below.
                        fence(Ordering::SeqCst);
                        debug_assert_eq!(slot.stamp.load(Ordering::Relaxed), pos);
                        let extra = &self.extras[pos & self.mask];
                        let armed = AbortOnUnwind;
                        // SAFETY: winning the CAS for `pos` makes this thread
                        // the only user of the slot and its side entry until
                        // it publishes the stamp below. The stamp said the
                        // slot is empty, and its Acquire load pairs with the
                        // previous lap's consumer's Release, which follows
                        // its last use of the value and the side entry.
                        // `make` cannot keep the `&mut`.
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
            } else if lag < 0 {
                // The slot holds position `pos - capacity`, or a consumer
                // claimed it and is about to free it.
                if self.head.load(Ordering::Relaxed) + self.capacity() <= pos {
                    return Err(PushError::Full(seed));
                }
                spin_loop();
                tail = self.tail.load(Ordering::Relaxed);
            } else {
                // Another producer took `pos`; catch up.
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Moves up to `max` values, oldest first, to the end of `out`, and
    /// returns how many. Claims them all with one CAS.
    // The bus takes side entries too (`pop_batch_with`); the tests and loom
    // models pop plain values.
    #[cfg_attr(not(any(test, diana_bus_loom)), allow(dead_code))]
    pub fn pop_batch(&self, out: &mut Vec<T>, max: usize) -> usize {
        self.pop_batch_with(out, max, |value, _, _| value)
    }

    /// [`Ring::pop_batch`], turning each value, its side entry and its
    /// position into what `out` holds with `take`, which takes what the
    /// producer left in the side entry (`std::mem::take`, when the value
    /// says there is something) and must not panic: it runs while the
    /// slots are claimed.
    #[inline]
    pub fn pop_batch_with<U>(
        &self,
        out: &mut Vec<U>,
        max: usize,
        mut take: impl FnMut(T, &mut X, usize) -> U,
    ) -> usize {
        // Before claiming: a failed allocation must not strand claimed slots.
        out.reserve(max.min(self.capacity()));
        let mut head = self.head.load(Ordering::Relaxed);
        let count = loop {
            let mut ready = 0;
            while ready < max {
                let pos = head + ready;
                // Acquire: pairs with the producer's Release, so the value
                // is fully written before we read it.
                if self.slots[pos & self.mask].stamp.load(Ordering::Acquire) != pos + 1 {
                    break;
                }
                ready += 1;
            }
            if ready == 0 {
                return 0;
            }
            match self.head.compare_exchange_weak(
                head,
                head + ready,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break ready,
                Err(current) => head = current,
            }
        };
        // Each value is moved once, straight into `out`'s spare room (a
        // read into a local and a push would copy it two or three times).
        let spare = &mut out.spare_capacity_mut()[..count];
        let armed = AbortOnUnwind;
        for (pos, to) in (head..head + count).zip(spare) {
            let slot = &self.slots[pos & self.mask];
            debug_assert_eq!(slot.stamp.load(Ordering::Relaxed), pos + 1);
            // SAFETY: the stamp said full (checked with Acquire above) and the
            // CAS on `head` made `pos` ours alone, so the value is
            // initialised, and nobody else reads or writes it or the side
            // entry until the store below hands the slot back to producers;
            // the value is read out once, and the stamp store makes the slot
            // empty (`Drop` drops only values between `head` and `tail`).
            let value = slot.value.with(|v| unsafe { (*v).assume_init_read() });
            // SAFETY: as above.
            let taken =
                self.extras[pos & self.mask].with_mut(|x| take(value, unsafe { &mut *x }, pos));
            to.write(taken);
            // Release: the value is moved out and the side entry taken
            // before a producer reuses them.
            slot.stamp.store(pos + self.capacity(), Ordering::Release);
        }
        std::mem::forget(armed);
        // SAFETY: the loop initialised the `count` values after the old
        // length (the reserve above made room for them).
        unsafe { out.set_len(out.len() + count) };
        count
    }

    /// Refuses every later [`Ring::push`]; returns whether it was open.
    pub fn close(&self) -> bool {
        self.tail.fetch_or(CLOSED, Ordering::SeqCst) & CLOSED == 0
    }

    /// Whether [`Ring::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.tail.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// Positions claimed by producers so far: the number of values ever
    /// accepted (some may still be being written).
    pub fn pushed(&self) -> usize {
        self.tail.load(Ordering::Relaxed) & !CLOSED
    }

    /// Positions claimed by consumers so far.
    pub fn popped(&self) -> usize {
        self.head.load(Ordering::Relaxed)
    }

    /// Values claimed by producers and not yet by consumers. A snapshot:
    /// exact only when no push or pop is under way.
    pub fn len(&self) -> usize {
        // head first: it never passes tail, so the difference is never
        // negative, only possibly stale.
        let head = self.popped();
        self.pushed().saturating_sub(head)
    }

    /// Whether [`Ring::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    use std::sync::Arc;

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
            assert_eq!(ring.pop_batch(&mut out, 3), 3);
            for v in out.drain(..) {
                assert_eq!(v, expected);
                expected += 1;
            }
        }
        assert_eq!(ring.pop_batch(&mut out, 10), 1);
        assert_eq!(ring.pop_batch(&mut out, 10), 0);
        assert!(ring.is_empty());
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
        ring.pop_batch(&mut out, 8);
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
        ring.pop_batch(&mut out, 2);
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

    #[cfg(all(unix, not(miri)))]
    #[test]
    fn a_panicking_take_aborts_instead_of_leaving_its_slots_claimed() {
        let name = "ring::tests::a_panicking_take_aborts_instead_of_leaving_its_slots_claimed";
        assert!(aborts(name, || {
            let ring = Ring::<u32>::new(2);
            ring.push(1).unwrap();
            let take = |_, _: &mut (), _| -> u32 { panic!("take fails") };
            ring.pop_batch_with(&mut Vec::new(), 1, take);
        }));
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
        let take =
            |value, slot_side: &mut Option<Arc<()>>, pos| (value, pos, slot_side.take().is_some());
        assert_eq!(ring.pop_batch_with(&mut out, 2, take), 2);
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
    fn many_producers_and_consumers_lose_and_duplicate_nothing() {
        // Miri is some thousand times slower: fewer items, same interleavings.
        const PER: u64 = if cfg!(miri) { 200 } else { 20_000 };
        let ring = Arc::new(Ring::<_>::new(64));
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
                let ring = ring.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut last = [None::<u64>; 3];
                    let mut buf = Vec::new();
                    while seen.len() < (3 * PER) as usize {
                        buf.clear();
                        if ring.pop_batch(&mut buf, 16) == 0 {
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
