//! The event every profile moves.

use diana_bus::Event;

/// One event of a load run: 64 bytes, the most diana-bus stores inline in a
/// ring slot, and `Copy`, so a fan-out publisher can send it to every
/// channel.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// Unique within a run, from 1 up: the handlers add it to their checksum.
    pub id: u64,
    /// How many ordering keys events spread over (`key = id % keys`); 0
    /// leaves the event unkeyed.
    pub keys: u64,
    _padding: [u64; 6],
}

const _: () = assert!(std::mem::size_of::<Message>() == 64);

impl Message {
    /// The event with this id, spread over `keys` ordering keys (0: unkeyed).
    pub fn new(id: u64, keys: u64) -> Self {
        Self {
            id,
            keys,
            _padding: [0; 6],
        }
    }
}

impl Event for Message {
    fn key(&self) -> Option<u64> {
        // None when `keys` is 0.
        self.id.checked_rem(self.keys)
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
}
