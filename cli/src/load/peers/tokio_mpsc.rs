//! tokio's bounded mpsc channel, driven from plain threads the way tokio
//! documents for synchronous code: `blocking_send` and `blocking_recv`, no
//! runtime. (Inside a runtime a user would `.await` instead; the channel is
//! the same.)

use tokio::sync::mpsc;

use super::super::Message;
use super::Channel;

/// `tokio::sync::mpsc::channel`.
#[derive(Debug)]
pub struct TokioMpsc;

impl Channel for TokioMpsc {
    const NAME: &'static str = "tokio-mpsc";
    type Sender = mpsc::Sender<Message>;
    type Receiver = mpsc::Receiver<Message>;

    fn bounded(capacity: usize) -> (Self::Sender, Self::Receiver) {
        mpsc::channel(capacity)
    }

    #[inline]
    fn send(sender: &Self::Sender, message: Message) -> bool {
        sender.blocking_send(message).is_ok()
    }

    #[inline]
    fn recv(receiver: &mut Self::Receiver) -> Option<Message> {
        receiver.blocking_recv()
    }
}
