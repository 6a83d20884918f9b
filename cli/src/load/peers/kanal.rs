//! kanal's bounded channel.

use super::super::Message;
use super::Channel;

/// `kanal::bounded`, blocking `send` and `recv`.
#[derive(Debug)]
pub struct Kanal;

impl Channel for Kanal {
    const NAME: &'static str = "kanal";
    type Sender = kanal::Sender<Message>;
    type Receiver = kanal::Receiver<Message>;

    fn bounded(capacity: usize) -> (Self::Sender, Self::Receiver) {
        kanal::bounded(capacity)
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
