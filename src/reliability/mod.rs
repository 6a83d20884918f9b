//! Delivery guarantees beyond the ring: retry policies, the retry
//! schedule, completion tracking (what `flush` and `Meta::after` wait
//! for), the dead-letter store, deduplication of republished ids,
//! per-tenant quotas, and the backlog gate (backpressure from async
//! subscriptions).

pub(crate) mod backlog;
pub(crate) mod completion;
pub(crate) mod dead_letter;
pub(crate) mod dedup;
pub(crate) mod quota;
pub(crate) mod retry;
pub(crate) mod schedule;
