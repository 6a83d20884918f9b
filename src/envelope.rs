//! What a ring slot carries: one event and its routing.

use crate::event::Routing;
use crate::payload::Payload;

/// An accepted event on its way to the handlers.
#[derive(Debug)]
pub struct Envelope {
    pub(crate) routing: Routing,
    pub(crate) payload: Payload,
}
