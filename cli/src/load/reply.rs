//! The publisher's side of a round trip on an implementation without a
//! receive call of its own (diana-bus handlers, the disruptor's consumer
//! closures): a slot the replying handler writes the answered id into, and
//! that the publisher waits on, spinning briefly, then yielding, then
//! parking, because on a machine with fewer cores than threads pure
//! spinning collapses.
//!
//! The spin is skipped while spins keep missing their answer: then the
//! replier is most likely waiting for this very core. The scheduler can
//! leave the publisher and the replying worker on one core with the other
//! idle for a whole run (both run every few microseconds, so neither is
//! ever cold enough to move), and there every spin held the core the
//! answer needed: a round trip took the spin plus two switches, and the
//! p99 was 7 µs in such runs against 0.7 µs in the others (`run --profile
//! latency`, with `perf stat -e context-switches` telling the runs apart:
//! about 10,000 switches against 50).
//!
//! Protocol: the publisher announces sleep (`asleep = true`) and then
//! re-reads `answered`; the replier writes `answered` and then swaps
//! `asleep` to false, unparking the publisher if it was set. Both pairs are
//! SeqCst, so in their single total order either the publisher's re-read
//! sees the answer or the replier's swap sees the announcement: no lost
//! wake-up. A stale unpark only makes a later park return early, and every
//! park is in a loop that re-reads `answered`.

use std::hint;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long the publisher re-reads `answered` before it parks: about what a
/// reply takes when both sides are running. A time, not a count of spins,
/// because a spin hint costs from a few to over a hundred cycles depending
/// on the processor; spinning longer steals the core the reply needs when
/// threads outnumber cores.
const SPIN_FOR: Duration = Duration::from_micros(3);
/// How long it then yields its core between re-reads before it parks, as
/// crossbeam's and kanal's receivers do: a yield returns at once when no
/// other thread wants the core, and hands it over when one does, while a
/// park and its unpark cost tens of microseconds here.
const YIELD_FOR: Duration = Duration::from_micros(50);

/// Spins in vain in a row after which waits stop spinning.
const VAIN_SPINS: u32 = 4;
/// A wait that does not spin tries spinning again after this many waits.
const PROBE_EVERY: u32 = 256;

/// Where the reply to the last ping lands.
#[derive(Debug, Default)]
pub struct Reply {
    answered: AtomicU64,
    asleep: AtomicBool,
    waiter: Mutex<Option<Thread>>,
    /// The waiter's own state (Relaxed: no other thread reads it): spins
    /// in vain in a row, and waits since the last spin while they are
    /// [`VAIN_SPINS`] or more.
    vain_spins: AtomicU32,
    waits_without_spin: AtomicU32,
}

impl Reply {
    /// The calling thread becomes the one [`Reply::wait`] may park and
    /// [`Reply::answer`] unparks; call it before waiting on a new thread.
    pub fn wait_on_this_thread(&self) {
        *self.waiter.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread::current());
    }

    /// The replier's side: `id` is answered.
    pub fn answer(&self, id: u64) {
        self.answered.store(id, Ordering::SeqCst);
        if self.asleep.swap(false, Ordering::SeqCst) {
            if let Some(waiter) = &*self.waiter.lock().unwrap_or_else(|p| p.into_inner()) {
                waiter.unpark();
            }
        }
    }

    /// Whether this wait spins first: unless the last [`VAIN_SPINS`] spins
    /// were in vain, which is what spinning on the core the replier needs
    /// looks like. Then one wait in [`PROBE_EVERY`] tries again, in case
    /// the scheduler has since moved the replier to another core.
    fn should_spin(&self) -> bool {
        if self.vain_spins.load(Ordering::Relaxed) < VAIN_SPINS {
            return true;
        }
        let waits = self.waits_without_spin.load(Ordering::Relaxed) + 1;
        let probe = waits == PROBE_EVERY;
        self.waits_without_spin
            .store(if probe { 0 } else { waits }, Ordering::Relaxed);
        probe
    }

    /// The publisher's side: returns once `id` is answered.
    pub fn wait(&self, id: u64) {
        let waiting = Instant::now();
        if self.should_spin() {
            while waiting.elapsed() < SPIN_FOR {
                if self.answered.load(Ordering::Acquire) == id {
                    self.vain_spins.store(0, Ordering::Relaxed);
                    return;
                }
                hint::spin_loop();
            }
            self.vain_spins.fetch_add(1, Ordering::Relaxed);
        }
        while waiting.elapsed() < YIELD_FOR {
            if self.answered.load(Ordering::Acquire) == id {
                return;
            }
            thread::yield_now();
        }
        loop {
            self.asleep.store(true, Ordering::SeqCst);
            if self.answered.load(Ordering::SeqCst) == id {
                self.asleep.store(false, Ordering::Relaxed);
                return;
            }
            thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_answer_wakes_the_waiter() {
        let reply = std::sync::Arc::new(super::Reply::default());
        reply.wait_on_this_thread();
        let (asks, answers) = std::sync::mpsc::channel::<u64>();
        let replier = {
            let reply = reply.clone();
            std::thread::spawn(move || {
                for id in answers {
                    if id % 7 == 0 {
                        // Late enough that the waiter has parked.
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    reply.answer(id);
                }
            })
        };
        for id in 1..=200 {
            asks.send(id).unwrap();
            reply.wait(id);
        }
        drop(asks);
        replier.join().unwrap();
    }

    #[test]
    fn a_wait_counts_whether_its_spin_saw_the_answer() {
        use std::sync::atomic::Ordering::Relaxed;
        let reply = std::sync::Arc::new(super::Reply::default());
        reply.wait_on_this_thread();
        // Answered long after the spin: in vain.
        let replier = {
            let reply = reply.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                reply.answer(1);
            })
        };
        reply.wait(1);
        replier.join().unwrap();
        assert_eq!(reply.vain_spins.load(Relaxed), 1);
        // Answered already: the spin sees it, and the count starts over.
        reply.answer(2);
        reply.wait(2);
        assert_eq!(reply.vain_spins.load(Relaxed), 0);
    }

    #[test]
    fn spins_stop_after_spinning_in_vain_and_are_tried_again() {
        use std::sync::atomic::Ordering::Relaxed;
        let reply = super::Reply::default();
        let spins = |waits| (0..waits).filter(|_| reply.should_spin()).count();
        // Spins in vain, up to the limit: each wait until then spins.
        for _ in 0..super::VAIN_SPINS {
            assert!(reply.should_spin());
            reply.vain_spins.fetch_add(1, Relaxed);
        }
        // At the limit: one wait in PROBE_EVERY spins.
        assert_eq!(spins(super::PROBE_EVERY as usize * 3), 3);
        // A probe that sees its answer ends the pause.
        reply.vain_spins.store(0, Relaxed);
        assert_eq!(spins(10), 10);
    }
}
