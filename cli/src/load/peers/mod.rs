//! The implementations diana-bus is measured against, each written as its
//! users write it, and the direct-call floor. `--peers` picks from
//! [`PEERS`] by name; without it, `run` takes every peer that
//! [`Peer::runs`] the profile and [`Peer::fits`] the machine. A queue runs
//! streams and round trips but has no Diana flow; tokio tasks run only the
//! flow; the direct calls run everything.

mod channel;
mod crossbeam;
mod disruptor;
mod flume;
mod kanal;
mod std_sync;
mod thingbuf;
mod tokio_broadcast;
mod tokio_mpsc;
mod tokio_tasks;

pub use channel::{Channel, ChannelRunner, Fanout, PerHandler};
pub use disruptor::{DisruptorRunner, Spin, Waiting, Yield};
pub use tokio_tasks::TokioTasksRunner;

use super::{DirectRunner, Pattern, Runner, Shape};

/// A peer, by name, and how to set it up for a shape.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// Its name in `--peers`, reports and benchmark ids.
    pub name: &'static str,
    patterns: &'static [Pattern],
    build: fn(Shape, usize) -> Box<dyn Runner>,
    spinning: fn(&Shape) -> usize,
}

impl Peer {
    /// Whether it can run `shape` at all.
    pub fn runs(&self, shape: &Shape) -> bool {
        self.patterns.contains(&shape.pattern)
    }

    /// The peer set up for `shape`, its queues holding `capacity` events.
    pub fn build(&self, shape: Shape, capacity: usize) -> Box<dyn Runner> {
        (self.build)(shape, capacity)
    }

    /// Threads that busy-spin, never yielding their core, while it runs
    /// `shape`.
    pub fn spinning_threads(&self, shape: &Shape) -> usize {
        (self.spinning)(shape)
    }

    /// Whether its busy-spinning threads fit in `cores` cores while it runs
    /// `shape`. Beyond that a spinner holds a core the thread it waits for
    /// needs, until the scheduler preempts it: the run measures the
    /// scheduler's time slice, not the peer, and takes that long per event.
    pub fn fits(&self, shape: &Shape, cores: usize) -> bool {
        self.spinning_threads(shape) <= cores
    }

    /// The peer called `name`.
    pub fn find(name: &str) -> Option<&'static Peer> {
        PEERS.iter().find(|peer| peer.name == name)
    }
}

/// What a queue runs.
const QUEUE: &[Pattern] = &[Pattern::Stream, Pattern::RoundTrip];

fn none_spinning(_: &Shape) -> usize {
    0
}

fn direct(shape: Shape, _capacity: usize) -> Box<dyn Runner> {
    Box::new(DirectRunner::new(shape))
}

fn channel<C: Channel>(shape: Shape, capacity: usize) -> Box<dyn Runner> {
    Box::new(ChannelRunner::<PerHandler<C>>::new(shape, capacity))
}

fn fanout<F: Fanout>(shape: Shape, capacity: usize) -> Box<dyn Runner> {
    Box::new(ChannelRunner::<F>::new(shape, capacity))
}

fn disruptor<W: Waiting>(shape: Shape, capacity: usize) -> Box<dyn Runner> {
    Box::new(DisruptorRunner::<W>::new(shape, capacity))
}

fn tokio_tasks(shape: Shape, capacity: usize) -> Box<dyn Runner> {
    Box::new(TokioTasksRunner::new(shape, capacity))
}

/// Every peer, in the order reports list them.
pub const PEERS: &[Peer] = &[
    // The handlers called in a loop on the publishing thread: the floor.
    Peer {
        name: "direct",
        patterns: &[Pattern::Stream, Pattern::RoundTrip, Pattern::Flow],
        build: direct,
        spinning: none_spinning,
    },
    // crossbeam-channel bounded, one channel per handler.
    Peer {
        name: crossbeam::Crossbeam::NAME,
        patterns: QUEUE,
        build: channel::<crossbeam::Crossbeam>,
        spinning: none_spinning,
    },
    // flume bounded, one channel per handler.
    Peer {
        name: flume::Flume::NAME,
        patterns: QUEUE,
        build: channel::<flume::Flume>,
        spinning: none_spinning,
    },
    // kanal bounded, one channel per handler.
    Peer {
        name: kanal::Kanal::NAME,
        patterns: QUEUE,
        build: channel::<kanal::Kanal>,
        spinning: none_spinning,
    },
    // thingbuf's blocking MPSC channel, one channel per handler.
    Peer {
        name: thingbuf::Thingbuf::NAME,
        patterns: QUEUE,
        build: channel::<thingbuf::Thingbuf>,
        spinning: none_spinning,
    },
    // tokio::sync::mpsc, blocking_send/blocking_recv, one channel per handler.
    Peer {
        name: tokio_mpsc::TokioMpsc::NAME,
        patterns: QUEUE,
        build: channel::<tokio_mpsc::TokioMpsc>,
        spinning: none_spinning,
    },
    // tokio::sync::broadcast, one receiver per handler, publishers held back by len().
    Peer {
        name: <tokio_broadcast::TokioBroadcast as Fanout>::NAME,
        patterns: QUEUE,
        build: fanout::<tokio_broadcast::TokioBroadcast>,
        spinning: none_spinning,
    },
    // std::sync::mpsc::sync_channel, one channel per handler.
    Peer {
        name: std_sync::StdSync::NAME,
        patterns: QUEUE,
        build: channel::<std_sync::StdSync>,
        spinning: none_spinning,
    },
    // The disruptor crate, BusySpin consumers and a spinning publish: burns a
    // core per thread, and collapses with more busy threads than cores.
    Peer {
        name: Spin::NAME,
        patterns: QUEUE,
        build: disruptor::<Spin>,
        spinning: Spin::spinning_threads,
    },
    // The disruptor crate, yielding consumers, try_publish + yield when full.
    Peer {
        name: Yield::NAME,
        patterns: QUEUE,
        build: disruptor::<Yield>,
        spinning: none_spinning,
    },
    // The Diana flow on tokio without a bus: a task per service, mpsc and
    // oneshot channels, a deadline by tokio::time::timeout_at.
    Peer {
        name: TokioTasksRunner::NAME,
        patterns: &[Pattern::Flow],
        build: tokio_tasks,
        spinning: none_spinning,
    },
];
