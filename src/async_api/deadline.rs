//! A deadline for an async wait, kept by the bus's workers.

use std::task::{Context as TaskContext, Waker};
use std::time::{Duration, Instant};

use crate::executor::Executor;

/// When an async wait gives up, and the waker the workers will wake then.
#[derive(Debug)]
pub(crate) struct Deadline {
    at: Option<Instant>,
    armed: Option<Waker>,
}

impl Deadline {
    /// `after` from now, or never.
    pub(crate) fn after(after: Option<Duration>) -> Self {
        Deadline {
            at: after.map(|after| Instant::now() + after),
            armed: None,
        }
    }

    /// Whether the deadline has passed; if not, makes sure the workers
    /// wake this task when it does.
    pub(crate) fn passed(&mut self, executor: &Executor, cx: &TaskContext<'_>) -> bool {
        let Some(at) = self.at else {
            return false;
        };
        if Instant::now() >= at {
            return true;
        }
        if !self.armed.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            executor.wake_at(at, cx.waker().clone());
            self.armed = Some(cx.waker().clone());
        }
        false
    }
}
