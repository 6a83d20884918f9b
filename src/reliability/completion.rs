//! When an accepted event is fully handled, and who waits for that.
//!
//! An event is *fully handled* once every one of its handlers succeeded or
//! was dead-lettered. Most events are fully handled when the batch that
//! took them from their shard ends: then the shard's progress counter
//! passes their place (see `place` and `shard`), and nothing else records
//! them. The others stay *open* here, counted per place, from the end of
//! their batch until the last of these ends:
//!
//! - a scheduled retry or replay of one of its handlers (from `schedule`
//!   until the run that does not reschedule is finished);
//! - a wait behind its held key (from the deferral until it ran);
//! - a wait for its dependency (from the start of the wait until it ran).
//!
//! Every `hold` is matched by one `finished`, and a step that opens
//! another hold (a retry rescheduling itself, a released event scheduled
//! to run) holds before it finishes, so a count never dips to 0 early.
//! Holds are taken before the batch ends, so "the shard passed the place
//! and the place is not open" is exact: that is `Executor::is_done`.
//!
//! The same counts, per flush epoch, tell `flush` whether retries and
//! waits of the events it settles are still pending.
//!
//! Explicit ids ([`crate::Meta::id`]) do not lead to a place, so the places
//! of events with explicit ids are recorded from their push (inside the
//! ring's claim, before a worker can take them) until they are fully
//! handled: that is how `Meta::after` finds them, within its own tenant
//! (dedup lets tenants use the same ids).
//!
//! A [`Waiter`] waits for a place: one on a place its shard has not passed
//! yet waits in the shard (see `Executor::wait_for`), one on an open place
//! waits here and is handed back by the `finished` that closes it.
//!
//! All of it sits behind one mutex: only failures, waits and explicit ids
//! come here, never an event that is handled at its first try.

use std::collections::{BTreeMap, HashMap};

use crate::delivery::Tracker;
use crate::envelope::Envelope;
use crate::event::{EventId, Routing, TenantId};
use crate::place::Place;
use crate::sync::{lock, Arc, Mutex};

/// Open events the table keeps room for once it has emptied.
const SHRINK_ABOVE: usize = 1024;

/// What waits for an event to be fully handled.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// An event published with `Meta::after`, to be run.
    Release(Arc<Envelope>),
    /// A publisher waiting for the outcome (`publish_and_wait`).
    Notify(Arc<Tracker>),
}

#[derive(Default)]
struct Open {
    count: usize,
    waiters: Vec<Waiter>,
}

#[derive(Default)]
struct State {
    epochs: BTreeMap<u64, usize>,
    places: HashMap<Place, Open>,
    /// By tenant and id: dedup lets tenants use the same ids.
    explicit: HashMap<(TenantId, EventId), Place>,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct Completion {
    state: Mutex<State>,
}

impl Completion {
    /// The event of `routing` stays open until the matching `finished`.
    pub(crate) fn hold(&self, routing: &Routing) {
        let mut state = lock(&self.state);
        *state.epochs.entry(routing.epoch).or_default() += 1;
        state.places.entry(routing.place).or_default().count += 1;
    }

    /// Ends one hold of the event of `routing`; when it was the last, the
    /// event is fully handled and its waiters are handed back.
    #[must_use]
    pub(crate) fn finished(&self, routing: &Routing) -> Vec<Waiter> {
        let mut state = lock(&self.state);
        if let Some(count) = state.epochs.get_mut(&routing.epoch) {
            *count -= 1;
            if *count == 0 {
                state.epochs.remove(&routing.epoch);
            }
        }
        let Some(open) = state.places.get_mut(&routing.place) else {
            debug_assert!(false, "finished without a hold");
            return Vec::new();
        };
        open.count -= 1;
        if open.count > 0 {
            return Vec::new();
        }
        let waiters = state
            .places
            .remove(&routing.place)
            .map(|open| open.waiters)
            .unwrap_or_default();
        if routing.explicit {
            forget_explicit(&mut state, routing);
        }
        // A burst of open events (an outage's retries) may have grown the
        // table far past its usual size: once it is empty, its memory goes
        // back.
        if state.places.is_empty() && state.places.capacity() > SHRINK_ABOVE {
            state.places.shrink_to(SHRINK_ABOVE);
        }
        waiters
    }

    /// Whether an event of an epoch up to `epoch` is still open.
    pub(crate) fn pending_up_to(&self, epoch: u64) -> bool {
        lock(&self.state).epochs.range(..=epoch).next().is_some()
    }

    /// Whether the event at `place` is open.
    pub(crate) fn is_open(&self, place: Place) -> bool {
        lock(&self.state).places.contains_key(&place)
    }

