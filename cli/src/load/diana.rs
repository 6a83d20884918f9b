//! A shape on diana-bus: one subscription per handler (per event type, when
//! the shape has several), built once and reused for every run.
//!
//! A round trip is written as a user would write request and reply with
//! plain subscriptions: the ping's handler publishes a [`Pong`] through its
//! context, and the pong's handler hands it to the waiting publisher
//! ([`Reply`]: spin briefly, then park).

use std::sync::Arc;

use diana_bus::{Bus, BusBuilder, ConfigError, Context, HandlerResult, Meta, TenantId};

use super::runner::{verdict, Timed};
use super::{
    publishers, round_trip, typed, Handlers, Message, Pattern, Pong, Reply, RunError, Runner,
    Sample, Shape,
};

/// A bus with the shape's subscriptions.
#[derive(Debug)]
pub struct DianaRunner {
    bus: Bus,
    shape: Shape,
    handlers: Arc<Handlers>,
    reply: Arc<Reply>,
}

impl DianaRunner {
    /// Builds the bus from `builder` and subscribes the shape's handlers.
    pub fn new(shape: Shape, builder: BusBuilder) -> Result<Self, ConfigError> {
        let bus = builder.build()?;
        let handlers = Arc::new(Handlers::new(shape.handlers));
        let reply = Arc::new(Reply::default());
        match shape.pattern {
            Pattern::Stream => subscribe_stream(&bus, &shape, &handlers),
            Pattern::RoundTrip => subscribe_round_trip(&bus, &handlers, &reply),
        }
        Ok(Self {
            bus,
            shape,
            handlers,
            reply,
        })
    }

    /// The bus, for its effective settings.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    fn stream(&self, events: u64) -> Timed {
        let bus = &self.bus;
        let (types, tenants) = (self.shape.types, self.shape.tenants);
        let send = move |message: Message| {
            let meta = match tenants {
                0 => Meta::new(),
                _ => Meta::new().tenant(TenantId(message.tenant)),
            };
            match types {
                // What `bus.publish(message)` does.
                0 => bus.publish_with(message, meta).is_ok(),
                _ => (typed::ops(message.tag).publish)(bus, message, meta),
            }
        };
        let senders = vec![send; self.shape.publishers];
        publishers::run(&self.shape, events, senders, || bus.flush())
    }

    fn round_trip(&self, events: u64) -> Timed {
        let (bus, reply) = (&self.bus, &self.reply);
        reply.wait_on_this_thread();
        let ask = |ping: Message| {
            bus.publish(ping).ok()?;
            reply.wait(ping.id);
            Some(ping.id)
        };
        round_trip::run(&self.shape, events, ask, || bus.flush())
    }
}

fn subscribe_stream(bus: &Bus, shape: &Shape, handlers: &Arc<Handlers>) {
    for handler in 0..shape.handlers {
        if shape.types == 0 {
            let handlers = Arc::clone(handlers);
            bus.subscribe(move |message: &Message, _: &Context<'_>| -> HandlerResult {
                handlers.call(handler, message);
                Ok(())
            });
        } else {
            for tag in 0..shape.types {
                (typed::ops(tag as u64).subscribe)(bus, handler, handlers);
            }
        }
    }
}

fn subscribe_round_trip(bus: &Bus, handlers: &Arc<Handlers>, reply: &Arc<Reply>) {
    let handlers = Arc::clone(handlers);
    bus.subscribe(move |ping: &Message, ctx: &Context<'_>| -> HandlerResult {
        handlers.call(0, ping);
        ctx.publish(Pong(*ping));
        Ok(())
    });
    let reply = Arc::clone(reply);
    bus.subscribe(move |pong: &Pong, _: &Context<'_>| -> HandlerResult {
        reply.answer(pong.0.id);
        Ok(())
    });
}

impl Runner for DianaRunner {
    fn name(&self) -> &'static str {
        "diana-bus"
    }

    fn run(&mut self, events: u64) -> Result<Sample, RunError> {
        let delivered_before = self.bus.metrics().delivered;
        let (timed, expected) = match self.shape.pattern {
            Pattern::Stream => (self.stream(events), self.shape.deliveries(events)),
            // The ping's handler and the pong's.
            Pattern::RoundTrip => (self.round_trip(events), 2 * events),
        };
        let sample = verdict(timed, events, &self.handlers)?;
        let counted = self.bus.metrics().delivered - delivered_before;
        if counted != expected {
            return Err(RunError::Deliveries { expected, counted });
        }
        Ok(sample)
    }
}
