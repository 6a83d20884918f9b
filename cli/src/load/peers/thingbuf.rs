//! thingbuf's blocking MPSC channel.

use super::super::Message;
use super::Channel;

/// `thingbuf::mpsc::blocking::channel`, blocking `send` and `recv`.
#[derive(Debug)]
pub struct Thingbuf;

impl Channel for Thingbuf {
    const NAME: &'static str = "thingbuf";
    type Sender = thingbuf::mpsc::blocking::Sender<Message>;
    type Receiver = thingbuf::mpsc::blocking::Receiver<Message>;

    fn bounded(capacity: usize) -> (Self::Sender, Self::Receiver) {
        thingbuf::mpsc::blocking::channel(capacity)
    }

    #[inline]
    fn send(sender: &Self::Sender, message: Message) -> bool {
        sender.send(message).is_ok()
    }

    #[inline]
    fn recv(receiver: &mut Self::Receiver) -> Option<Message> {
        receiver.recv()
    }
}