    /// Queues `waiter` on `place` if it is open; gives it back otherwise.
    pub(crate) fn wait_if_open(&self, place: Place, waiter: Waiter) -> Result<(), Waiter> {
        match lock(&self.state).places.get_mut(&place) {
            Some(open) => {
                open.waiters.push(waiter);
                Ok(())
            }
            None => Err(waiter),
        }
    }

    /// Records where `tenant`'s event with explicit id `id` was accepted.
    pub(crate) fn accepted_explicit(&self, tenant: TenantId, id: EventId, place: Place) {
        lock(&self.state).explicit.insert((tenant, id), place);
    }

    /// After the batch that ran the event of `routing` (explicit id): its
    /// record goes unless the event is still open.
    pub(crate) fn ran_explicit(&self, routing: &Routing) {
        let mut state = lock(&self.state);
        if !state.places.contains_key(&routing.place) {
            forget_explicit(&mut state, routing);
        }
    }

    /// Where `tenant`'s latest event accepted with explicit id `id` is,
    /// while it is in flight.
    pub(crate) fn place_of_explicit(&self, tenant: TenantId, id: EventId) -> Option<Place> {
        lock(&self.state).explicit.get(&(tenant, id)).copied()
    }
}

/// Drops the record of an explicit id, unless a later event with the same
/// id replaced it.
fn forget_explicit(state: &mut State, routing: &Routing) {
    let key = (routing.tenant, routing.id);
    if state.explicit.get(&key) == Some(&routing.place) {
        state.explicit.remove(&key);
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Completion")
            .field("open", &state.places.len())
            .field("explicit", &state.explicit.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Meta;

    struct Any;
    impl crate::Event for Any {}

    fn explicit(id: u128, seq: u64) -> Routing {
        let mut routing = Routing::resolve(&Any, Meta::new().id(EventId(id)), 1);
        routing.place = Place { shard: 0, seq };
        routing
    }

    #[test]
    fn an_emptied_table_gives_back_what_a_burst_grew_it_to() {
        let completion = Completion::default();
        let routings: Vec<Routing> = (0..50_000u64)
            .map(|seq| {
                let mut routing = Routing::resolve(&Any, Meta::new(), 1);
                routing.place = Place { shard: 0, seq };
                routing
            })
            .collect();
        routings.iter().for_each(|routing| completion.hold(routing));
        assert!(lock(&completion.state).places.capacity() >= 50_000);
        for routing in &routings {
            assert!(completion.finished(routing).is_empty());
        }
        assert!(lock(&completion.state).places.capacity() <= 2 * SHRINK_ABOVE);
    }

    #[test]
    fn explicit_ids_are_found_while_in_flight_only() {
        let completion = Completion::default();
        let (quick, retried) = (explicit(1, 10), explicit(2, 11));
        completion.accepted_explicit(quick.tenant, quick.id, quick.place);
        completion.accepted_explicit(retried.tenant, retried.id, retried.place);
        completion.hold(&retried);
        completion.ran_explicit(&quick);
        completion.ran_explicit(&retried);
        assert_eq!(completion.place_of_explicit(quick.tenant, quick.id), None);
        assert_eq!(
            completion.place_of_explicit(retried.tenant, retried.id),
            Some(retried.place)
        );
        assert_eq!(
            completion.place_of_explicit(TenantId(9), retried.id),
            None,
            "another tenant's id"
        );
        assert!(completion.pending_up_to(1));
        assert!(completion.finished(&retried).is_empty());
        assert_eq!(
            completion.place_of_explicit(retried.tenant, retried.id),
            None
        );
        assert!(!completion.pending_up_to(1));
        assert_eq!(
            format!("{completion:?}"),
            "Completion { open: 0, explicit: 0 }"
        );
    }

    #[test]
    fn a_newer_event_with_the_same_id_keeps_its_record() {
        let completion = Completion::default();
        let (old, new) = (explicit(5, 1), explicit(5, 2));
        completion.accepted_explicit(old.tenant, old.id, old.place);
        completion.accepted_explicit(new.tenant, new.id, new.place);
        completion.ran_explicit(&old);
        assert_eq!(
            completion.place_of_explicit(new.tenant, EventId(5)),
            Some(new.place)
        );
    }

    #[test]
    fn waiters_come_back_when_the_last_hold_ends() {
        let completion = Completion::default();
        let routing = explicit(3, 4);
        completion.hold(&routing);
        completion.hold(&routing);
        let waiter = Waiter::Release(Arc::new(Envelope::new(routing, Any)));
        assert!(completion.wait_if_open(routing.place, waiter).is_ok());
        assert!(completion.finished(&routing).is_empty());
        assert_eq!(completion.finished(&routing).len(), 1);
        let waiter = Waiter::Release(Arc::new(Envelope::new(routing, Any)));
        assert!(completion.wait_if_open(routing.place, waiter).is_err());
    }
}
