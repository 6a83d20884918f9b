//! The load profiles: how many threads publish, how many handlers see each
//! event.

/// The shape of a load, the same for every implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Publisher threads; they split the events between them.
    pub publishers: usize,
    /// Handlers; every one sees every event.
    pub handlers: usize,
    /// Ordering keys the events spread over (see [`super::Message::keys`]);
    /// 0 leaves them unkeyed, so diana-bus routes them all to one shard.
    pub keys: u64,
}

impl Shape {
    /// Handler runs for `events` published events.
    pub fn deliveries(&self, events: u64) -> u64 {
        events * self.handlers as u64
    }
}

/// A named load profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// What `--profile` takes.
    pub name: &'static str,
    /// One line for `diana-bus profiles`.
    pub description: &'static str,
    /// The load it puts on an implementation.
    pub shape: Shape,
}

/// Every profile, in the order `diana-bus profiles` lists them.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "spsc",
        description: "1 publisher thread -> 1 handler, unkeyed events",
        shape: Shape {
            publishers: 1,
            handlers: 1,
            keys: 0,
        },
    },
    Profile {
        name: "mpsc",
        description: "2 publisher threads -> 1 handler, unkeyed events",
        shape: Shape {
            publishers: 2,
            handlers: 1,
            keys: 0,
        },
    },
    Profile {
        name: "fanout4",
        description: "1 publisher thread -> 4 handlers that each see every event, key = id % 64",
        shape: Shape {
            publishers: 1,
            handlers: 4,
            keys: 64,
        },
    },
];

impl Profile {
    /// The profile called `name`.
    pub fn find(name: &str) -> Option<&'static Profile> {
        PROFILES.iter().find(|profile| profile.name == name)
    }
}
