//! The standard library's bounded channel, `std::sync::mpsc::sync_channel`.

use std::sync::mpsc;

use super::super::Message;
use super::Channel;

/// `sync_channel`, blocking `send` and `recv`.
#[derive(Debug)]
pub struct StdSync;

impl Channel for StdSync {
    const NAME: &'static str = "std-sync-channel";
    type Sender = mpsc::SyncSender<Message>;
    type Receiver = mpsc::Receiver<Message>;

    fn bounded(capacity: usize) -> (Self::Sender, Self::Receiver) {
        mpsc::sync_channel(capacity)
    }

    #[inline]
    fn send(sender: &Self::Sender, message: Message) -> bool {
        sender.send(message).is_ok()
    }

    #[inline]
    fn recv(receiver: &mut Self::Receiver) -> Option<Message> {
        receiver.recv().ok()
    }
}
