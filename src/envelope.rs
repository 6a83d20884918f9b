//! What a ring slot carries: one event, its routing, and the tracker of a
//! publisher that waits for its outcome.

use crate::delivery::Tracker;
use crate::event::{Event, Routing};
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
    #[inline(always)]
    pub(crate) fn new<E: Event>(
        routing: Routing,
        event: E,
        tracker: Option<Arc<Tracker>>,
    ) -> Envelope {
        Envelope {
            routing,
            payload: Payload::new(event),
            tracker,
        }
    }
}
