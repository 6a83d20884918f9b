//! Per-handler checksums: each handler adds each id it sees, spread over
//! 64 bits ([`mark`]), into its own checksum, and a run ends by comparing
//! every checksum with that of the ids published.
//!
//! A checksum is kept in stripes, one per thread (settling sums them), so
//! the checksum costs a handler what a user's own counter would: a plain
//! add to a line no other thread writes.
//!
//! - A diana-bus handler runs on every worker, events of different keys in
//!   parallel. With one atomic per handler, each delivery moved that
//!   atomic's cache line between the workers' cores: `fanout4` measured the
//!   line, at a third of the bus's speed (31 M deliveries/s against 92 M
//!   with stripes, in alternating runs).
//! - A stripe has one writer, so the add is a load and a store, not a
//!   locked add. The locked add drains the store buffer and took a third
//!   of the direct-call floor's time (107 M against 170 M events/s in
//!   spsc, in one run).
//!
//! A thread owns its stripe from its first add until it exits
//! ([`OWNER`]). A thread that finds all [`STRIPES`] owned at its first add
//! shares one more stripe, with locked adds, for the rest of its life.
//! Every implementation runs this same code.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Stripes a thread can own; each checksum has one more, shared. More
/// than the threads that add at once in a run with `--workers` up to
/// about 56 (the bus's workers, the publishers, a peer's consumers): the
/// shared stripe is one line, which threads beyond these would contend
/// on.
const STRIPES: usize = 64;

/// The stripe of the threads that found every other one owned.
const SHARED: usize = STRIPES;

/// Per checksum: the owned stripes, then the shared one.
const SLOTS: usize = STRIPES + 1;

/// Whether stripe `s` has an owner: the same stripe in every [`Tally`].
static OWNED: [AtomicBool; STRIPES] = [const { AtomicBool::new(false) }; STRIPES];

/// One checksum per handler, in stripes.
#[derive(Debug)]
pub struct Tally {
    /// Handler `h`'s stripes are `slots[h * SLOTS..][..SLOTS]`.
    slots: Box<[Slot]>,
}

/// A checksum on its own cache line (128 bytes covers adjacent-line
/// prefetching), so handlers running on different threads do not slow each
/// other down.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

