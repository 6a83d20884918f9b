//! tokio's broadcast channel: fan-out of its own, every receiver sees every
//! message, driven from plain threads with `blocking_recv`.
//!
//! A broadcast sender never waits: when a receiver falls more than the
//! channel's capacity behind, it loses the oldest messages (`Lagged`). A
//! user who must not lose events has to hold the publisher back, and the
//! channel offers `Sender::len` (messages some receiver has not seen) for
//! that. Here each publisher checks it every [`CHECK_EVERY`]-th of
//! `capacity` sends and yields until the backlog is at most `capacity`;
//! the channel is made twice that size, so publishers running past the
//! check between two looks cannot overrun it (up to 16 publishers). Should
//! a receiver lag all the same, it stops, and the run's checksum says so.

use std::cell::Cell;
use std::thread;

use tokio::sync::broadcast;

use super::super::Message;
use super::Fanout;

/// A publisher checks the backlog once per this fraction of the capacity.
const CHECK_EVERY: usize = 16;

/// `tokio::sync::broadcast::channel`.
#[derive(Debug)]
pub struct TokioBroadcast;

/// A publisher's sender, with its countdown to the next backlog check.
#[derive(Debug)]
pub struct Sender {
    sender: broadcast::Sender<Message>,
    capacity: usize,
    until_check: Cell<usize>,
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            capacity: self.capacity,
            until_check: Cell::new(0),
        }
    }
}

impl Fanout for TokioBroadcast {
    const NAME: &'static str = "tokio-broadcast";
    type Sender = Sender;
    type Receiver = broadcast::Receiver<Message>;

    fn open(receivers: usize, capacity: usize) -> (Self::Sender, Vec<Self::Receiver>) {
        let (sender, first) = broadcast::channel(2 * capacity);
        let mut all = vec![first];
        all.extend((1..receivers).map(|_| sender.subscribe()));
        let sender = Sender {
            sender,
            capacity,
            until_check: Cell::new(0),
        };
        (sender, all)
    }

    #[inline]
    fn send(sender: &Self::Sender, message: Message) -> bool {
        match sender.until_check.get() {
            0 => {
                while sender.sender.len() > sender.capacity {
                    thread::yield_now();
                }
                sender
                    .until_check
                    .set((sender.capacity / CHECK_EVERY).max(1) - 1);
            }
            more => sender.until_check.set(more - 1),
        }
        sender.sender.send(message).is_ok()
    }

    #[inline]
    fn recv(receiver: &mut Self::Receiver) -> Option<Message> {
        // Closed, or Lagged: messages were lost, which the checksum reports.
        receiver.blocking_recv().ok()
    }
}
