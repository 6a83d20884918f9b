//! The event every profile moves, and how an id decides its type, tenant
//! and latency sample.

use diana_bus::Event;

use super::clock;

/// One event of a load run: 64 bytes, the most diana-bus stores inline in a
/// ring slot, and `Copy`, so a fan-out publisher can send it to every
/// channel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// Unique within a run, from 1 up: the handlers add it to their checksum.
    pub id: u64,
    /// How many ordering keys events spread over (`key = id % keys`); 0
    /// leaves the event unkeyed.
    pub keys: u64,
    /// When it was published, on the run clock ([`clock::now`]), for a
    /// sampled event; 0 for the others.
    pub stamp: u64,
    /// Its tenant; 0 when the shape has none.
    pub tenant: u64,
    /// Which of the shape's event types it is (`0..types`).
    pub tag: u64,
    _padding: [u64; 3],
}

const _: () = assert!(std::mem::size_of::<Message>() == 64);

/// One event in this many carries a publish stamp, so reading the clock
/// and recording a latency cost the run little.
pub const SAMPLE_EVERY: u64 = 64;

impl Message {
    /// The event with this id, spread over `keys` ordering keys (0: unkeyed),
    /// untagged, without tenant or stamp.
    pub fn new(id: u64, keys: u64) -> Self {
        Self {
            id,
            keys,
            ..Self::default()
        }
    }

    /// The same event as type number `tag`.
    pub fn tagged(self, tag: u64) -> Self {
        Self { tag, ..self }
    }

    /// The same event for tenant `tenant`.
    pub fn tenant(self, tenant: u64) -> Self {
        Self { tenant, ..self }
    }

    /// The same event stamped with the time now.
    pub fn stamped(self) -> Self {
        Self {
            stamp: clock::now(),
            ..self
        }
    }
}

impl Event for Message {
    fn key(&self) -> Option<u64> {
        // None when `keys` is 0.
        self.id.checked_rem(self.keys)
    }
}

/// The reply of a round trip: the ping it answers, as a type of its own.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pong(pub Message);

impl Event for Pong {}

/// Whether event `id` carries a latency stamp.
#[inline]
pub fn sampled(id: u64) -> bool {
    id.is_multiple_of(SAMPLE_EVERY)
}

/// The type number of event `id` among `types` types: round robin (0 when
/// the shape has a single plain type).
#[inline]
pub fn tag_of(id: u64, types: usize) -> u64 {
    id.checked_rem(types as u64).unwrap_or(0)
}

/// The tenant of event `id` among `tenants` tenants, numbered from 1
/// (`TenantId(0)` is diana-bus's "no tenant"): tenant 1 is hot and takes
/// every even id, the odd ids go round robin over all of them. 0 when the
/// shape has no tenants.
#[inline]
pub fn tenant_of(id: u64, tenants: u64) -> u64 {
    match tenants {
        0 => 0,
        _ if id.is_multiple_of(2) => 1,
        _ => 1 + (id / 2) % tenants,
    }
}

#[cfg(test)]
mod tests {
    // Paths instead of `use`: see the note in `publishers.rs`.
    #[test]
    fn keys_spread_ids_or_stay_unset() {
        let key = |id, keys| diana_bus::Event::key(&super::Message::new(id, keys));
        assert_eq!(key(130, 64), Some(2));
        assert_eq!(key(130, 0), None);
    }

    #[test]
    fn the_hot_tenant_takes_half_and_the_rest_spread() {
        let tenants = 100;
        let mut counts = vec![0u64; tenants as usize + 1];
        for id in 1..=20_000 {
            counts[super::tenant_of(id, tenants) as usize] += 1;
        }
        assert_eq!(counts[0], 0, "no event without a tenant");
        assert_eq!(counts[1], 10_000 + 100, "half, plus its round-robin share");
        assert!(counts[2..].iter().all(|&count| count == 100), "{counts:?}");
        assert!((1..10).all(|id| super::tenant_of(id, 0) == 0));
        assert!((1..10).all(|id| super::tenant_of(id, 1) == 1));
    }

    #[test]
    fn types_take_turns() {
        let tags: Vec<u64> = (1..=7).map(|id| super::tag_of(id, 3)).collect();
        assert_eq!(tags, [1, 2, 0, 1, 2, 0, 1]);
        assert_eq!(super::tag_of(5, 0), 0);
    }
}
