//! What the bus carries for one accepted event: its two-part form in a
//! ring slot, the [`SlotEvent`] a worker runs it as where it lies, and the
//! [`Envelope`] that holds it once it leaves the ring (an overflow entry,
//! or an event that outlives its batch: a retry, a held key, a wait). The
//! handlers see either through an [`EventRef`]: the event, its routing,
//! the tracker of a publisher that waits for its outcome.
//!
//! # In the ring
//!
//! A push costs, above all, the cache lines its slot spans: they move from
//! the publisher's core to the worker's. So a slot holds a [`RingEntry`],
//! what every event has (the payload, tenant, key and flush epoch): 112
//! bytes, two cache lines with the slot's stamp. What only some events
//! carry, the [`Lineage`] (an explicit id, the cause of a follow-up, a
//! dependency, a tracker), goes to the slot's side entry (see `ring`) and
//! is only touched when there is one. The place is the slot's position and
//! a generated id is made from it, so neither is stored.

use crate::delivery::Tracker;
use crate::event::{EventId, Routing, TenantId};
use crate::payload::Payload;
use crate::place::Place;
use crate::ring::InSlot;
use crate::sync::Arc;

/// An accepted event on its way to the handlers.
#[derive(Debug)]
pub struct Envelope {
    pub(crate) routing: Routing,
    pub(crate) payload: Payload,
    /// Set by `publish_and_wait`, `request` and `gather`: where the
    /// handlers' outcomes go.
    pub(crate) tracker: Option<Arc<Tracker>>,
}

/// What a ring slot holds of an envelope (see the module docs).
#[derive(Debug)]
pub(crate) struct RingEntry {
    payload: Payload,
    tenant: TenantId,
    key: u64,
    epoch: u64,
    /// Whether the slot's side entry holds this event's [`Lineage`].
    has_lineage: bool,
}

/// The parts of an envelope that most events leave empty.
#[derive(Debug, Default)]
pub(crate) struct Lineage {
    explicit_id: Option<EventId>,
    cause: Option<EventId>,
    after: Option<Place>,
    tracker: Option<Arc<Tracker>>,
}

/// What a publish hands to its shard: the ring entry, and the lineage that
/// goes beside it, both kept by the publisher until a slot (or an overflow
/// entry) takes them. Only two pointers move down the push path and back
/// up a refused one; the entry is copied once, from the publisher's frame
/// into its slot. Most events have no lineage, and leave that `Option`
/// empty.
pub(crate) type Seed<'l> = (&'l mut Option<RingEntry>, &'l mut Option<Lineage>);

impl RingEntry {
    /// The ring entry of a publish with `routing` (its place is not known
    /// yet), and its lineage, if it has one.
    #[inline(always)]
    pub(crate) fn new(
        routing: &Routing,
        payload: Payload,
        tracker: Option<Arc<Tracker>>,
    ) -> (RingEntry, Option<Lineage>) {
        let mut entry = RingEntry::of(payload, routing.tenant, routing.key);
        let lineage = entry.complete(routing, tracker);
        (entry, lineage)
    }

    /// The ring entry of `payload` for `tenant` and `key`, before
    /// [`RingEntry::complete`]: a publish builds it while it knows the
    /// event's type, and completes it after.
    #[inline(always)]
    pub(crate) fn of(payload: Payload, tenant: TenantId, key: u64) -> RingEntry {
        RingEntry {
            payload,
            tenant,
            key,
            epoch: 0,
            has_lineage: false,
        }
    }

    /// Completes this entry for `routing` (made from its tenant and key):
    /// sets its flush epoch, and returns its lineage, if it has one.
    #[inline(always)]
    pub(crate) fn complete(
        &mut self,
        routing: &Routing,
        tracker: Option<Arc<Tracker>>,
    ) -> Option<Lineage> {
        debug_assert!(self.tenant == routing.tenant && self.key == routing.key);
        let lineage =
            (routing.explicit || routing.caused || routing.after.is_some() || tracker.is_some())
                .then(|| Lineage {
                    explicit_id: routing.explicit.then_some(routing.id),
                    cause: routing.caused.then_some(routing.cause),
                    after: routing.after,
                    tracker,
                });
        self.epoch = routing.epoch;
        self.has_lineage = lineage.is_some();
        lineage
    }

    pub(crate) fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// The event back, from a refused publish.
    pub(crate) fn into_payload(self) -> Payload {
        self.payload
    }

