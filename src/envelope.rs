//! What a ring slot carries: one event, its routing, and the tracker of a
//! publisher that waits for its outcome.

use crate::delivery::Tracker;
use crate::event::Routing;
use crate::payload::Payload;
use crate::sync::Arc;

/// An accepted event on its way to the handlers.
#[derive(Debug)]
pub struct Envelope {
    pub(crate) routing: Routing,
    pub(crate) payload: Payload,
    /// Set by `publish_and_wait`, `request` and `gather`: where the
    /// handlers' outcomes go.
    pub(crate) tracker: Option<Arc<Tracker>>,
}

impl Envelope {
    /// Wraps `event`.
    #[cfg(test)]
    pub(crate) fn new<E: crate::event::Event>(routing: Routing, event: E) -> Envelope {
        Envelope {
            routing,
            payload: Payload::new(event),
            tracker: None,
        }
    }
}
