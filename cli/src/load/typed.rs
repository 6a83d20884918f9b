//! Up to [`MAX_TYPES`] distinct Rust event types for the `types` profile,
//! and what each one needs: its subscription on diana-bus, its publish, and
//! its own handler function for the channel peers' dispatch tables.
//!
//! A type is `Typed<H, T, O>`, its number `100 H + 10 T + O` written in
//! decimal digits, because stable Rust cannot compute one const generic
//! from another. [`ops`] looks a number up in a table built at compile
//! time from ten-entry rows.

use std::sync::Arc;

use diana_bus::{Bus, Context, Event, HandlerResult, Meta};

use super::{Handlers, Message};

/// How many distinct event types there are.
pub const MAX_TYPES: usize = 1000;

/// Event type number `100 H + 10 T + O`: a [`Message`] under another name,
/// 64 bytes like it.
#[repr(transparent)]
#[derive(Clone, Copy, Debug)]
pub struct Typed<const H: u8, const T: u8, const O: u8>(pub Message);

impl<const H: u8, const T: u8, const O: u8> Event for Typed<H, T, O> {
    fn key(&self) -> Option<u64> {
        self.0.key()
    }
}

/// What the load code does with one event type.
#[derive(Clone, Copy, Debug)]
pub struct TypeOps {
    /// Subscribes handler number `handler` to this type on the bus.
    pub subscribe: fn(&Bus, usize, &Arc<Handlers>),
    /// Publishes a message as this type; false if the bus refused it.
    pub publish: fn(&Bus, Message, Meta) -> bool,
    /// This type's handler: its own function, as a user's would be, run by
    /// a channel consumer's dispatch table.
    pub handle: fn(&Handlers, usize, &Message),
}

/// The operations of event type number `tag` (below [`MAX_TYPES`]).
#[inline]
pub fn ops(tag: u64) -> &'static TypeOps {
    let tag = tag as usize;
    &TYPES[tag / 100][tag / 10 % 10][tag % 10]
}

fn subscribe<const H: u8, const T: u8, const O: u8>(
    bus: &Bus,
    handler: usize,
    handlers: &Arc<Handlers>,
) {
    let handlers = Arc::clone(handlers);
    bus.subscribe(
        move |event: &Typed<H, T, O>, _: &Context<'_>| -> HandlerResult {
            handle::<H, T, O>(&handlers, handler, &event.0);
            Ok(())
        },
    );
}

fn publish<const H: u8, const T: u8, const O: u8>(bus: &Bus, message: Message, meta: Meta) -> bool {
    bus.publish_with(Typed::<H, T, O>(message), meta).is_ok()
}

// Not inlined, so each type's handler is a function of its own for diana-bus
// and the dispatch tables alike.
#[inline(never)]
fn handle<const H: u8, const T: u8, const O: u8>(
    handlers: &Handlers,
    handler: usize,
    message: &Message,
) {
    handlers.call(handler, message);
}

const fn op<const H: u8, const T: u8, const O: u8>() -> TypeOps {
    TypeOps {
        subscribe: subscribe::<H, T, O>,
        publish: publish::<H, T, O>,
        handle: handle::<H, T, O>,
    }
}

const fn ones<const H: u8, const T: u8>() -> [TypeOps; 10] {
    [
        op::<H, T, 0>(),
        op::<H, T, 1>(),
        op::<H, T, 2>(),
        op::<H, T, 3>(),
        op::<H, T, 4>(),
        op::<H, T, 5>(),
        op::<H, T, 6>(),
        op::<H, T, 7>(),
        op::<H, T, 8>(),
        op::<H, T, 9>(),
    ]
}

const fn tens<const H: u8>() -> [[TypeOps; 10]; 10] {
    [
        ones::<H, 0>(),
        ones::<H, 1>(),
        ones::<H, 2>(),
        ones::<H, 3>(),
        ones::<H, 4>(),
        ones::<H, 5>(),
        ones::<H, 6>(),
        ones::<H, 7>(),
        ones::<H, 8>(),
        ones::<H, 9>(),
    ]
}

static TYPES: [[[TypeOps; 10]; 10]; 10] = [
    tens::<0>(),
    tens::<1>(),
    tens::<2>(),
    tens::<3>(),
    tens::<4>(),
    tens::<5>(),
    tens::<6>(),
    tens::<7>(),
    tens::<8>(),
    tens::<9>(),
];

#[cfg(test)]
mod tests {
    // Paths instead of `use`: see the note in `publishers.rs`.
    #[test]
    fn every_number_is_its_own_type() {
        let bus = diana_bus::Bus::builder().workers(1).build().unwrap();
        let handlers = std::sync::Arc::new(super::Handlers::new(1));
        for tag in [0, 7, 42, 999] {
            (super::ops(tag).subscribe)(&bus, 0, &handlers);
        }
        // One subscription per type: 999 is not 0, 42 is not 7.
        assert_eq!(bus.subscribers::<super::Typed<9, 9, 9>>(), 1);
        assert_eq!(bus.subscribers::<super::Typed<0, 4, 2>>(), 1);
        assert_eq!(bus.subscribers::<super::Typed<0, 0, 1>>(), 0);
        for id in 1..=4 {
            let message = super::Message::new(id, 0);
            let tag = [0, 7, 42, 999][id as usize - 1];
            assert!((super::ops(tag).publish)(
                &bus,
                message,
                diana_bus::Meta::new()
            ));
        }
        bus.flush();
        assert_eq!(handlers.settle(4).0, Ok(()));
    }
}