    /// The routing of this entry, accepted at `place` with `lineage`, on
    /// the bus tagged `tag` (a generated id is made from the place), and
    /// its tracker.
    #[inline(always)]
    fn routing(&self, lineage: Lineage, place: Place, tag: u64) -> (Routing, Option<Arc<Tracker>>) {
        let routing = Routing {
            id: lineage.explicit_id.unwrap_or_else(|| place.id(tag)),
            explicit: lineage.explicit_id.is_some(),
            place,
            after: lineage.after,
            cause: lineage.cause.unwrap_or_default(),
            caused: lineage.cause.is_some(),
            tenant: self.tenant,
            key: self.key,
            epoch: self.epoch,
        };
        (routing, lineage.tracker)
    }
}

impl Lineage {
    /// The lineage an entry left in its slot's side entry `side` (taking
    /// it), if it says it has one; an empty one otherwise.
    #[inline(always)]
    fn take_from(has_lineage: bool, side: &mut Option<Lineage>) -> Lineage {
        if has_lineage {
            debug_assert!(side.is_some(), "an entry with a lineage left it aside");
            side.take().unwrap_or_default()
        } else {
            Lineage::default()
        }
    }

    /// The id the publisher gave, if it gave one.
    pub(crate) fn explicit_id(&self) -> Option<EventId> {
        self.explicit_id
    }
}

impl Envelope {
    /// Wraps `event`.
    #[cfg(test)]
    pub(crate) fn new<E: crate::event::Event>(routing: Routing, event: E) -> Envelope {
        Envelope {
            routing,
            payload: Payload::new(event),
            tracker: None,
        }
    }

    /// The envelope of `entry`, accepted at `place` (an overflow entry)
    /// with its lineage in `side` (taken, when the entry has one there), on
    /// the bus tagged `tag`.
    pub(crate) fn from_ring(
        entry: RingEntry,
        side: &mut Option<Lineage>,
        place: Place,
        tag: u64,
    ) -> Envelope {
        let lineage = Lineage::take_from(entry.has_lineage, side);
        let (routing, tracker) = entry.routing(lineage, place, tag);
        Envelope {
            routing,
            payload: entry.payload,
            tracker,
        }
    }

    /// The event, for its handlers.
    #[inline(always)]
    pub(crate) fn event(&self) -> EventRef<'_> {
        EventRef {
            routing: &self.routing,
            payload: &self.payload,
            tracker: self.tracker.as_ref(),
        }
    }
}

/// An accepted event as its handlers see it, wherever the worker holds
/// it: in its ring slot ([`SlotEvent`]) or in an [`Envelope`].
#[derive(Clone, Copy)]
pub(crate) struct EventRef<'e> {
    pub(crate) routing: &'e Routing,
    pub(crate) payload: &'e Payload,
    pub(crate) tracker: Option<&'e Arc<Tracker>>,
}

/// An accepted event still in its ring slot, lent to the worker by the
/// ring's pop: its handlers run there, and it is moved out (into an
/// [`Envelope`]) only if it must outlive its batch. Dropping it drops the
/// event in its slot.
pub(crate) struct SlotEvent<'s> {
    entry: InSlot<'s, RingEntry, Option<Lineage>>,
    routing: Routing,
    tracker: Option<Arc<Tracker>>,
}

impl<'s> SlotEvent<'s> {
    /// The event in `entry`'s slot, of the shard `shard` on the bus tagged
    /// `tag`; takes its lineage from the slot's side entry.
    #[inline(always)]
    pub(crate) fn new(
        mut entry: InSlot<'s, RingEntry, Option<Lineage>>,
        shard: usize,
        tag: u64,
    ) -> Self {
        let place = Place::ring(shard, entry.pos());
        let lineage = Lineage::take_from(entry.get().has_lineage, entry.side());
        let (routing, tracker) = entry.get().routing(lineage, place, tag);
        SlotEvent {
            entry,
            routing,
            tracker,
        }
    }

    /// The event, for its handlers.
    #[inline(always)]
    pub(crate) fn event(&self) -> EventRef<'_> {
        EventRef {
            routing: &self.routing,
            payload: &self.entry.get().payload,
            tracker: self.tracker.as_ref(),
        }
    }

    /// Moves the event out of its slot.
    pub(crate) fn into_envelope(self) -> Envelope {
        Envelope {
            routing: self.routing,
            payload: self.entry.take().payload,
            tracker: self.tracker,
        }
    }
}

#[cfg(all(test, not(diana_bus_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_ring_slot_spans_two_cache_lines() {
        assert_eq!(crate::ring::slot_size::<RingEntry>(), 128);
    }
}
