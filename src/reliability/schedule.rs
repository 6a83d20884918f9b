//! The retry schedule: failed runs waiting out their backoff, and released
//! events waiting for a worker.
//!
//! A failed run that may be retried becomes a [`RetryTask`] in a queue
//! ordered by due time (a B-tree); an event whose dependency was handled (see `completion`)
//! becomes a [`Task::Release`], due at once; an async run that ended
//! becomes a [`Task::Continue`]. (The deadlines of async waits are the
//! timer's, `async_api::timer`.) None blocks
//! a worker or holds up other events: any worker takes due tasks at the
//! top of its loop (a lock-free check of `next_due` first) and runs them,
//! and a worker about to park sleeps no longer than until the next due
//! time. What keeps `flush` waiting for them is the executor's business
//! (`completion`), not the schedule's.

use std::collections::BTreeMap;
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
    /// An async run ended: the later stages it held back, and the key.
    Continue(Arc<Envelope>, Arc<Continuation>),
}

impl Task {
    /// The event the task is about.
    pub(crate) fn envelope(&self) -> &Envelope {
        match self {
            Task::Retry(retry) => &retry.envelope,
            Task::Release(envelope) | Task::Continue(envelope, _) => envelope,
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

/// Where a task waits: its due time, and a sequence number that keeps
/// tasks due at the same instant apart (and in the order queued).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TaskKey {
    due: Instant,
    seq: u64,
}

#[derive(Default)]
struct State {
    tasks: BTreeMap<TaskKey, Task>,
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

/// The longest pause a task is queued for: a century, never in practice.
/// Longer pauses (`Duration::MAX` is one) would overflow an `Instant`.
const LONGEST_PAUSE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// When a task queued at `now` for `pause` comes due.
fn due_after(now: Instant, pause: Duration) -> Instant {
    now.checked_add(pause.min(LONGEST_PAUSE)).unwrap_or(now)
}

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
        let next = state
            .tasks
            .first_key_value()
            .map_or(NONE_DUE, |(key, _)| self.nanos(key.due));
        self.next_due.store(next, Ordering::Release);
    }

    /// Queues `task` to run after `pause`; at once, a retry of a handler
    /// that was unsubscribed (it ends its series without running). Read
    /// under the lock that `expedite` takes after the flag is set, so a
    /// retry queued too late for `expedite` sees the flag.
    pub(crate) fn schedule(&self, task: Task, pause: Duration) {
        let mut state = lock(&self.state);
        let pause = match &task {
            Task::Retry(retry) if retry.subscriber.is_unsubscribed() => Duration::ZERO,
            _ => pause,
        };
        state.seq += 1;
        let key = TaskKey {
            due: due_after(Instant::now(), pause),
            seq: state.seq,
        };
        state.tasks.insert(key, task);
        self.publish_next_due(&state);
    }

    /// Makes the tasks that `now` selects due at once (keeping their order
    /// among themselves); returns how many it moved.
    pub(crate) fn expedite(&self, now: impl Fn(&Task) -> bool) -> usize {
        let mut state = lock(&self.state);
        let keys: Vec<TaskKey> = state
            .tasks
            .iter()
            .filter(|(_, task)| now(task))
            .map(|(key, _)| *key)
            .collect();
        let due = Instant::now();
        for key in &keys {
            if let Some(task) = state.tasks.remove(key) {
                state.tasks.insert(TaskKey { due, seq: key.seq }, task);
            }
        }
        self.publish_next_due(&state);
        keys.len()
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
        let now = Instant::now();
        let task = state
            .tasks
            .first_entry()
            .filter(|first| first.key().due <= now)
            .map(|first| first.remove());
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
            .field("queued", &state.tasks.len())
            .finish()
    }
}

#[cfg(all(test, not(diana_bus_loom)))]
mod tests {
    use super::*;
    use crate::event::{EventId, Meta, Routing};

    struct Any;
    impl crate::Event for Any {}

    /// A released event, told apart by its id.
    fn release(id: u128) -> Task {
        let routing = Routing {
            id: EventId(id),
            ..Routing::resolve(&Any, Meta::new(), 0)
        };
        Task::Release(Arc::new(Envelope::new(routing, Any)))
    }

    fn id(task: Option<Task>) -> Option<u128> {
        task.map(|task| task.envelope().routing.id.0)
    }

    #[test]
    fn tasks_come_due_in_time_order() {
        let schedule = RetrySchedule::new();
        schedule.schedule(release(1), Duration::from_millis(20));
        schedule.schedule(release(2), Duration::ZERO);
        schedule.schedule(release(3), Duration::from_secs(60));
        schedule.schedule(release(4), Duration::ZERO);
        assert_eq!(id(schedule.pop_due()), Some(2), "due now, queued first");
        assert_eq!(id(schedule.pop_due()), Some(4));
        assert!(schedule.pop_due().is_none(), "the next is 20 ms away");
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(id(schedule.pop_due()), Some(1));
        assert!(schedule.pop_due().is_none());
        assert!(schedule.until_next_due().unwrap() > Duration::from_secs(50));
    }

    #[test]
    fn expedited_tasks_come_due_at_once_and_the_others_keep_their_time() {
        let schedule = RetrySchedule::new();
        schedule.schedule(release(1), Duration::from_secs(60));
        schedule.schedule(release(2), Duration::from_secs(60));
        schedule.schedule(release(3), Duration::from_secs(30));
        assert!(schedule.pop_due().is_none());
        let odd = |task: &Task| task.envelope().routing.id.0 % 2 == 1;
        assert_eq!(schedule.expedite(odd), 2);
        assert_eq!(id(schedule.pop_due()), Some(1));
        assert_eq!(id(schedule.pop_due()), Some(3));
        assert!(schedule.pop_due().is_none());
        assert!(schedule.until_next_due().unwrap() > Duration::from_secs(50));
    }

    #[test]
    fn a_pause_too_long_for_an_instant_waits_a_century() {
        let schedule = RetrySchedule::new();
        schedule.schedule(release(1), Duration::MAX);
        assert!(schedule.pop_due().is_none());
        let wait = schedule.until_next_due().unwrap();
        assert!(wait > LONGEST_PAUSE - Duration::from_secs(60) && wait <= LONGEST_PAUSE);
    }
}
