//! Delivery guarantees beyond the ring: retry policies, the retry
//! schedule, the dead-letter store, and deduplication of republished ids.

pub(crate) mod dead_letter;
pub(crate) mod dedup;
pub(crate) mod retry;
pub(crate) mod schedule;
