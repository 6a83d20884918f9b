//! Parking an idle worker without losing a wake-up, and waiting on a
//! condition with a lock only on the slow path.
//!
//! # Sleeper (one per worker)
//!
//! The worker announces sleep, re-checks for work, then parks; a producer
//! publishes work, then looks for a sleeper:
//!
//! ```text
//! worker                              producer
//! sleeping = true        (W1)         push: tail CAS (SeqCst)      (P1)
//! fence(SeqCst)          (W2)         [loom build: fence(SeqCst)]  (P2)
//!                                     write slot, stamp
//! any work? (tail, ...)  (W3)         sleeping? (SeqCst) -> unpark (P3)
//! no: park()             (W4)
//! ```
//!
//! W2 and the claim P1 are ordered one way or the other in the single
//! order of `SeqCst` operations. If W2 comes first, P3 sees
//! `sleeping == true` and unparks; if P1 comes first, W3 sees P1's tail
//! and the worker does not park (the argument in full, and why the loom
//! build fences at P2 instead: `ring`, "Memory orderings"). `unpark`
//! before `park` leaves a token, so the unpark cannot fall between W3 and
//! W4. A weaker fence, claim or load allows both reads to miss (the
//! store-buffer litmus test), and the worker sleeps on a pushed event. The
//! `park_wake` loom model checks the fenced form; the release form is
//! argued in `ring`, and its load checked under Miri (this file's test).
//!
//! # WaitQueue
//!
//! The same pattern for threads that wait on a condition (publishers on a
//! full ring, `flush` on progress): the waiter counts itself in `waiters`,
//! fences, then re-checks its condition under `lock` before every wait; the
//! side that makes progress fences, and locks and notifies only if it sees
//! a waiter. The lock closes the window between a waiter's last check and
//! its wait. An async task waits the same way without a thread: it leaves
//! its waker under the lock (counted in `waiters`), fences, and re-checks;
//! `notify` takes every waker left, uncounts and wakes them. The
//! `park_wake` loom models check it for a publisher thread waiting on a
//! full ring, and for a task's waker against another future's `forget`.
//! A task's future that stops waiting (it completed, or was dropped) takes
//! its waker back under the lock ([`WaitQueue::forget`]), by the
//! [`WaiterId`] it left it under: otherwise a cancelled publish would keep
//! its task alive until the next notify, and cancelled publishes would
//! pile up while a ring stays full. The id is the future's, not the
//! task's: two futures of one task waiting in one queue leave two entries,
//! and one forgetting its own leaves the other's.

use std::task::Waker;

use crate::sync::{
    fence, lock, AtomicBool, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering, Parker,
};

/// One worker's sleep flag and parker.
#[derive(Debug, Default)]
pub struct Sleeper {
    sleeping: AtomicBool,
    parker: Parker,
}

impl Sleeper {
    /// Records the calling thread as the one to unpark; call once, on the
    /// worker thread, before it ever parks.
    pub fn register_current(&self) {
        self.parker.register_current();
    }

    /// W1 and W2: announce sleep. Then check for work; then [`Sleeper::park`]
    /// or [`Sleeper::cancel`].
    pub fn prepare(&self) {
        // Release: a producer that sees `true` also sees the registered
        // thread handle.
        self.sleeping.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
    }

