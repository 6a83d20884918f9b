//! What happens after a handler fails: retry policies, the retry schedule,
//! and the dead-letter store.

pub(crate) mod dead_letter;
pub(crate) mod retry;
pub(crate) mod schedule;
