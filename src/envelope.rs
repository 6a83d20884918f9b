//! What a ring slot carries: one event and its routing.

use crate::event::{Event, Routing};
use crate::payload::Payload;

/// An accepted event on its way to the handlers.
#[derive(Debug)]
pub struct Envelope {
    pub(crate) routing: Routing,
    pub(crate) payload: Payload,
}

impl Envelope {
    /// Wraps `event`; takes a pair so it can serve as the ring's in-place
    /// constructor (`Ring::push_with`).
    #[inline(always)]
    pub(crate) fn new<E: Event>((routing, event): (Routing, E)) -> Envelope {
        Envelope {
            routing,
            payload: Payload::new(event),
        }
    }
}