    /// Work was found after [`Sleeper::prepare`]: stay awake.
    pub fn cancel(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// W4: sleep until woken, or for at most `at_most` (the caller
    /// re-checks everything anyway, so early returns are harmless).
    pub fn park(&self, at_most: std::time::Duration) {
        self.parker.park(at_most);
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// P3: the caller has published work (a `SeqCst` claim, or a `SeqCst`
    /// fence after it); wakes the worker if it announced sleep. Only the
    /// worker writes `sleeping`: producers that see it set all unpark,
    /// which is idempotent (a spare token costs the worker one extra turn
    /// of its loop).
    #[inline]
    pub fn wake_if_sleeping(&self) {
        // SeqCst: the protocol above. It includes Acquire, which pairs with
        // `prepare`'s Release, so the thread handle registered before it
        // is visible. (On x86-64 a SeqCst load is a plain load.)
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Unparks the worker unconditionally (shutdown).
    pub fn wake(&self) {
        self.parker.unpark();
    }
}

/// Threads and tasks waiting for a condition that other threads make true.
#[derive(Debug, Default)]
pub struct WaitQueue {
    waiters: AtomicUsize,
    /// The wakers of waiting tasks' futures.
    lock: Mutex<Vec<(WaiterId, Waker)>>,
    cond: Condvar,
}

/// One waiting future, as the [`WaitQueue`]s it leaves its waker with know
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaiterId(u64);

impl WaiterId {
    /// An id no other future has.
    pub fn unique() -> Self {
        // Not part of any protocol: only unique.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        WaiterId(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl WaitQueue {
    /// Calls `attempt` until it returns `Some`, sleeping between tries until
    /// [`WaitQueue::notify`] says something changed.
    pub fn wait_for<R>(&self, mut attempt: impl FnMut() -> Option<R>) -> R {
        if let Some(done) = attempt() {
            return done;
        }
        self.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let mut guard: MutexGuard<'_, Vec<(WaiterId, Waker)>> = lock(&self.lock);
        let done = loop {
            if let Some(done) = attempt() {
                break done;
            }
            guard = self
                .cond
                .wait(guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        done
    }

    /// Whether anyone waits (a snapshot, for a caller that has fenced as
    /// [`WaitQueue::notify`] says).
    #[inline]
    pub fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) > 0
    }

    /// Wakes the waiters, if any. The caller made its change and then
    /// fenced (`SeqCst`), so a waiter that this misses re-checks after the
    /// change.
    #[inline]
    pub fn notify(&self) {
        if self.has_waiters() {
            let wakers = std::mem::take(&mut *lock(&self.lock));
            self.waiters.fetch_sub(wakers.len(), Ordering::Relaxed);
            self.cond.notify_all();
            wakers
                .into_iter()
                .for_each(|(_, waker)| crate::caught::wake(waker));
        }
    }

    /// Leaves the waker of the future `id` until the next
    /// [`WaitQueue::notify`] or [`WaitQueue::forget`] (a later call for
    /// the same `id` replaces it); the caller then re-checks its condition
    /// (after this fence) and returns `Pending` only if it still does not
    /// hold.
    pub fn register(&self, id: WaiterId, waker: &Waker) {
        // Wakers are cloned and dropped outside the lock: they are user
        // code, and dropping one may drop a task whose waiting future then
        // takes its own waker back, from this very queue.
        let mut mine = Some(waker.clone());
        let mut wakers = lock(&self.lock);
        match wakers.iter_mut().find(|(left, _)| *left == id) {
            Some((_, left)) if left.will_wake(waker) => {}
            Some((_, left)) => std::mem::swap(left, mine.as_mut().expect("not yet left")),
            None => {
                wakers.push((id, mine.take().expect("not yet left")));
                self.waiters.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(wakers);
        fence(Ordering::SeqCst);
        drop(mine);
    }

    /// Takes back the waker that `id` left, if it is still here: its
    /// future no longer waits.
    ///
    /// Without the lock when `waiters` reads 0: a publish that waited for
    /// its ring then forgets its id in the quota's and the gate's queues
    /// too, which are empty as a rule. Reading 0 means that the waker is
    /// gone. The count went up when the waker was left, which happens
    /// before this read (on one thread, or on two that handed the future
    /// over, as a runtime's hand-over orders them), so the read sees that
    /// rise or a later value; every fall comes after the rise it undoes
    /// (under the lock, or after taking the wakers under it), so while
    /// this waker is here the count is at least 1.
    pub fn forget(&self, id: WaiterId) {
        if !self.has_waiters() {
            return;
        }
        let mut wakers = lock(&self.lock);
        if let Some(at) = wakers.iter().position(|(left, _)| *left == id) {
            let (_, waker) = wakers.swap_remove(at);
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            drop(wakers);
            drop(waker);
        }
    }
}

// The loom build checks the fenced form of the protocol (`loom-tests`).
#[cfg(all(test, not(diana_bus_loom)))]
mod tests {
    use super::Sleeper;
    use crate::ring::Ring;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    /// The sleeper protocol as the release build runs it: a `SeqCst` claim
    /// in `Ring::push` and a `SeqCst` load in `wake_if_sleeping`, with no
    /// fence on the producer's side, which loom cannot check (see `ring`,
    /// "Memory orderings"). Each round a fresh worker thread announces
    /// sleep and re-checks the ring while the producer pushes: the worker
    /// sees the push or is woken, never neither. The producer pushes once
    /// it reads the worker's `announced` flag, a Relaxed one that orders
    /// nothing: the two sides race as they do in the bus, but in the order
    /// that can lose a wake-up. x86-64 hardware cannot lose it (the claim
    /// is a locked instruction, a full barrier there), weaker hardware
    /// could; under Miri's weak memory emulation this test fails with the
    /// load only `Acquire` (every seed tried), but passes with the claim
    /// only `Relaxed`: it guards the load, not the claim. `cargo +nightly
    /// miri test -p diana-bus --lib park`.
    #[test]
    fn a_push_and_a_sleep_announcement_never_both_go_unseen() {
        // A lost wake-up sleeps out the whole wait (under Miri, in virtual
        // time).
        const WAIT: Duration = Duration::from_secs(60);
        for _ in 0..if cfg!(miri) { 100 } else { 1000 } {
            let ring = Arc::new(Ring::<u32>::new(2));
            let sleeper = Arc::new(Sleeper::default());
            let announced = Arc::new(AtomicBool::new(false));
            let worker = {
                let (ring, sleeper) = (Arc::clone(&ring), Arc::clone(&sleeper));
                let announced = Arc::clone(&announced);
                thread::spawn(move || {
                    sleeper.register_current();
                    sleeper.prepare();
                    announced.store(true, Ordering::Relaxed);
                    if ring.is_empty() {
                        let start = Instant::now();
                        sleeper.park(WAIT);
                        start.elapsed() < WAIT
                    } else {
                        sleeper.cancel();
                        true
                    }
                })
            };
            while !announced.load(Ordering::Relaxed) {
                thread::yield_now();
            }
            ring.push(1).unwrap();
            sleeper.wake_if_sleeping();
            assert!(worker.join().unwrap(), "the worker slept through a push");
        }
    }
}
