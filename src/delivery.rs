//! What became of one event: the [`DeliveryReport`] that
//! `publish_and_wait` resolves to, and the tracker that the workers fill it
//! in through.
//!
//! A tracker rides in the event's envelope. Workers record each handler
//! run's outcome in it as it happens (one branch per run for untracked
//! events), and `completion` marks it done when the event is fully handled
//! (see `Executor::watch`). The one task that waits on it (a
//! `publish_and_wait`, `request` or `gather` future) leaves its waker
//! there and is woken on completion, and, for `request` and `gather`, on
//! every answer. All of it sits behind one small mutex: tracked events are
//! the ones a publisher waits for, so that cost is far below the wait.

use std::fmt;
use std::task::{Poll, Waker};

use crate::event::EventId;
use crate::sync::{lock, Mutex};

/// How the handlers of one event fared, once it is fully handled.
///
/// # Examples
///
/// ```
/// use diana_bus::{Bus, Context, Event, HandlerError, HandlerResult};
///
/// struct Signup;
/// impl Event for Signup {}
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let bus = Bus::builder().workers(1).build()?;
/// bus.subscriber::<Signup>().name("welcome").subscribe(|_: &Signup, _: &Context| -> HandlerResult { Ok(()) });
/// bus.subscriber::<Signup>().name("crm").subscribe(|_: &Signup, _: &Context| -> HandlerResult {
///     Err(HandlerError::permanent("crm is down"))
/// });
/// let report = bus.publish_and_wait(Signup).await?;
/// assert_eq!((report.succeeded, report.failed, report.dead_lettered), (1, 1, 1));
/// assert_eq!(report.failures[0].handler, "crm");
/// assert_eq!(report.failures[0].error, "crm is down");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryReport {
    /// The event's id.
    pub id: EventId,
    /// Handlers that succeeded on the event (at whatever attempt).
    pub succeeded: usize,
    /// Failed runs: every failed or panicked attempt, retried or not.
    pub failed: usize,
    /// Handlers that gave up on the event: it became a dead letter for
    /// each.
    pub dead_lettered: usize,
    /// Handlers unsubscribed while a retry of theirs was pending: their
    /// series ended unfinished, neither succeeded nor dead-lettered.
    pub abandoned: usize,
    /// Every failed run, in the order they happened.
    pub failures: Vec<RunFailure>,
    /// The publish was a duplicate (an explicit id seen within the dedup
    /// window): nothing ran, and the counts are 0.
    pub deduplicated: bool,
}

impl DeliveryReport {
    /// Whether every handler that ran succeeded (vacuously true with
    /// none): none gave up, and none was unsubscribed before a retry.
    pub fn all_succeeded(&self) -> bool {
        self.dead_lettered == 0 && self.abandoned == 0
    }
}

/// One failed handler run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFailure {
    /// The subscription's name.
    pub handler: String,
    /// Which run of that handler it was (1 for the first).
    pub attempt: u32,
    /// The error text (for a panic, "panicked: " and its message).
    pub error: String,
    /// Whether this was the handler's last run: it became a dead letter.
    pub dead_lettered: bool,
}

impl fmt::Display for RunFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (attempt {}): {}",
            self.handler, self.attempt, self.error
        )
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    report: DeliveryReport,
    done: bool,
    waker: Option<Waker>,
}

impl Tracker {
    /// A handler run succeeded.
    pub(crate) fn succeeded(&self) {
        lock(&self.state).report.succeeded += 1;
    }

    /// A handler's retries ended unrun: it was unsubscribed.
    pub(crate) fn abandoned(&self) {
        lock(&self.state).report.abandoned += 1;
    }

    /// A handler run failed; `dead_lettered` if it was its last.
    pub(crate) fn failed(&self, failure: RunFailure) {
        self.change(|state| {
            state.report.failed += 1;
            state.report.dead_lettered += usize::from(failure.dead_lettered);
            state.report.failures.push(failure);
        });
    }

    /// The event is fully handled.
    pub(crate) fn complete(&self) {
        self.change(|state| state.done = true);
    }

    /// Something the waiting task looks at changed (an answer arrived).
    pub(crate) fn notify(&self) {
        self.change(|_| {});
    }

    /// Changes the state, then wakes the waiting task, after letting go of
    /// the lock: a waker may poll its task at once, which takes the lock.
    fn change(&self, change: impl FnOnce(&mut State)) {
        let waker = {
            let mut state = lock(&self.state);
            change(&mut state);
            state.waker.take()
        };
        if let Some(waker) = waker {
            crate::caught::wake(waker);
        }
    }

    /// The report once the event is fully handled; else leaves `waker`.
    pub(crate) fn poll_report(&self, waker: &Waker) -> Poll<DeliveryReport> {
        let mut state = lock(&self.state);
        if state.done {
            return Poll::Ready(std::mem::take(&mut state.report));
        }
        remember(&mut state, waker);
        Poll::Pending
    }

    /// Looks at the progress so far and leaves `waker` for the next
    /// change: whether the event is fully handled, and who gave up.
    pub(crate) fn progress(&self, waker: &Waker) -> Progress {
        let mut state = lock(&self.state);
        remember(&mut state, waker);
        Progress {
            done: state.done,
            dead_letters: state
                .report
                .failures
                .iter()
                .filter(|f| f.dead_lettered)
                .map(|f| (f.handler.clone(), f.error.clone()))
                .collect(),
        }
    }
}

/// A look at a tracked event that is still being handled.
pub(crate) struct Progress {
    pub(crate) done: bool,
    /// (handler, last error) of each handler that gave up.
    pub(crate) dead_letters: Vec<(String, String)>,
}

fn remember(state: &mut State, waker: &Waker) {
    match &state.waker {
        Some(current) if current.will_wake(waker) => {}
        _ => state.waker = Some(waker.clone()),
    }
}
