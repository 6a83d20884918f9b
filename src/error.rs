//! Every error the bus returns. A refused event always comes back inside
//! its error; nothing is dropped silently.

use std::fmt;

/// Why a publish was refused. The event is inside: [`PublishError::into_inner`].
///
/// `Debug` prints the variant, not the event, so it needs no `E: Debug`.
#[derive(PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError<E> {
    /// The shard's ring is full ([`crate::Backpressure::Reject`] or
    /// [`crate::Bus::try_publish`]).
    Full(E),
    /// The bus is shut down.
    Closed(E),
    /// The event's tenant has its quota of queued events
    /// ([`crate::BusBuilder::tenant_quota`]), and the publish could not wait.
    QuotaExceeded(E),
    /// The backlog gate is raised (an async subscription went over its
    /// [`crate::SubscriberBuilder::backlog`] of waiting runs, and they are
    /// not yet back to half of it), and the publish could not wait
    /// ([`crate::Backpressure::Reject`] or [`crate::Bus::try_publish`]).
    Backlogged(E),
}

impl<E> PublishError<E> {
    /// The same refusal, with the event turned into something else.
    pub(crate) fn map<F>(self, f: impl FnOnce(E) -> F) -> PublishError<F> {
        match self {
            PublishError::Full(e) => PublishError::Full(f(e)),
            PublishError::Closed(e) => PublishError::Closed(f(e)),
            PublishError::QuotaExceeded(e) => PublishError::QuotaExceeded(f(e)),
            PublishError::Backlogged(e) => PublishError::Backlogged(f(e)),
        }
    }

    /// The event that was not published.
    pub fn into_inner(self) -> E {
        match self {
            PublishError::Full(e)
            | PublishError::Closed(e)
            | PublishError::QuotaExceeded(e)
            | PublishError::Backlogged(e) => e,
        }
    }

    /// Whether the ring was full.
    pub fn is_full(&self) -> bool {
        matches!(self, PublishError::Full(_))
    }

    /// Whether the bus was shut down.
    pub fn is_closed(&self) -> bool {
        matches!(self, PublishError::Closed(_))
    }

    /// Whether the tenant was over its quota.
    pub fn is_quota_exceeded(&self) -> bool {
        matches!(self, PublishError::QuotaExceeded(_))
    }

    /// Whether the backlog gate refused it.
    pub fn is_backlogged(&self) -> bool {
        matches!(self, PublishError::Backlogged(_))
    }
}

impl<E> fmt::Debug for PublishError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Full(_) => f.write_str("Full(..)"),
            PublishError::Closed(_) => f.write_str("Closed(..)"),
            PublishError::QuotaExceeded(_) => f.write_str("QuotaExceeded(..)"),
            PublishError::Backlogged(_) => f.write_str("Backlogged(..)"),
        }
    }
}

impl<E> fmt::Display for PublishError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Full(_) => f.write_str("event refused: the shard's ring is full"),
            PublishError::Closed(_) => f.write_str("event refused: the bus is shut down"),
            PublishError::QuotaExceeded(_) => {
                f.write_str("event refused: its tenant has its quota of queued events")
            }
            PublishError::Backlogged(_) => f.write_str(
                "event refused: an async subscription's runs are backlogged (the backlog gate is raised)",
            ),
        }
    }
}

impl<E> std::error::Error for PublishError<E> {}

/// A builder setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `workers(0)`, or more workers than [`crate::bus::MAX_WORKERS`].
    Workers(usize),
    /// `shards(n)` with n = 0, n above [`crate::bus::MAX_SHARDS`], or fewer
    /// shards than workers.
    Shards {
        /// The requested shard count.
        shards: usize,
        /// The worker count it must not be below.
        workers: usize,
    },
    /// `capacity(0)`, or above [`crate::bus::MAX_CAPACITY`] slots per shard.
    Capacity(usize),
    /// More ring slots in all (shards times capacity, both rounded up to
    /// powers of two) than [`crate::bus::MAX_SLOTS`].
    Slots {
        /// The shard count.
        shards: usize,
        /// The slots per shard.
        capacity: usize,
    },
    /// `batch(0)`, or a batch larger than the ring.
    Batch(usize),
    /// `dead_letter_capacity(0)`.
    DeadLetterCapacity(usize),
    /// `tenant_quota(0)`.
    TenantQuota(u64),
    /// The operating system refused to start a worker thread.
    Spawn(String),
    /// An async handler on a bus built without
    /// [`crate::BusBuilder::runtime`].
    NoRuntime,
    /// `concurrency(0)` for an async handler.
    Concurrency(usize),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::bus::{MAX_CAPACITY, MAX_SHARDS, MAX_SLOTS, MAX_WORKERS};
        match self {
            ConfigError::Workers(n) => {
                write!(f, "workers({n}): need 1 to {MAX_WORKERS} worker threads")
            }
            ConfigError::Shards { shards, workers } => write!(
                f,
                "shards({shards}): need {workers} (one per worker) to {MAX_SHARDS} shards"
            ),
            ConfigError::Capacity(n) => {
                write!(f, "capacity({n}): need 1 to {MAX_CAPACITY} slots per shard")
            }
            ConfigError::Slots { shards, capacity } => write!(
                f,
                "{shards} shards of {capacity} slots: at most {MAX_SLOTS} ring slots in all"
            ),
            ConfigError::Batch(n) => write!(f, "batch({n}): need 1 up to the ring capacity"),
            ConfigError::TenantQuota(n) => {
                write!(
                    f,
                    "tenant_quota({n}): a tenant must be able to queue at least 1 event"
                )
            }
            ConfigError::DeadLetterCapacity(n) => {
                write!(
                    f,
                    "dead_letter_capacity({n}): need room for at least 1 dead letter"
                )
            }
            ConfigError::Spawn(why) => write!(f, "cannot start a worker thread: {why}"),
            ConfigError::NoRuntime => {
                f.write_str("an async handler needs a runtime: build the bus with .runtime(handle)")
            }
            ConfigError::Concurrency(n) => {
                write!(f, "concurrency({n}): an async handler needs at least 1")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// What a handler returns.
pub type HandlerResult = Result<(), HandlerError>;

/// A handler's failure: transient (worth retrying) or permanent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
    transient: bool,
}

impl HandlerError {
    /// A failure that may go away on a retry (a timeout, a busy service).
    pub fn transient(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            transient: true,
        }
    }

    /// A failure that a retry cannot fix (bad data).
    pub fn permanent(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            transient: false,
        }
    }

    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The message given when the error was made.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.transient {
            "transient"
        } else {
            "permanent"
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for HandlerError {}

#[cfg(test)]
mod tests {
    use super::*;

    struct NotDebug(u8);

    #[test]
    fn publish_errors_give_the_event_back_and_debug_without_it() {
        let full = PublishError::Full(NotDebug(1));
        assert!(full.is_full() && !full.is_closed());
        assert_eq!(format!("{full:?}"), "Full(..)");
        assert_eq!(full.into_inner().0, 1);
        let closed = PublishError::Closed(NotDebug(2));
        assert!(closed.to_string().contains("shut down"));
        assert_eq!(closed.into_inner().0, 2);
    }

    #[test]
    fn handler_errors_say_their_kind() {
        assert!(HandlerError::transient("busy").is_transient());
        assert!(!HandlerError::permanent(String::from("bad")).is_transient());
        assert_eq!(HandlerError::permanent("bad").to_string(), "permanent: bad");
    }
}
