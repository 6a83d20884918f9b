//! Delivery guarantees beyond the ring: retry policies, the retry
//! schedule, the dead-letter store, deduplication of republished ids, and
//! per-tenant quotas.

pub(crate) mod dead_letter;
pub(crate) mod dedup;
pub(crate) mod quota;
pub(crate) mod retry;
pub(crate) mod schedule;
