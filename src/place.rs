//! Where an accepted event sits: its shard and its sequence number there,
//! and the event ids the bus makes from that.
//!
//! Every accepted event has a *place*: the shard it went to, and either its
//! ring position or, for an event that spilled into the shard's overflow
//! queue, its overflow sequence number with [`OVERFLOW`] set. Places never
//! repeat within a bus, and each shard handles its ring positions and its
//! overflow sequence numbers in increasing order, so "has the shard
//! completed this place" is one comparison with a progress counter (see
//! `shard`). That is what lets `Meta::after` ask whether any event is still
//! in flight without the hot path keeping a record of every event.
//!
//! A generated [`EventId`] is the place itself, under the bus's tag (a
//! process-wide counter, one per bus): `tag << 80 | shard << 64 | seq`.
//! Such ids are unique within the process and never 0, cost nothing to
//! make, and lead straight back to the place.

use crate::event::EventId;

/// The bit of a place's `seq` that marks an overflow sequence number.
pub(crate) const OVERFLOW: u64 = 1 << 63;

/// See the module docs.
///
/// Packed to 12 bytes (alignment 4): every envelope carries two places
/// (its own and its dependency's), and a padded 16-byte place would make
/// each ring slot 16 bytes larger. Fields are only ever copied out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C, packed(4))]
pub(crate) struct Place {
    pub(crate) shard: u32,
    pub(crate) seq: u64,
}

impl Place {
    /// Not yet accepted: the place of a routing before its push.
    pub(crate) const UNSET: Place = Place {
        shard: u32::MAX,
        seq: u64::MAX,
    };

    /// Ring position `pos` of shard `shard`.
    #[inline]
    pub(crate) fn ring(shard: usize, pos: usize) -> Place {
        Place {
            shard: shard as u32,
            seq: pos as u64,
        }
    }

    /// Overflow sequence number `seq` of shard `shard`.
    pub(crate) fn overflow(shard: usize, seq: u64) -> Place {
        Place {
            shard: shard as u32,
            seq: seq | OVERFLOW,
        }
    }

    /// The id of an event at this place, on the bus tagged `tag`.
    #[inline]
    pub(crate) fn id(self, tag: u64) -> EventId {
        EventId(((tag as u128) << 80) | ((self.shard as u128) << 64) | self.seq as u128)
    }

    /// The place `id` names, if the bus tagged `tag` generated it.
    pub(crate) fn of_id(id: EventId, tag: u64) -> Option<Place> {
        ((id.0 >> 80) as u64 == tag).then_some(Place {
            shard: ((id.0 >> 64) & 0xFFFF) as u32,
            seq: id.0 as u64,
        })
    }
}

/// Tags buses apart in their generated ids; starts at 1 so no id is 0.
pub(crate) fn next_bus_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT_TAG: AtomicU64 = AtomicU64::new(1);
    NEXT_TAG.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_lead_back_to_their_place_on_their_own_bus_only() {
        let places = [
            Place::ring(0, 0),
            Place::ring(65_535, usize::MAX >> 1),
            Place::overflow(3, 17),
        ];
        for place in places {
            let id = place.id(7);
            assert_ne!(id, EventId(0));
            assert_eq!(Place::of_id(id, 7), Some(place));
            assert_eq!(Place::of_id(id, 8), None);
        }
        assert_ne!(Place::ring(1, 5).id(7), Place::overflow(1, 5).id(7));
        assert_ne!(Place::ring(1, 5).id(7), Place::ring(2, 5).id(7));
    }
}
