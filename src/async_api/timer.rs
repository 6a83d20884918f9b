//! The timer of async waits' deadlines (`request`, `gather`, an async
//! handler's retry pause): a thread of the bus's own, started on the
//! first deadline, that sleeps until the earliest one and wakes its task.
//! Not the workers: a worker held in a long handler would make every
//! deadline late, and no runtime need provide a timer.
//!
//! # Protocol
//!
//! One mutex guards the queued wake-ups (ordered by due time, then by a
//! sequence number) and the `stopped` flag; a condition variable
//! (`changed`) says the state changed.
//! - [`Timer::wake_at`] queues a wake-up under the lock, then notifies
//!   `changed` if it is the earliest.
//! - [`Timer::cancel`] takes one out under the lock (a wake-up already
//!   taken by the thread can no longer be cancelled: its task may be
//!   woken once more, which a task must tolerate anyway).
//! - The thread, under the lock: takes out every wake-up that is due; if
//!   there were any, lets go of the lock, wakes them (a waker is user
//!   code) and starts over. Otherwise it exits if `stopped`, or waits on
//!   `changed` until the earliest due time (with none queued, until
//!   notified). It looks at the state under the lock before every wait,
//!   and the state only changes under the lock before a notification, so
//!   no wake-up is missed: one queued before the look is seen, one after
//!   notifies the waiting thread.
//! - Dropping the timer sets `stopped` and notifies; the thread exits
//!   without being joined (a waker it calls may drop the bus, and with it
//!   the timer, on the timer's own thread).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::task::Waker;
use std::time::Instant;

use crate::caught;
use crate::sync::{lock, thread, thread_local, Arc, Condvar, Mutex, MutexGuard};

thread_local! {
    // Not a `const` initialiser: loom's `thread_local!` does not take one.
    #[allow(clippy::missing_const_for_thread_local)]
    /// Whether this thread is a timer's.
    static ON_TIMER_THREAD: Cell<bool> = Cell::new(false);
}

/// Whether the calling thread is a bus's timer thread, running a waker:
/// it must not block on a bus's drain, which may wait for async runs
/// whose deadlines this very thread keeps.
pub(crate) fn on_timer_thread() -> bool {
    ON_TIMER_THREAD.with(Cell::get)
}

/// See the module docs.
#[derive(Debug)]
pub struct Timer {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    wakes: BTreeMap<WakeKey, Waker>,
    seq: u64,
    /// Whether the thread was started (or failed to start).
    started: bool,
    stopped: bool,
}

/// A queued wake-up, for [`Timer::cancel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WakeKey {
    due: Instant,
    seq: u64,
}

/// A timer whose thread starts on the first [`Timer::wake_at`].
impl Default for Timer {
    fn default() -> Self {
        Timer {
            shared: Arc::new(Shared::default()),
        }
    }
}

impl Timer {
    /// Wakes `waker` at `due`, unless [`Timer::cancel`] takes it back first.
    pub fn wake_at(&self, due: Instant, waker: Waker) -> WakeKey {
        let (key, earliest, start) = {
            let mut state = lock(&self.shared.state);
            state.seq += 1;
            let key = WakeKey {
                due,
                seq: state.seq,
            };
            state.wakes.insert(key, waker);
            (
                key,
                state.wakes.first_key_value().map(|(k, _)| *k) == Some(key),
                !std::mem::replace(&mut state.started, true),
            )
        };
        if start {
            self.start();
        }
        if earliest {
            self.shared.changed.notify_one();
        }
        key
    }

    /// Takes back a wake-up whose wait ended first, so that it neither
    /// wakes a finished task nor lingers until its time.
    pub fn cancel(&self, key: WakeKey) {
        let taken = lock(&self.shared.state).wakes.remove(&key);
        drop(taken); // after the lock: a waker's drop is user code
    }

    /// The wake-ups queued.
    #[cfg(all(test, not(diana_bus_loom)))]
    pub(crate) fn queued(&self) -> usize {
        lock(&self.shared.state).wakes.len()
    }

    /// Starts the thread (the first `wake_at` does, once).
    fn start(&self) {
        let shared = Arc::clone(&self.shared);
        let spawned = thread::Builder::new()
            .name("diana-bus-timer".into())
            .spawn(move || shared.run());
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the timer thread: async waits will not time out");
        }
    }
}

impl Shared {
    fn run(&self) {
        ON_TIMER_THREAD.with(|on| on.set(true));
        let mut state = lock(&self.state);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(first) = state.wakes.first_entry().filter(|w| w.key().due <= now) {
                due.push(first.remove());
            }
            if !due.is_empty() {
                drop(state);
                due.into_iter().for_each(caught::wake);
                state = lock(&self.state);
                continue;
            }
            if state.stopped {
                return;
            }
            state = self.wait(state, now);
        }
    }

    /// Waits for a change, or until the earliest wake-up is due.
    fn wait<'s>(&self, state: MutexGuard<'s, State>, now: Instant) -> MutexGuard<'s, State> {
        match state.wakes.first_key_value().map(|(key, _)| key.due - now) {
            Some(pause) => {
                self.changed
                    .wait_timeout(state, pause)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0
            }
            None => self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        lock(&self.shared.state).stopped = true;
        self.shared.changed.notify_one();
    }
}

#[cfg(all(test, not(diana_bus_loom)))]
mod tests {
    use super::*;
    use crate::async_api::counting_waker::CountingWaker;
    use std::time::Duration;

    #[test]
    fn wakes_a_task_due_before_the_one_it_sleeps_towards_and_not_a_cancelled_one() {
        let timer = Timer::default();
        let (late, late_waker) = CountingWaker::new();
        let (early, early_waker) = CountingWaker::new();
        let (cancelled, cancelled_waker) = CountingWaker::new();
        let start = Instant::now();
        timer.wake_at(start + Duration::from_secs(600), late_waker);
        let key = timer.wake_at(start + Duration::from_millis(20), cancelled_waker);
        timer.cancel(key);
        // the thread now sleeps towards `late` (on a slow machine it may
        // not yet, and the test proves less)
        std::thread::sleep(Duration::from_millis(10));
        timer.wake_at(Instant::now() + Duration::from_millis(20), early_waker);
        early.wait_for(1);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!((late.wakes(), cancelled.wakes()), (0, 0));
        assert_eq!(timer.queued(), 1, "only the late one is left");
    }
}
