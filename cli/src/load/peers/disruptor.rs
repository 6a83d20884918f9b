//! A shape on the `disruptor` crate: one ring, one consumer thread per
//! handler (every consumer sees every event: fan-out of its own), a single
//! producer, or one clone of a multi producer per publisher thread.
//!
//! Two ways of waiting, each a type: [`Spin`] busy-spins everywhere (the
//! crate's `BusySpin` strategy for consumers, its spinning `publish` for a
//! full ring); [`Yield`] gives the core away instead (a `Yield` wait
//! strategy written against the crate's public `WaitStrategy` trait, which
//! ships none, and `try_publish` with a yield for a full ring). Busy-spin
//! burns a whole core per consumer even when idle; with more threads than
//! cores it mostly measures the scheduler.
//!
//! A round trip uses two rings: the ping ring's consumer (the handler)
//! publishes the pong into the pong ring, whose consumer hands it to the
//! waiting publisher ([`Reply`]: spin briefly, then park); the crate has no
//! receive call for the publisher to block in.

use std::marker::PhantomData;
use std::sync::Arc;
use std::thread;

use disruptor::wait_strategies::WaitStrategy;
use disruptor::{build_multi_producer, build_single_producer, BusySpin, Producer, Sequence};

use super::super::runner::{verdict, Timed};
use super::super::{
    publishers, round_trip, Dispatch, Handlers, Message, Pattern, Reply, RunError, Runner, Sample,
    Shape,
};

/// How consumers wait for events and producers for room.
pub trait Waiting: 'static {
    /// The runner's name in reports.
    const NAME: &'static str;
    /// The consumers' wait strategy.
    type Strategy: WaitStrategy + 'static;
    /// A fresh wait strategy.
    fn strategy() -> Self::Strategy;
    /// Publishes `message`, waiting for a free slot.
    fn publish<P: Producer<Message>>(producer: &mut P, message: Message);
}

/// Busy-spin: the lowest latency while every thread has a core.
#[derive(Debug)]
pub struct Spin;

impl Waiting for Spin {
    const NAME: &'static str = "disruptor-spin";
    type Strategy = BusySpin;

    fn strategy() -> BusySpin {
        BusySpin
    }

    #[inline]
    fn publish<P: Producer<Message>>(producer: &mut P, message: Message) {
        producer.publish(|slot| *slot = message);
    }
}

impl Spin {
    /// Threads that spin: every consumer and every publisher of a stream;
    /// the ping and pong consumers and the publisher of a round trip (which
    /// spins briefly before it parks, but does while the others spin); none
    /// for a flow, which it does not run.
    pub fn spinning_threads(shape: &Shape) -> usize {
        match shape.pattern {
            Pattern::Stream => shape.handlers + shape.publishers,
            Pattern::RoundTrip => 3,
            Pattern::Flow => 0,
        }
    }
}

/// Yields the core whenever there is nothing to do.
#[derive(Clone, Copy, Debug)]
pub struct Yield;

impl WaitStrategy for Yield {
    #[inline]
    fn wait_for(&self, _sequence: Sequence) {
        thread::yield_now();
    }
}

impl Waiting for Yield {
    const NAME: &'static str = "disruptor-yield";
    type Strategy = Yield;

    fn strategy() -> Yield {
        Yield
    }

    #[inline]
    fn publish<P: Producer<Message>>(producer: &mut P, message: Message) {
        while producer.try_publish(|slot| *slot = message).is_err() {
            thread::yield_now();
        }
    }
}

/// The smallest ring the crate's multi producer accepts (it panics below).
const MULTI_PRODUCER_SLOTS: usize = 64;

/// Builds a fresh disruptor for every run (one can only be used once);
/// building it, and starting its consumer threads, happens before the clock
/// starts.
#[derive(Debug)]
pub struct DisruptorRunner<W> {
    shape: Shape,
    /// The ring's size: the capacity rounded up to a power of two, as the
    /// crate requires, and to its minimum of [`MULTI_PRODUCER_SLOTS`] for
    /// several publishers.
    size: usize,
    handlers: Arc<Handlers>,
    reply: Arc<Reply>,
    waiting: PhantomData<W>,
}