impl Tally {
    /// Zeroed checksums for `handlers` handlers.
    pub fn new(handlers: usize) -> Self {
        Self {
            slots: (0..handlers * SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    /// Adds `id` to the checksum of handler `handler`.
    ///
    /// Relaxed is enough: the slots are read only after the run, once the
    /// implementation has synchronised with every handler call (flush, or
    /// joining the consumer threads), and a stripe changes owner through
    /// [`OWNED`]'s Release and Acquire. An owner's plain load sees
    /// [`Tally::settle`]'s zeroing because the next run's events reach it
    /// after the settle: through the ring from the publisher, or by the
    /// thread being spawned for the run.
    #[inline]
    pub fn add(&self, handler: usize, id: u64) {
        let stripe = stripe();
        let sum = &self.slots[handler * SLOTS + stripe].0;
        if stripe == SHARED {
            sum.fetch_add(mark(id), Ordering::Relaxed);
        } else {
            // This thread is the stripe's only writer.
            sum.store(
                sum.load(Ordering::Relaxed).wrapping_add(mark(id)),
                Ordering::Relaxed,
            );
        }
    }

    /// Checks that every handler saw each of the ids `1..=events` once,
    /// and zeroes the checksums for the next run.
    pub fn settle(&self, events: u64) -> Result<(), Mismatch> {
        let expected = checksum_of(events);
        let actual: Vec<u64> = self
            .slots
            .chunks(SLOTS)
            .map(|stripes| {
                stripes.iter().fold(0, |sum: u64, slot| {
                    sum.wrapping_add(slot.0.swap(0, Ordering::Relaxed))
                })
            })
            .collect();
        if actual.iter().all(|&sum| sum == expected) {
            Ok(())
        } else {
            Err(Mismatch {
                events,
                expected,
                actual,
            })
        }
    }
}

/// This thread's stripe: a plain thread-local read once it has one.
#[inline]
fn stripe() -> usize {
    match STRIPE.get() {
        NONE => take_stripe(),
        stripe => stripe,
    }
}

/// What [`STRIPE`] holds before a thread's first add.
const NONE: usize = usize::MAX;

thread_local! {
    /// This thread's stripe, or [`NONE`]. Const, with no destructor, so
    /// reading it is one load.
    static STRIPE: Cell<usize> = const { Cell::new(NONE) };
    /// Hands the stripe on when the thread exits.
    static OWNER: Owner = const { Owner };
}

/// A thread's first add: it takes a stripe, and its [`OWNER`] (whose
/// destructor hands the stripe on) comes to life.
#[cold]
fn take_stripe() -> usize {
    // A thread past its thread-locals' destructors shares.
    let stripe = OWNER.try_with(|_| claim(&OWNED)).unwrap_or(SHARED);
    STRIPE.set(stripe);
    stripe
}

/// Owns this thread's stripe until the thread exits.
struct Owner;

impl Drop for Owner {
    fn drop(&mut self) {
        release(&OWNED, STRIPE.replace(SHARED));
    }
}

/// Takes the first stripe of `owned` that nobody owns, or [`SHARED`].
/// Acquire: the sum comes with it.
fn claim(owned: &[AtomicBool]) -> usize {
    owned
        .iter()
        .position(|owned| {
            owned
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
        .unwrap_or(SHARED)
}

/// Hands stripe `stripe` of `owned` on, with what its owner added
/// (Release); [`SHARED`] has no owner.
fn release(owned: &[AtomicBool], stripe: usize) {
    if let Some(owned) = owned.get(stripe) {
        owned.store(false, Ordering::Release);
    }
}

/// What id `id` adds to a checksum: the id spread over 64 bits
/// (splitmix64's finaliser). With the plain ids, lost and repeated events
/// could make up for each other (ids 1 and 2 twice, 3 never, sum the same).
#[inline]
fn mark(id: u64) -> u64 {
    let mut x = id;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The checksum of the ids `1..=events`, each seen once.
fn checksum_of(events: u64) -> u64 {
    (1..=events).fold(0, |sum, id| sum.wrapping_add(mark(id)))
}

/// Some handler's checksum is not that of the ids published: an event was
/// lost, duplicated or corrupted on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Events published (ids `1..=events`).
    pub events: u64,
    /// What each handler's checksum should be.
    pub expected: u64,
    /// What each handler's checksum was.
    pub actual: Vec<u64>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wrong = self.actual.iter().filter(|&&sum| sum != self.expected);
        write!(
            f,
            "checksum mismatch over ids 1..={}: {} of {} handlers wrong; \
             per handler expected {:#x}, got {:x?}",
            self.events,
            wrong.count(),
            self.actual.len(),
            self.expected,
            self.actual,
        )
    }
}

impl std::error::Error for Mismatch {}

#[cfg(test)]
mod tests {
    // Paths instead of `use`: see the note in `publishers.rs`.
    #[test]
    fn settles_every_id_once_and_resets() {
        let tally = super::Tally::new(2);
        for handler in 0..2 {
            (1..=10).for_each(|id| tally.add(handler, id));
        }
        assert_eq!(tally.settle(10), Ok(()));
        assert_eq!(tally.settle(0), Ok(()), "settle zeroes the checksums");
    }

    #[test]
    fn a_lost_or_duplicated_event_is_a_mismatch() {
        let tally = super::Tally::new(2);
        (1..=10).for_each(|id| tally.add(0, id));
        (1..=10).chain([3]).for_each(|id| tally.add(1, id));
        let mismatch = tally.settle(10).unwrap_err();
        let expected = super::checksum_of(10);
        assert_eq!(
            (mismatch.expected, &mismatch.actual[..]),
            (
                expected,
                &[expected, expected.wrapping_add(super::mark(3))][..]
            )
        );
        assert_eq!(
            mismatch.to_string(),
            format!(
                "checksum mismatch over ids 1..=10: 1 of 2 handlers wrong; \
                 per handler expected {expected:#x}, got {:x?}",
                mismatch.actual
            )
        );
    }

    #[test]
    fn lost_events_made_up_for_by_repeated_ones_are_a_mismatch() {
        let tally = super::Tally::new(1);
        // 3 never, 1 and 2 twice: the plain ids would sum the same.
        [1, 2, 4, 5, 6, 7, 8, 9, 10, 1, 2]
            .into_iter()
            .for_each(|id| tally.add(0, id));
        assert!(tally.settle(10).is_err());
    }

    #[test]
    fn threads_adding_to_one_checksum_are_summed() {
        let tally = super::Tally::new(1);
        // More threads alive at once than stripes: some share one. They
        // all wait for each other, so none hands its stripe on early.
        let (threads, adds) = (super::STRIPES as u64 + 3, 1000);
        let all_in = std::sync::Barrier::new(threads as usize);
        std::thread::scope(|scope| {
            for thread in 0..threads {
                let (tally, all_in) = (&tally, &all_in);
                scope.spawn(move || {
                    tally.add(0, thread * adds + 1);
                    all_in.wait();
                    (2..=adds).for_each(|id| tally.add(0, thread * adds + id));
                });
            }
        });
        assert_eq!(tally.settle(threads * adds), Ok(()));
    }

    #[test]
    fn a_thread_hands_its_stripe_on_when_it_exits() {
        let tally = super::Tally::new(1);
        // One thread after another, each adding once: without the hand-on
        // no more than STRIPES of them would ever own one (other tests'
        // threads may hold a few meanwhile, never all for long).
        let threads = super::STRIPES as u64 * 3;
        let owned = (0..threads)
            .filter(|&thread| {
                let tally = &tally;
                std::thread::scope(|scope| {
                    scope
                        .spawn(move || {
                            tally.add(0, thread + 1);
                            super::STRIPE.get() != super::SHARED
                        })
                        .join()
                        .unwrap()
                })
            })
            .count();
        assert!(
            owned > super::STRIPES,
            "{owned} of {threads} owned a stripe"
        );
        assert_eq!(tally.settle(threads), Ok(()));
    }

    #[test]
    fn a_stripe_has_one_owner_at_a_time() {
        use std::sync::atomic::AtomicBool;
        let owned = [const { AtomicBool::new(false) }; super::STRIPES];
        let mut taken: Vec<usize> = (0..super::STRIPES).map(|_| super::claim(&owned)).collect();
        taken.sort_unstable();
        assert_eq!(taken, (0..super::STRIPES).collect::<Vec<_>>());
        assert_eq!(super::claim(&owned), super::SHARED, "all owned: shared");
        super::release(&owned, super::SHARED);
        assert_eq!(super::claim(&owned), super::SHARED, "shared has no owner");
        super::release(&owned, 5);
        assert_eq!(super::claim(&owned), 5, "a stripe handed on is taken again");
    }
}
