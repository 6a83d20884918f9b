//! Per-handler checksums: each handler adds each id it sees, spread over
//! 64 bits ([`mark`]), into its own checksum, and a run ends by comparing
//! every checksum with that of the ids published.
//!
//! A checksum is kept in [`STRIPES`] slots, and each thread adds into a
//! slot of its own (settling sums them). A diana-bus handler runs on every
//! worker, events of different keys in parallel, and with one atomic per
//! handler each delivery moved that atomic's cache line between the
//! workers' cores: `fanout4` measured the line, at a third of the bus's
//! speed (31 M deliveries/s against 92 M with stripes, in alternating
//! runs). A peer's handler runs on one thread, where stripes change
//! nothing; every implementation runs this same code.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Slots per checksum: threads adding at once to one handler's checksum
/// get slots of their own while there are no more of them than this.
const STRIPES: usize = 16;

/// One checksum per handler, in stripes.
#[derive(Debug)]
pub struct Tally {
    /// Handler `h`'s stripes are `slots[h * STRIPES..][..STRIPES]`.
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
            slots: (0..handlers * STRIPES).map(|_| Slot::default()).collect(),
        }
    }

    /// Adds `id` to the checksum of handler `handler`.
    ///
    /// Relaxed is enough: the slots are read only after the run, once the
    /// implementation has synchronised with every handler call (flush, or
    /// joining the consumer threads).
    #[inline]
    pub fn add(&self, handler: usize, id: u64) {
        self.slots[handler * STRIPES + stripe()]
            .0
            .fetch_add(mark(id), Ordering::Relaxed);
    }

    /// Checks that every handler saw each of the ids `1..=events` once,
    /// and zeroes the checksums for the next run.
    pub fn settle(&self, events: u64) -> Result<(), Mismatch> {
        let expected = checksum_of(events);
        let actual: Vec<u64> = self
            .slots
            .chunks(STRIPES)
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

/// This thread's stripe: threads take them in turn as they first add.
#[inline]
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<Option<usize>> = const { Cell::new(None) };
    }
    STRIPE.with(|stripe| {
        stripe.get().unwrap_or_else(|| {
            let taken = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            stripe.set(Some(taken));
            taken
        })
    })
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
        // More threads than stripes: some share one.
        std::thread::scope(|scope| {
            for thread in 0..super::STRIPES as u64 + 3 {
                let tally = &tally;
                scope.spawn(move || (1..=100).for_each(|id| tally.add(0, thread * 100 + id)));
            }
        });
        assert_eq!(tally.settle((super::STRIPES as u64 + 3) * 100), Ok(()));
    }
}
