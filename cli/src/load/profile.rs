//! The load profiles: how many threads publish, how many handlers see each
//! event, over how many keys, event types and tenants the events spread, and
//! whether the publisher streams events, waits for each reply, or runs the
//! Diana flow.

use super::message::{self, Message};
use super::SERVICES;

/// How the publishers drive the handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Publishers send as fast as the implementation accepts; the clock
    /// stops when every handler has seen every event.
    Stream,
    /// One publisher sends a ping, waits for the pong, then sends the next:
    /// every round trip is timed.
    RoundTrip,
    /// Users run Diana interactions, each one after the other: a request
    /// fanned out to the services, their answers gathered into one
    /// completion (see [`super::flow`]). Every interaction is timed.
    Flow,
}

impl Pattern {
    /// Its name in records and errors.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Stream => "stream",
            Pattern::RoundTrip => "round-trip",
            Pattern::Flow => "flow",
        }
    }
}

/// The shape of a load, the same for every implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Streaming, ping-pong or the Diana flow.
    pub pattern: Pattern,
    /// Publisher threads; they split the events between them. A flow's
    /// users, tasks that split the interactions between them.
    pub publishers: usize,
    /// Handlers; every one sees every event. A flow's services, each of
    /// which answers every interaction.
    pub handlers: usize,
    /// Ordering keys the events spread over (see [`Message::keys`]); 0
    /// leaves them unkeyed, so diana-bus routes them all to one shard. A
    /// flow's events are keyed by their user, so it has one key per user.
    pub keys: u64,
    /// Distinct event types the events take in turn (`id % types`), each
    /// with its own subscription; 0 sends the one plain [`Message`] type.
    pub types: usize,
    /// Tenants the events spread over, one of them hot (see
    /// [`message::tenant_of`]); 0 publishes without a tenant. A flow's
    /// users take the tenants in turn.
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

    /// The Diana flow for `users` users spread over `tenants` tenants, each
    /// interaction answered by every service of [`SERVICES`].
    pub const fn flow(users: usize, tenants: u64) -> Self {
        Self {
            pattern: Pattern::Flow,
            publishers: users,
            handlers: SERVICES.len(),
            keys: users as u64,
            types: 0,
            tenants,
        }
    }

    /// Handler runs for `events` published events (a round trip counts its
    /// ping's handler, not the reply; a flow, its services' answers to
    /// `events` interactions, not the completion's handler).
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
    // 64 users, because a user waits for four answers between two steps:
    // a few users would leave the bus's workers idle, while 64 feed every
    // shard (8 with the default 2 workers) with several users each, as a
    // bot with many users chatting at once does. With 64 in flight, an
    // interaction's latency is mostly its wait behind the others (about
    // users / rate). 4 tenants of 16 users each route the requests and the
    // completions per tenant, as on a bus several bots share.
    Profile {
        name: "diana",
        description: "Diana flow: 64 users of 4 tenants, one interaction at a time each -> 4 services -> 1 completion",
        shape: Shape::flow(64, 4),
        default_events: 100_000,
    },
];

impl Profile {
    /// The profile called `name`.
    pub fn find(name: &str) -> Option<&'static Profile> {
        PROFILES.iter().find(|profile| profile.name == name)
    }
}
