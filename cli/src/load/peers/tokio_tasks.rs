//! The Diana flow on tokio without a bus, as a user of tokio writes it:
//! each service is a task that owns the receiver of its own bounded `mpsc`
//! channel; a user's coordinator sends the interaction to every service's
//! channel with a `oneshot` for the answer, awaits the four answers until
//! the deadline (`tokio::time::timeout_at`), and sends the completion to a
//! completion task, which runs the completion's handler.
//!
//! Everything runs on a multi-thread runtime with a worker per core (what
//! `#[tokio::main]` starts), made for every run with its tasks and
//! channels before the clock starts. The run ends when the users are done:
//! dropping their coordinator closes the services' channels and the
//! completion channel, and the completion task ends once it has handled
//! every completion.

use std::panic::resume_unwind;
use std::sync::Arc;
use std::time::Duration;

use diana_bus::diana::{
    DianaInteraction, DianaInteractionCompleted, DianaInterfaceRequested, ServiceResponse,
};
use tokio::runtime::Builder;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};

use super::super::flow::{self, Answer, DEADLINE};
use super::super::runner::Timed;
use super::super::{users, Flow, Pattern, RunError, Runner, Sample, Shape, SERVICES};

/// What a service receives: the interaction (one for all the services),
/// and where its answer goes.
type Ask = (Arc<DianaInteraction>, oneshot::Sender<ServiceResponse>);

/// Tasks and channels, made fresh for every run.
#[derive(Debug)]
pub struct TokioTasksRunner {
    shape: Shape,
    capacity: usize,
    flow: Arc<Flow>,
}

impl TokioTasksRunner {
    /// Its name in reports.
    pub const NAME: &'static str = "tokio-tasks";

    /// Runs `shape` through channels that hold `capacity` messages.
    pub fn new(shape: Shape, capacity: usize) -> Self {
        Self {
            shape,
            capacity,
            flow: Arc::new(Flow::default()),
        }
    }

    fn interactions(&self, events: u64) -> Result<Timed, RunError> {
        let runtime = users::runtime(Builder::new_multi_thread().enable_time())?;
        // tokio's channels refuse a capacity of 0.
        let capacity = self.capacity.max(1);
        let mut services = Vec::with_capacity(SERVICES.len());
        for service in 0..SERVICES.len() {
            let (sender, asks) = mpsc::channel(capacity);
            runtime.spawn(serve(Arc::clone(&self.flow), service, asks));
            services.push(sender);
        }
        let (completions, mut completed) = mpsc::channel(capacity);
        let flow = Arc::clone(&self.flow);
        let completer = runtime.spawn(async move {
            while let Some(completion) = completed.recv().await {
                flow.complete(&completion);
            }
        });
        let coordinator = Arc::new(Coordinator {
            flow: Arc::clone(&self.flow),
            services,
            completions,
            deadline: DEADLINE,
        });
        let interact = move |user, id| {
            let coordinator = Arc::clone(&coordinator);
            async move {
                match flow::request(user, id) {
                    Ok(request) => coordinator.interact(&request).await,
                    Err(_) => false,
                }
            }
        };
        let settle = || {
            runtime
                .block_on(completer)
                .unwrap_or_else(|error| resume_unwind(error.into_panic()))
        };
        Ok(users::run(&self.shape, events, &runtime, interact, settle))
    }
}

/// Service number `service`: answers every interaction that comes in until
/// its channel closes.
async fn serve(flow: Arc<Flow>, service: usize, mut asks: mpsc::Receiver<Ask>) {
    while let Some((interaction, answer)) = asks.recv().await {
        // A service that cannot answer drops the sender: the coordinator
        // sees it failed.
        if let Ok(response) = flow.answer(service, &interaction) {
            // Err: the coordinator stopped waiting, and nobody wants it.
            let _ = answer.send(response);
        }
    }
}

/// What every user's interactions go through.
#[derive(Debug)]
struct Coordinator {
    /// Where interaction ids come from.
    flow: Arc<Flow>,
    /// Each service's channel, in [`SERVICES`] order.
    services: Vec<mpsc::Sender<Ask>>,
    /// The completion task's channel.
    completions: mpsc::Sender<DianaInteractionCompleted>,
    /// How long an interaction waits for the services.
    deadline: Duration,
}

impl Coordinator {
    /// Runs `request` through the services and sends its completion on;
    /// whether that was possible (false once a channel is closed).
    async fn interact(&self, request: &DianaInterfaceRequested) -> bool {
        let Ok(interaction) = self.flow.interaction(request) else {
            return false;
        };
        let interaction = Arc::new(interaction);
        let mut answers = Vec::with_capacity(self.services.len());
        for service in &self.services {
            let (answer, answered) = oneshot::channel();
            if service
                .send((Arc::clone(&interaction), answer))
                .await
                .is_err()
            {
                return false;
            }
            answers.push(answered);
        }
        let deadline = Instant::now() + self.deadline;
        let mut gathered = Vec::with_capacity(answers.len());
        for answered in answers {
            gathered.push(match timeout_at(deadline, answered).await {
                Ok(Ok(response)) => Answer::Answered(response),
                Ok(Err(_)) => Answer::Failed,
                Err(_) => Answer::TimedOut,
            });
        }
        match flow::completion(&interaction, gathered) {
            Ok(completed) => self.completions.send(completed).await.is_ok(),
            Err(_) => false,
        }
    }
}

impl Runner for TokioTasksRunner {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&mut self, events: u64) -> Result<Sample, RunError> {
        match self.shape.pattern {
            Pattern::Flow => self.flow.verdict(self.interactions(events)?, events),
            pattern @ (Pattern::Stream | Pattern::RoundTrip) => Err(RunError::Unsupported {
                implementation: self.name(),
                pattern,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_service_that_never_answers_times_out_and_fails_the_run() {
        // Imports in the test: see the note in `publishers.rs`.
        use super::super::super::{histogram, Flow, RunError, User, SERVICES};
        use super::{flow, mpsc, serve, Arc, Coordinator, Duration, Timed};

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let flow = Arc::new(Flow::default());
        let completion = runtime.block_on(async {
            let (mut services, mut silent) = (Vec::new(), Vec::new());
            for (service, name) in SERVICES.into_iter().enumerate() {
                let (sender, asks) = mpsc::channel(1);
                match name {
                    // Takes the interaction, never answers.
                    "narrative" => silent.push(asks),
                    _ => drop(tokio::spawn(serve(Arc::clone(&flow), service, asks))),
                }
                services.push(sender);
            }
            let (completions, mut completed) = mpsc::channel(1);
            let coordinator = Coordinator {
                flow: Arc::clone(&flow),
                services,
                completions,
                deadline: Duration::from_millis(10),
            };
            let request = flow::request(User { id: 1, tenant: 0 }, 1).unwrap();
            assert!(coordinator.interact(&request).await);
            completed.recv().await.unwrap()
        });
        assert_eq!(completion.timed_out(), ["narrative"]);
        assert_eq!(completion.responses().len(), SERVICES.len() - 1);
        flow.complete(&completion);
        let timed = Timed {
            window: Default::default(),
            accepted: 1,
            latency: histogram(),
        };
        assert_eq!(
            flow.verdict(timed, 1).unwrap_err(),
            RunError::Incomplete {
                interactions: 1,
                events: 1
            }
        );
    }
}
