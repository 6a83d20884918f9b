//! A deadline for an async wait, kept by the bus's timer (see `timer`).

use std::task::{Context as TaskContext, Waker};
use std::time::{Duration, Instant};

use super::timer::WakeKey;
use crate::executor::Executor;

/// When an async wait gives up, and the wake-up the bus's timer holds for
/// it meanwhile; dropping the deadline (the wait ended) takes the wake-up back.
#[derive(Debug)]
pub(crate) struct Deadline<'e> {
    executor: &'e Executor,
    at: Option<Instant>,
    armed: Option<(Waker, WakeKey)>,
}

impl<'e> Deadline<'e> {
    /// `after` from now, or never (also when `after` is past what an
    /// `Instant` can hold, as `Duration::MAX` is).
    pub(crate) fn after(executor: &'e Executor, after: Option<Duration>) -> Self {
        Deadline {
            executor,
            at: after.and_then(|after| Instant::now().checked_add(after)),
            armed: None,
        }
    }

    /// Whether the deadline has passed; if not, makes sure the timer
    /// wakes this task when it does.
    pub(crate) fn passed(&mut self, cx: &TaskContext<'_>) -> bool {
        let Some(at) = self.at else {
            return false;
        };
        if Instant::now() >= at {
            return true;
        }
        if !self
            .armed
            .as_ref()
            .is_some_and(|(waker, _)| waker.will_wake(cx.waker()))
        {
            self.disarm();
            let key = self.executor.timer.wake_at(at, cx.waker().clone());
            self.armed = Some((cx.waker().clone(), key));
        }
        false
    }

    fn disarm(&mut self) {
        if let Some((_, key)) = self.armed.take() {
            self.executor.timer.cancel(key);
        }
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        self.disarm();
    }
}

#[cfg(all(test, not(diana_bus_loom)))]
mod tests {
    use super::*;
    use crate::async_api::counting_waker::CountingWaker;
    use crate::Bus;

    #[test]
    fn a_deadline_armed_once_is_taken_back_from_the_timer_when_the_wait_ends() {
        let bus = Bus::builder().workers(1).build().unwrap();
        let timer = &bus.executor().timer;
        let (count, waker) = CountingWaker::new();
        let cx = TaskContext::from_waker(&waker);
        let mut deadline = Deadline::after(bus.executor(), Some(Duration::from_secs(600)));
        assert!(!deadline.passed(&cx));
        assert!(!deadline.passed(&cx));
        assert_eq!(timer.queued(), 1, "armed once for the same waker");
        drop(deadline);
        assert_eq!(timer.queued(), 0, "taken back");
        let mut deadline = Deadline::after(bus.executor(), Some(Duration::from_millis(20)));
        assert!(!deadline.passed(&cx));
        count.wait_for(1);
        assert!(deadline.passed(&cx));
    }
}
