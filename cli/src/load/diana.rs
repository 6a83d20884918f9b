//! A shape on diana-bus: one subscription per handler (per event type, when
//! the shape has several), built once and reused for every run.
//!
//! A round trip is written as a user would write request and reply with
//! plain subscriptions: the ping's handler publishes a [`Pong`] through its
//! context, and the pong's handler hands it to the waiting publisher
//! ([`Reply`]: spin briefly, then park).
//!
//! A flow is the library's own: each service a responder of
//! `DianaInteraction` under its name, a subscription to
//! `DianaInteractionCompleted`, and the users' interactions run by a
//! `Coordinator` with the flow's deadline, awaited on a current-thread
//! tokio runtime made for each run: the services run on the bus's workers,
//! so the users need no more than the calling thread (a multi-thread
//! runtime was no faster on two cores).

use std::sync::Arc;

use diana_bus::diana::{Coordinator, DianaInteraction, DianaInteractionCompleted, ServiceResponse};
use diana_bus::{
    Bus, BusBuilder, ConfigError, Context, HandlerError, HandlerResult, Meta, TenantId,
};
use tokio::runtime::Builder;

use super::flow::{self, DEADLINE};
use super::runner::{verdict, Timed};
use super::{
    publishers, round_trip, typed, users, Flow, Handlers, Message, Pattern, Pong, Reply, RunError,
    Runner, Sample, Shape, User, SERVICES,
};

/// A bus with the shape's subscriptions.
#[derive(Debug)]
pub struct DianaRunner {
    bus: Bus,
    shape: Shape,
    handlers: Arc<Handlers>,
    reply: Arc<Reply>,
    flow: Arc<Flow>,
}

impl DianaRunner {
    /// Builds the bus from `builder` and subscribes the shape's handlers.
    pub fn new(shape: Shape, builder: BusBuilder) -> Result<Self, ConfigError> {
        let bus = builder.build()?;
        let handlers = Arc::new(Handlers::new(shape.handlers));
        let reply = Arc::new(Reply::default());
        let flow = Arc::new(Flow::default());
        match shape.pattern {
            Pattern::Stream => subscribe_stream(&bus, &shape, &handlers),
            Pattern::RoundTrip => subscribe_round_trip(&bus, &handlers, &reply),
            Pattern::Flow => subscribe_flow(&bus, &flow),
        }
        Ok(Self {
            bus,
            shape,
            handlers,
            reply,
            flow,
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

    fn interactions(&self, events: u64) -> Result<Timed, RunError> {
        let runtime = users::runtime(&mut Builder::new_current_thread())?;
        let coordinator = Coordinator::new(&self.bus, DEADLINE);
        let interact = move |user: User, id| {
            let coordinator = coordinator.clone();
            async move {
                let Ok(request) = flow::request(user, id) else {
                    return false;
                };
                let meta = Meta::new().tenant(TenantId(user.tenant));
                coordinator.interact(request, meta).await.is_ok()
            }
        };
        Ok(users::run(&self.shape, events, &runtime, interact, || {
            self.bus.flush()
        }))
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

fn subscribe_flow(bus: &Bus, flow: &Arc<Flow>) {
    for (service, name) in SERVICES.into_iter().enumerate() {
        let flow = Arc::clone(flow);
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name(name)
            .respond(move |interaction: &DianaInteraction, _: &Context<'_>| {
                flow.answer(service, interaction)
                    .map_err(|error| HandlerError::permanent(error.to_string()))
            });
    }
    let flow = Arc::clone(flow);
    bus.subscribe(
        move |completed: &DianaInteractionCompleted, _: &Context<'_>| -> HandlerResult {
            flow.complete(completed);
            Ok(())
        },
    );
}

impl Runner for DianaRunner {
    fn name(&self) -> &'static str {
        "diana-bus"
    }

    fn run(&mut self, events: u64) -> Result<Sample, RunError> {
        let delivered_before = self.bus.metrics().delivered;
        let (sample, expected) = match self.shape.pattern {
            Pattern::Stream => (
                verdict(self.stream(events), events, &self.handlers)?,
                self.shape.deliveries(events),
            ),
            // The ping's handler and the pong's.
            Pattern::RoundTrip => (
                verdict(self.round_trip(events), events, &self.handlers)?,
                2 * events,
            ),
            // The services' answers and the completion's handler.
            Pattern::Flow => (
                self.flow.verdict(self.interactions(events)?, events)?,
                self.shape.deliveries(events) + events,
            ),
        };
        let counted = self.bus.metrics().delivered - delivered_before;
        if counted != expected {
            return Err(RunError::Deliveries { expected, counted });
        }
        Ok(sample)
    }
}
