//! The retry schedule: failed runs waiting out their backoff, and released
//! events waiting for a worker.
//!
//! A failed run that may be retried becomes a [`RetryTask`] in a min-heap
//! ordered by due time; an event whose dependency was handled (see
//! `completion`) becomes a [`Task::Release`], due at once; the deadline of
//! an async wait becomes a [`Task::Wake`], so the workers are the bus's
//! timer and no runtime needs to provide one. None blocks
//! a worker or holds up other events: any worker takes due tasks at the
//! top of its loop (a lock-free check of `next_due` first) and runs them,
//! and a worker about to park sleeps no longer than until the next due
//! time. What keeps `flush` waiting for them is the executor's business
//! (`completion`), not the schedule's.

use std::cmp::Ordering as Order;
use std::collections::BinaryHeap;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::envelope::Envelope;
use crate::registry::Subscriber;
use crate::sync::{lock, Arc, AtomicU64, AtomicUsize, Mutex, Ordering};

/// Work that waits for its time.
pub(crate) enum Task {
    /// One handler's next run on one event.
    Retry(RetryTask),
    /// An event whose dependency is fully handled: to be run in full.
    Release(Arc<Envelope>),
    /// A deadline of an async wait (`request`, `gather`): wakes its task.
    Wake(Waker),
    /// An async run ended: the later stages it held back, and the key.
    Continue(Arc<Envelope>, Arc<Continuation>),
}

impl Task {
    /// The event the task is about, if any.
    pub(crate) fn envelope(&self) -> Option<&Envelope> {
        match self {
            Task::Retry(retry) => Some(&retry.envelope),
            Task::Release(envelope) | Task::Continue(envelope, _) => Some(envelope),
            Task::Wake(_) => None,
        }
    }
}

/// One handler's next run on one event.
pub(crate) struct RetryTask {
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) subscriber: Arc<Subscriber>,
    /// The number of the run to make (2 for the first retry).
    pub(crate) attempt: u32,
    /// What waits for this retry (and its siblings) to end.
    pub(crate) then: Option<Arc<Continuation>>,
}

/// What an event holds back while some of its handlers are retried: the
/// handlers of its later stages (a later stage runs only once every earlier
/// one succeeded or was dead-lettered), and its held key (see `shard`).
/// Each holding retry carries it; the one that ends last (`outstanding`
/// reaches 0) runs `rest`, then releases the key.
pub(crate) struct Continuation {
    pub(crate) outstanding: AtomicUsize,
    pub(crate) rest: Vec<Arc<Subscriber>>,
}

impl Continuation {
    /// One holding retry ended; true for the last one, which must go on.
    pub(crate) fn resolve(&self) -> bool {
        // AcqRel: the last one sees everything the others did before.
        self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

struct Queued {
    due: Instant,
    seq: u64,
    task: Task,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Order> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest due comes first.
    fn cmp(&self, other: &Self) -> Order {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Queued>,
    seq: u64,
}

/// See the module docs.
pub(crate) struct RetrySchedule {
    state: Mutex<State>,
    /// Nanoseconds from `origin` to the earliest due task; `u64::MAX` when
    /// there is none.
    next_due: AtomicU64,
    origin: Instant,
}

const NONE_DUE: u64 = u64::MAX;

impl RetrySchedule {
    pub(crate) fn new() -> Self {
        RetrySchedule {
            state: Mutex::new(State::default()),
            next_due: AtomicU64::new(NONE_DUE),
            origin: Instant::now(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(NONE_DUE - 1)
    }

    fn publish_next_due(&self, state: &State) {
        let next = state.heap.peek().map_or(NONE_DUE, |q| self.nanos(q.due));
        self.next_due.store(next, Ordering::Release);
    }

    /// Queues `task` to run after `pause`.
    pub(crate) fn schedule(&self, task: Task, pause: Duration) {
        let mut state = lock(&self.state);
        state.seq += 1;
        let seq = state.seq;
        state.heap.push(Queued {
            due: Instant::now() + pause,
            seq,
            task,
        });
        self.publish_next_due(&state);
    }

    /// Whether a task's time has come; no lock.
    #[inline]
    pub(crate) fn has_due(&self) -> bool {
        let next = self.next_due.load(Ordering::Acquire);
        next != NONE_DUE && self.nanos(Instant::now()) >= next
    }

    /// The earliest task whose time has come, if any; without a lock when
    /// nothing is due.
    #[inline]
    pub(crate) fn pop_due(&self) -> Option<Task> {
        if !self.has_due() {
            return None;
        }
        let mut state = lock(&self.state);
        let due = state.heap.peek().is_some_and(|q| q.due <= Instant::now());
        let task = if due {
            state.heap.pop().map(|q| q.task)
        } else {
            None
        };
        self.publish_next_due(&state);
        task
    }

    /// How long until the earliest task is due (zero if overdue).
    pub(crate) fn until_next_due(&self) -> Option<Duration> {
        let next = self.next_due.load(Ordering::Acquire);
        (next != NONE_DUE).then(|| {
            Duration::from_nanos(next)
                .saturating_sub(Instant::now().saturating_duration_since(self.origin))
        })
    }
}

impl std::fmt::Debug for RetrySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("RetrySchedule")
            .field("queued", &state.heap.len())
            .finish()
    }
}
