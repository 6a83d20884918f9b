//! How code without a type system of events reaches the right handler:
//! with one event type, a direct call; with several, a table of each
//! type's handler function, indexed by the type tag the event carries, as
//! a user's `match` over an enum of event kinds compiles to.

use super::{typed, Handlers, Message};

/// A consumer's way from an event to its handler.
#[derive(Clone, Copy, Debug)]
pub struct Dispatch {
    by_type: bool,
}

impl Dispatch {
    /// Dispatch for a shape with `types` event types (0: one plain type).
    pub fn new(types: usize) -> Self {
        Self { by_type: types > 0 }
    }

    /// Runs handler number `handler` of `message`'s type on it.
    #[inline]
    pub fn call(&self, handlers: &Handlers, handler: usize, message: &Message) {
        if self.by_type {
            (typed::ops(message.tag).handle)(handlers, handler, message);
        } else {
            handlers.call(handler, message);
        }
    }
}
