//! The floor: the same handlers called in a loop on the publishing thread,
//! with nothing between publish and handler. Whatever the shape's
//! publisher count, one thread calls every handler for every event (a
//! round trip is one call of the ping's handler). A flow's interaction is
//! the four services and the completion's handler called in turn; its
//! users are tasks on a current-thread runtime, each of which runs all its
//! interactions in one poll, as none ever waits.

use std::sync::Arc;

use tokio::runtime::Builder;

use super::flow::{self, Answer};
use super::runner::{verdict, Timed};
use super::{
    publishers, round_trip, users, Dispatch, Flow, Handlers, Message, Pattern, RunError, Runner,
    Sample, Shape, User, SERVICES,
};

/// Direct calls, no queue and no other thread.
#[derive(Debug)]
pub struct DirectRunner {
    shape: Shape,
    handlers: Handlers,
    flow: Arc<Flow>,
}

impl DirectRunner {
    /// Calls the handlers of `shape` directly.
    pub fn new(shape: Shape) -> Self {
        Self {
            shape,
            handlers: Handlers::new(shape.handlers),
            flow: Arc::new(Flow::default()),
        }
    }

    fn timed(&self, events: u64) -> Result<Timed, RunError> {
        let (handlers, dispatch) = (&self.handlers, Dispatch::new(self.shape.types));
        let call = move |message: Message| {
            for handler in 0..self.shape.handlers {
                dispatch.call(handlers, handler, &message);
            }
        };
        Ok(match self.shape.pattern {
            Pattern::Stream => {
                let send = |message| {
                    call(message);
                    true
                };
                publishers::run(&self.shape, events, vec![send], || {})
            }
            Pattern::RoundTrip => {
                let ask = |message: Message| {
                    call(message);
                    Some(message.id)
                };
                round_trip::run(&self.shape, events, ask, || {})
            }
            Pattern::Flow => {
                let runtime = users::runtime(&mut Builder::new_current_thread())?;
                let flow = Arc::clone(&self.flow);
                let interact = move |user, id| {
                    let completed = interact_inline(&flow, user, id);
                    async move { completed }
                };
                users::run(&self.shape, events, &runtime, interact, || {})
            }
        })
    }
}

/// Interaction `id` of `user`, every step called in turn; whether it
/// completed.
fn interact_inline(flow: &Flow, user: User, id: u64) -> bool {
    let Ok(interaction) = flow::request(user, id).and_then(|request| flow.interaction(&request))
    else {
        return false;
    };
    let answers = (0..SERVICES.len()).map(|service| match flow.answer(service, &interaction) {
        Ok(response) => Answer::Answered(response),
        Err(_) => Answer::Failed,
    });
    match flow::completion(&interaction, answers) {
        Ok(completed) => {
            flow.complete(&completed);
            true
        }
        Err(_) => false,
    }
}

impl Runner for DirectRunner {
    fn name(&self) -> &'static str {
        "direct"
    }

    fn run(&mut self, events: u64) -> Result<Sample, RunError> {
        let timed = self.timed(events)?;
        match self.shape.pattern {
            Pattern::Flow => self.flow.verdict(timed, events),
            Pattern::Stream | Pattern::RoundTrip => verdict(timed, events, &self.handlers),
        }
    }
}
