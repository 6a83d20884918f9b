//! A shape on channels: one consumer thread per handler, a receive loop in
//! each, publishers sending on their own clone of the sender. Written as a
//! user of a channel crate writes it; [`Channel`] and [`Fanout`] only name
//! the crate's own calls so one runner drives them all.
//!
//! A channel has no fan-out of its own, so [`PerHandler`] emulates it with
//! one channel per handler and a publisher that sends a copy to each. A
//! round trip uses two channels: the publisher sends a ping on one and
//! blocks in the other's receive for the pong, which an echo thread (the
//! handler) sends back.

use std::marker::PhantomData;
use std::panic::resume_unwind;
use std::thread;

use super::super::runner::{verdict, Timed};
use super::super::{
    publishers, round_trip, Dispatch, Handlers, Message, Pattern, RunError, Runner, Sample, Shape,
};

/// A bounded point-to-point channel crate.
pub trait Channel: 'static {
    /// The crate's name in reports.
    const NAME: &'static str;
    /// Its sending half.
    type Sender: Clone + Send;
    /// Its receiving half.
    type Receiver: Send;
    /// A channel that holds at most `capacity` messages.
    fn bounded(capacity: usize) -> (Self::Sender, Self::Receiver);
    /// Sends, waiting for room; false once the receiver is gone.
    fn send(sender: &Self::Sender, message: Message) -> bool;
    /// Receives, waiting for a message; None once every sender is gone.
    fn recv(receiver: &mut Self::Receiver) -> Option<Message>;
}

/// A channel on which every receiver sees every message.
pub trait Fanout: 'static {
    /// The implementation's name in reports.
    const NAME: &'static str;
    /// What a publisher holds.
    type Sender: Clone + Send;
    /// What a consumer holds.
    type Receiver: Send;
    /// A sender whose every message reaches each of `receivers` receivers,
    /// with room for `capacity` messages before `send` waits.
    fn open(receivers: usize, capacity: usize) -> (Self::Sender, Vec<Self::Receiver>);
    /// Sends, waiting for room; false once the receivers are gone.
    fn send(sender: &Self::Sender, message: Message) -> bool;
    /// Receives, waiting for a message; None once every sender is gone.
    fn recv(receiver: &mut Self::Receiver) -> Option<Message>;
}

/// Fan-out emulated on a point-to-point channel: one channel per receiver,
/// and a send that sends a copy on each.
#[derive(Debug)]
pub struct PerHandler<C>(PhantomData<C>);

impl<C: Channel> Fanout for PerHandler<C> {
    const NAME: &'static str = C::NAME;
    type Sender = Vec<C::Sender>;
    type Receiver = C::Receiver;

    fn open(receivers: usize, capacity: usize) -> (Self::Sender, Vec<Self::Receiver>) {
        (0..receivers).map(|_| C::bounded(capacity)).unzip()
    }

    #[inline]
    fn send(senders: &Self::Sender, message: Message) -> bool {
        senders.iter().all(|sender| C::send(sender, message))
    }

    #[inline]
    fn recv(receiver: &mut Self::Receiver) -> Option<Message> {
        C::recv(receiver)
    }
}

/// Makes fresh channels and consumer threads for every run (a channel ends
/// when its senders are dropped); both are ready before the clock starts.
#[derive(Debug)]
pub struct ChannelRunner<F> {
    shape: Shape,
    capacity: usize,
    handlers: Handlers,
    fanout: PhantomData<F>,
}

impl<F: Fanout> ChannelRunner<F> {
    /// Runs `shape` through channels that hold `capacity` messages.
    pub fn new(shape: Shape, capacity: usize) -> Self {
        Self {
            shape,
            capacity,
            handlers: Handlers::new(shape.handlers),
            fanout: PhantomData,
        }
    }

    fn stream(&self, events: u64) -> Timed {
        let (handlers, dispatch) = (&self.handlers, Dispatch::new(self.shape.types));
        let (sender, receivers) = F::open(self.shape.handlers, self.capacity);
        thread::scope(|scope| {
            let consumers: Vec<_> = receivers
                .into_iter()
                .enumerate()
                .map(|(handler, mut receiver)| {
                    scope.spawn(move || {
                        while let Some(message) = F::recv(&mut receiver) {
                            dispatch.call(handlers, handler, &message);
                        }
                    })
                })
                .collect();
            let senders: Vec<_> = (0..self.shape.publishers)
                .map(|_| {
                    let sender = sender.clone();
                    move |message| F::send(&sender, message)
                })
                .collect();
            drop(sender);
            publishers::run(&self.shape, events, senders, || join(consumers))
        })
    }

    fn round_trip(&self, events: u64) -> Timed {
        let handlers = &self.handlers;
        let (pings, mut ping_receivers) = F::open(1, self.capacity);
        let (pongs, mut pong_receivers) = F::open(1, self.capacity);
        let (mut ping_receiver, mut pong_receiver) = (
            ping_receivers.pop().expect("one receiver"),
            pong_receivers.pop().expect("one receiver"),
        );
        thread::scope(|scope| {
            let echo = scope.spawn(move || {
                while let Some(ping) = F::recv(&mut ping_receiver) {
                    handlers.call(0, &ping);
                    if !F::send(&pongs, ping) {
                        break;
                    }
                }
            });
            let ask = move |ping: Message| {
                if !F::send(&pings, ping) {
                    return None;
                }
                F::recv(&mut pong_receiver).map(|pong| pong.id)
            };
            round_trip::run(&self.shape, events, ask, || join(vec![echo]))
        })
    }
}

/// Waits for every consumer to finish, passing a consumer's panic on.
fn join(consumers: Vec<thread::ScopedJoinHandle<'_, ()>>) {
    for consumer in consumers {
        consumer.join().unwrap_or_else(|panic| resume_unwind(panic));
    }
}

impl<F: Fanout> Runner for ChannelRunner<F> {
    fn name(&self) -> &'static str {
        F::NAME
    }

    fn run(&mut self, events: u64) -> Result<Sample, RunError> {
        let timed = match self.shape.pattern {
            Pattern::Stream => self.stream(events),
            Pattern::RoundTrip => self.round_trip(events),
            Pattern::Flow => {
                return Err(RunError::Unsupported {
                    implementation: F::NAME,
                    pattern: Pattern::Flow,
                })
            }
        };
        verdict(timed, events, &self.handlers)
    }
}
