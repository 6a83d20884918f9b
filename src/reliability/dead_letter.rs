//! Dead letters: the (event, handler) pairs that failed for good, kept in a
//! bounded store for inspection, replay or draining.

use std::collections::{HashSet, VecDeque};

use crate::envelope::Envelope;
use crate::event::{Event, EventId, TenantId};
use crate::registry::Subscriber;
use crate::sync::{lock, Arc, AtomicU64, Mutex, Ordering};

/// How a letter refers to its subscription: weakly, so that a letter
/// neither keeps an unsubscribed handler (and what it captured, a handle of
/// the bus itself perhaps) alive, nor is replayed to it. Under loom, whose
/// `Arc` has no weak count, strongly.
#[cfg(not(diana_bus_loom))]
type SubscriberRef = std::sync::Weak<Subscriber>;
#[cfg(diana_bus_loom)]
type SubscriberRef = Arc<Subscriber>;

/// One handler's final failure on one event.
///
/// Cloning is cheap: the event is shared, not copied.
#[derive(Clone)]
pub struct DeadLetter {
    envelope: Arc<Envelope>,
    subscriber: SubscriberRef,
    /// The subscription's name, kept for the letter's own life.
    handler: std::sync::Arc<str>,
    error: String,
    attempts: u32,
}

impl DeadLetter {
    /// `subscriber`'s final failure on the event of `envelope`, after
    /// `attempts` runs.
    pub(crate) fn new(
        envelope: Arc<Envelope>,
        subscriber: &Arc<Subscriber>,
        error: String,
        attempts: u32,
    ) -> Self {
        DeadLetter {
            envelope,
            #[cfg(not(diana_bus_loom))]
            subscriber: Arc::downgrade(subscriber),
            #[cfg(diana_bus_loom)]
            subscriber: Arc::clone(subscriber),
            handler: std::sync::Arc::clone(&subscriber.name),
            error,
            attempts,
        }
    }

    /// The letter's subscription, while anything holds it (an
    /// unsubscribed one may still be held: see `is_unsubscribed`).
    pub(crate) fn subscriber(&self) -> Option<Arc<Subscriber>> {
        #[cfg(not(diana_bus_loom))]
        let subscriber = self.subscriber.upgrade();
        #[cfg(diana_bus_loom)]
        let subscriber = Some(Arc::clone(&self.subscriber));
        subscriber
    }

    /// The event, shared.
    pub(crate) fn envelope(&self) -> &Arc<Envelope> {
        &self.envelope
    }
    /// `Event::name` of the event.
    pub fn event_name(&self) -> &'static str {
        self.envelope.payload.name()
    }

    /// The event's id.
    pub fn event_id(&self) -> EventId {
        self.envelope.routing.id
    }

    /// The event's tenant.
    pub fn tenant(&self) -> TenantId {
        self.envelope.routing.tenant
    }

    /// The name of the subscription whose handler failed.
    pub fn handler(&self) -> &str {
        &self.handler
    }

    /// The last error, or the panic's message.
    pub fn error(&self) -> &str {
        &self.error
    }

    /// How many runs were made, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The event itself, if it is an `E`.
    pub fn event<E: Event>(&self) -> Option<&E> {
        self.envelope.payload.downcast_ref()
    }
}

impl DeadLetter {
    /// Which letter this is: its event and subscription (a handler gives
    /// up on an event once), by address, which stays its own while a copy
    /// of the letter is held.
    fn identity(&self) -> (usize, usize) {
        (
            Arc::as_ptr(&self.envelope) as usize,
            self.subscriber_address(),
        )
    }

    /// Where the subscription is (or was: a weak reference keeps the
    /// address its own).
    fn subscriber_address(&self) -> usize {
        #[cfg(not(diana_bus_loom))]
        let address = self.subscriber.as_ptr();
        #[cfg(diana_bus_loom)]
        let address = Arc::as_ptr(&self.subscriber);
        address as usize
    }
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("event", &self.event_name())
            .field("id", &self.event_id())
            .field("tenant", &self.tenant())
            .field("handler", &self.handler())
            .field("error", &self.error)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// Letters chosen from the store, by identity. The copies they were
/// chosen on hold their events and subscriptions, so no address among the
/// identities is reused while they are held.
pub(crate) struct Chosen {
    identities: HashSet<(usize, usize)>,
    _copies: Vec<DeadLetter>,
}

/// The bounded store. When full, the oldest letter makes room and is
/// counted in `dropped` (and logged): never silently lost.
#[derive(Debug)]
pub(crate) struct DeadLetterStore {
    letters: Mutex<VecDeque<DeadLetter>>,
    capacity: usize,
    recorded: AtomicU64,
    dropped: AtomicU64,
}

impl DeadLetterStore {
    pub(crate) fn new(capacity: usize) -> Self {
        DeadLetterStore {
            letters: Mutex::new(VecDeque::new()),
            capacity,
            recorded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, letter: DeadLetter) {
        tracing::error!(
            handler = letter.handler(),
            event = letter.event_name(),
            id = %letter.event_id(),
            attempts = letter.attempts,
            error = %letter.error,
            "dead-lettered"
        );
        let mut letters = lock(&self.letters);
        if letters.len() == self.capacity {
            if let Some(oldest) = letters.pop_front() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    capacity = self.capacity,
                    dropped = ?oldest,
                    "dead-letter store full: the oldest letter was dropped"
                );
            }
        }
        letters.push_back(letter);
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the letters, oldest first.
    pub(crate) fn list(&self) -> Vec<DeadLetter> {
        lock(&self.letters).iter().cloned().collect()
    }

    /// Removes and returns every letter, oldest first.
    pub(crate) fn take_all(&self) -> Vec<DeadLetter> {
        std::mem::take(&mut *lock(&self.letters)).into()
    }

    /// The letters `keep` selects, to [`take`](Self::take) later. `keep`
    /// is user code: it looks at copies, outside the lock, so it may read
    /// the store, and a panic from it leaves the store whole.
    pub(crate) fn choose(&self, mut keep: impl FnMut(&DeadLetter) -> bool) -> Chosen {
        let copies = self.list();
        let identities = copies
            .iter()
            .filter(|letter| keep(letter))
            .map(DeadLetter::identity)
            .collect();
        Chosen {
            identities,
            _copies: copies,
        }
    }

    /// Removes and returns the `chosen` letters that are still in the
    /// store and that `still` holds for, oldest first. A letter dropped
    /// for room meanwhile is not taken.
    pub(crate) fn take(
        &self,
        chosen: &Chosen,
        mut still: impl FnMut(&DeadLetter) -> bool,
    ) -> Vec<DeadLetter> {
        if chosen.identities.is_empty() {
            return Vec::new();
        }
        let mut letters = lock(&self.letters);
        let (taken, left): (VecDeque<_>, VecDeque<_>) = letters
            .drain(..)
            .partition(|letter| chosen.identities.contains(&letter.identity()) && still(letter));
        *letters = left;
        taken.into()
    }

    /// Letters ever recorded.
    pub(crate) fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Letters dropped because the store was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