impl<W: Waiting> DisruptorRunner<W> {
    /// Runs `shape` through rings of at least `capacity` slots.
    pub fn new(shape: Shape, capacity: usize) -> Self {
        Self {
            shape,
            size: match shape.publishers {
                1 => capacity.max(1).next_power_of_two(),
                _ => capacity.next_power_of_two().max(MULTI_PRODUCER_SLOTS),
            },
            handlers: Arc::new(Handlers::new(shape.handlers)),
            reply: Arc::new(Reply::default()),
            waiting: PhantomData,
        }
    }

    /// Handler number `handler` as a consumer closure.
    fn consumer(&self, handler: usize) -> impl FnMut(&Message, Sequence, bool) + Send + 'static {
        let (handlers, dispatch) = (Arc::clone(&self.handlers), Dispatch::new(self.shape.types));
        move |message, _, _| dispatch.call(&handlers, handler, message)
    }

    fn stream(&self, events: u64) -> Timed {
        let (size, factory) = (self.size, Message::default);
        match (self.shape.publishers, self.shape.handlers) {
            (1, 1) => {
                let producer = build_single_producer(size, factory, W::strategy())
                    .handle_events_with(self.consumer(0))
                    .build();
                self.publish(vec![producer], events)
            }
            (1, handlers) => {
                let mut builder =
                    build_single_producer(size, factory, W::strategy()).with_multi_consumer();
                for handler in 0..handlers {
                    builder = builder.handle_events_with(self.consumer(handler));
                }
                self.publish(vec![builder.build()], events)
            }
            (publishers, 1) => {
                let producer = build_multi_producer(size, factory, W::strategy())
                    .handle_events_with(self.consumer(0))
                    .build();
                self.publish(vec![producer; publishers], events)
            }
            (publishers, handlers) => {
                let mut builder =
                    build_multi_producer(size, factory, W::strategy()).with_multi_consumer();
                for handler in 0..handlers {
                    builder = builder.handle_events_with(self.consumer(handler));
                }
                self.publish(vec![builder.build(); publishers], events)
            }
        }
    }

    /// Publishes through one producer per publisher thread. Dropping the
    /// last producer waits for the consumers to handle every event and
    /// joins them, so the publishers' end is the last delivery.
    fn publish<P: Producer<Message> + Send>(&self, producers: Vec<P>, events: u64) -> Timed {
        let senders: Vec<_> = producers
            .into_iter()
            .map(|mut producer| {
                move |message| {
                    W::publish(&mut producer, message);
                    true
                }
            })
            .collect();
        publishers::run(&self.shape, events, senders, || {})
    }

    fn round_trip(&self, events: u64) -> Timed {
        let reply = Arc::clone(&self.reply);
        let mut pongs = build_single_producer(self.size, Message::default, W::strategy())
            .handle_events_with(move |pong: &Message, _, _| reply.answer(pong.id))
            .build();
        let handlers = Arc::clone(&self.handlers);
        let mut pings = build_single_producer(self.size, Message::default, W::strategy())
            .handle_events_with(move |ping: &Message, _, _| {
                handlers.call(0, ping);
                W::publish(&mut pongs, *ping);
            })
            .build();
        let reply = &self.reply;
        reply.wait_on_this_thread();
        let ask = move |ping: Message| {
            W::publish(&mut pings, ping);
            reply.wait(ping.id);
            Some(ping.id)
        };
        // Dropping `ask` drops the ping producer, which joins the ping
        // consumer, whose closure drops the pong producer, which joins the
        // pong consumer.
        round_trip::run(&self.shape, events, ask, || {})
    }
}

impl<W: Waiting> Runner for DisruptorRunner<W> {
    fn name(&self) -> &'static str {
        W::NAME
    }

    fn run(&mut self, events: u64) -> Result<Sample, RunError> {
        let timed = match self.shape.pattern {
            Pattern::Stream => self.stream(events),
            Pattern::RoundTrip => self.round_trip(events),
            Pattern::Flow => {
                return Err(RunError::Unsupported {
                    implementation: W::NAME,
                    pattern: Pattern::Flow,
                })
            }
        };
        verdict(timed, events, &self.handlers)
    }
}
