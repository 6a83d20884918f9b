//! The load profiles: how many threads publish, how many handlers see each
//! event, over how many keys, event types and tenants the events spread, and
//! whether the publisher streams events or waits for each reply.

use super::message::{self, Message};

/// How the publishers drive the handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Publishers send as fast as the implementation accepts; the clock
    /// stops when every handler has seen every event.
    Stream,
    /// One publisher sends a ping, waits for the pong, then sends the next:
    /// every round trip is timed.
    RoundTrip,
}

/// The shape of a load, the same for every implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Streaming or ping-pong.
    pub pattern: Pattern,
    /// Publisher threads; they split the events between them.
    pub publishers: usize,
    /// Handlers; every one sees every event.
    pub handlers: usize,
    /// Ordering keys the events spread over (see [`Message::keys`]); 0
    /// leaves them unkeyed, so diana-bus routes them all to one shard.
    pub keys: u64,
    /// Distinct event types the events take in turn (`id % types`), each
    /// with its own subscription; 0 sends the one plain [`Message`] type.
    pub types: usize,
    /// Tenants the events spread over, one of them hot (see
    /// [`message::tenant_of`]); 0 publishes without a tenant.
    pub tenants: u64,
}

impl Shape {
    /// A stream from `publishers` threads to `handlers` handlers, unkeyed,
    /// of one plain type, without tenants.
    pub const fn stream(publishers: usize, handlers: usize) -> Self {
        Self {
            pattern: Pattern::Stream,
            publishers,
            handlers,
            keys: 0,
            types: 0,
            tenants: 0,
        }
    }

    /// Handler runs for `events` published events (a round trip counts its
    /// ping's handler, not the reply).
    pub fn deliveries(&self, events: u64) -> u64 {
        events * self.handlers as u64
    }

    /// The event with id `id` in this shape: its key count, type tag and
    /// tenant, and a publish stamp on one event in [`message::SAMPLE_EVERY`]
    /// when streaming (a round trip is timed by its publisher instead).
    #[inline]
    pub fn message(&self, id: u64) -> Message {
        let message = Message::new(id, self.keys)
            .tagged(message::tag_of(id, self.types))
            .tenant(message::tenant_of(id, self.tenants));
        if self.pattern == Pattern::Stream && message::sampled(id) {
            message.stamped()
        } else {
            message
        }
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
    /// Events of a run when `--events` is not given.
    pub default_events: u64,
}

/// Every profile, in the order `diana-bus profiles` lists them.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "spsc",
        description: "1 publisher thread -> 1 handler, unkeyed events",
        shape: Shape::stream(1, 1),
        default_events: 2_000_000,
    },
    Profile {
        name: "mpsc",
        description: "2 publisher threads -> 1 handler, unkeyed events",
        shape: Shape::stream(2, 1),
        default_events: 2_000_000,
    },
    Profile {
        name: "fanout4",
        description: "1 publisher thread -> 4 handlers that each see every event, key = id % 64",
        shape: Shape {
            keys: 64,
            ..Shape::stream(1, 4)
        },
        default_events: 2_000_000,
    },
    Profile {
        name: "latency",
        description: "ping-pong: publish a ping, its handler replies with a pong, wait, repeat",
        shape: Shape {
            pattern: Pattern::RoundTrip,
            ..Shape::stream(1, 1)
        },
        default_events: 100_000,
    },
    Profile {
        name: "types",
        description: "1 publisher thread -> 1,000 event types in turn, one handler each (--types N)",
        shape: Shape {
            types: 1000,
            ..Shape::stream(1, 1)
        },
        default_events: 2_000_000,
    },
    Profile {
        name: "tenants",
        description: "1 publisher thread -> 1 handler, 10,000 tenants, one taking half the events (--tenants N)",
        shape: Shape {
            tenants: 10_000,
            ..Shape::stream(1, 1)
        },
        default_events: 2_000_000,
    },
];

impl Profile {
    /// The profile called `name`.
    pub fn find(name: &str) -> Option<&'static Profile> {
        PROFILES.iter().find(|profile| profile.name == name)
    }
}
