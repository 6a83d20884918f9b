//! A deadline for an async wait, kept by the bus's workers.

use std::task::{Context as TaskContext, Waker};
use std::time::{Duration, Instant};

use crate::executor::Executor;
use crate::reliability::schedule::TaskKey;

/// When an async wait gives up, and the wake-up the workers hold for it
/// meanwhile; dropping the deadline (the wait ended) takes the wake-up back.
#[derive(Debug)]
pub(crate) struct Deadline<'e> {
    executor: &'e Executor,
    at: Option<Instant>,
    armed: Option<(Waker, TaskKey)>,
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

    /// Whether the deadline has passed; if not, makes sure the workers
    /// wake this task when it does.
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
            let key = self.executor.wake_at(at, cx.waker().clone());
            self.armed = Some((cx.waker().clone(), key));
        }
        false
    }

    fn disarm(&mut self) {
        if let Some((_, key)) = self.armed.take() {
            self.executor.cancel_wake(key);
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
    use crate::Bus;

    #[test]
    fn an_armed_deadline_is_taken_back_from_the_workers_when_the_wait_ends() {
        let bus = Bus::builder().workers(1).build().unwrap();
        let executor = bus.executor();
        let cx = TaskContext::from_waker(Waker::noop());
        let mut deadline = Deadline::after(executor, Some(Duration::from_secs(60)));
        assert!(!deadline.passed(&cx));
        assert!(!deadline.passed(&cx), "armed once for the same waker");
        assert!(executor.retries.until_next_due().is_some());
        drop(deadline);
        assert_eq!(executor.retries.until_next_due(), None);
    }
}
