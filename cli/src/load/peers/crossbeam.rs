//! crossbeam-channel's bounded channel.

use super::super::Message;
use super::Channel;

/// `crossbeam_channel::bounded`, blocking `send` and `recv`.
#[derive(Debug)]
pub struct Crossbeam;

impl Channel for Crossbeam {
    const NAME: &'static str = "crossbeam-channel";
    type Sender = crossbeam_channel::Sender<Message>;
    type Receiver = crossbeam_channel::Receiver<Message>;

    fn bounded(capacity: usize) -> (Self::Sender, Self::Receiver) {
        crossbeam_channel::bounded(capacity)
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
