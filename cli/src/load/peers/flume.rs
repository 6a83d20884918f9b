//! flume's bounded channel.

use super::super::Message;
use super::Channel;

/// `flume::bounded`, blocking `send` and `recv`.
#[derive(Debug)]
pub struct Flume;

impl Channel for Flume {
    const NAME: &'static str = "flume";
    type Sender = flume::Sender<Message>;
    type Receiver = flume::Receiver<Message>;

    fn bounded(capacity: usize) -> (Self::Sender, Self::Receiver) {
        flume::bounded(capacity)
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
