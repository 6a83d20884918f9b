//! The Diana flow of the `diana` profile, the parts every implementation
//! shares: the request a user makes, the four services, and the check of
//! every completion.
//!
//! A user's [`request`] carries the interaction's run id in its context
//! (`"id"`). diana-bus runs it through its `Coordinator`, with the services
//! subscribed as responders; the implementations without a coordinator
//! (the direct floor, tokio tasks) take the same steps with
//! [`Flow::interaction`] and [`completion`]. A service ([`Flow::answer`])
//! is synchronous and cheap: it folds the run id into its checksum and
//! answers `{"id": <run id>}`. The completion's handler
//! ([`Flow::complete`]) checks that every service answered, each with the
//! same run id, and folds that id into a checksum of its own. So a run
//! counts ([`Flow::verdict`]) only if every service saw every interaction
//! exactly once and every interaction completed exactly once, with every
//! service's answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use diana_bus::diana::{
    DianaInteraction, DianaInteractionCompleted, DianaInterfaceRequested, DomainError, JsonObject,
    ServiceResponse,
};

use super::runner::{verdict, Timed};
use super::{Handlers, Message, RunError, Sample, User};

/// The services, by the names they answer under, in name order (the order
/// of a completion's responses).
pub const SERVICES: [&str; 4] = ["emotional", "gamification", "narrative", "user"];

/// How long a coordinator waits for the services: far longer than an
/// answer takes even on a loaded machine (microseconds; milliseconds when a
/// thread is preempted), so only a service that never answers misses it,
/// and the run then fails within a second instead of hanging.
pub const DEADLINE: Duration = Duration::from_secs(1);

/// The interface every request asks for.
const INTERFACE: &str = "profile";

/// Where the run id is, in a request's context and in a service's answer.
const ID: &str = "id";

/// The request of interaction `id` (the run id) by `user`.
pub fn request(user: User, id: u64) -> Result<DianaInterfaceRequested, DomainError> {
    DianaInterfaceRequested::new(user.id, INTERFACE, with_id(id))
}

/// `{"id": id}`.
fn with_id(id: u64) -> JsonObject {
    let mut object = JsonObject::new();
    object.insert(ID.to_owned(), id.into());
    object
}

/// The run id in `object`, or 0 (no run id), which the checksums catch.
fn id_in(object: &JsonObject) -> u64 {
    object.get(ID).and_then(|id| id.as_u64()).unwrap_or(0)
}

/// What a coordinator without a bus got from one service.
#[derive(Debug)]
pub enum Answer {
    /// Its answer.
    Answered(ServiceResponse),
    /// It gave up without answering.
    Failed,
    /// It had not answered by the deadline.
    TimedOut,
}

/// The completion of `interaction` from the answers of [`SERVICES`], in
/// their order: what the `Coordinator`'s third step builds when each
/// service answers at most once.
pub fn completion(
    interaction: &DianaInteraction,
    answers: impl IntoIterator<Item = Answer>,
) -> Result<DianaInteractionCompleted, DomainError> {
    let mut responses = BTreeMap::new();
    let (mut failed, mut timed_out) = (Vec::new(), Vec::new());
    for (service, answer) in SERVICES.into_iter().zip(answers) {
        match answer {
            Answer::Answered(response) => {
                responses.insert(service.to_owned(), response.data().clone());
            }
            Answer::Failed => failed.push(service.to_owned()),
            Answer::TimedOut => timed_out.push(service.to_owned()),
        }
    }
    DianaInteractionCompleted::new(
        interaction.interaction_id(),
        interaction.user_id().get(),
        interaction.interface_type(),
        responses,
        failed,
        timed_out,
    )
}

/// One implementation's services and completion handler, and the checks
/// of its runs.
#[derive(Debug)]
pub struct Flow {
    /// A checksum per service, then the completions'.
    handlers: Handlers,
    /// Completions without every service's answer, this run.
    incomplete: AtomicU64,
    /// The last interaction id [`Flow::interaction`] gave.
    last_interaction: AtomicI64,
}

impl Default for Flow {
    fn default() -> Self {
        Self {
            handlers: Handlers::new(SERVICES.len() + 1),
            incomplete: AtomicU64::new(0),
            last_interaction: AtomicI64::new(0),
        }
    }
}

impl Flow {
    /// The first step of a coordinator, for the implementations without
    /// one: the interaction of `request`, under a fresh id.
    pub fn interaction(
        &self,
        request: &DianaInterfaceRequested,
    ) -> Result<DianaInteraction, DomainError> {
        let id = self.last_interaction.fetch_add(1, Ordering::Relaxed) + 1;
        DianaInteraction::new(
            id,
            request.user_id().get(),
            request.interface_type(),
            request.context().clone(),
        )
    }

    /// Service number `service` of [`SERVICES`] answers `interaction`: it
    /// folds the run id into its checksum and answers with it.
    pub fn answer(
        &self,
        service: usize,
        interaction: &DianaInteraction,
    ) -> Result<ServiceResponse, DomainError> {
        let id = id_in(interaction.context());
        self.handlers.call(service, &Message::new(id, 0));
        ServiceResponse::new(
            interaction.interaction_id(),
            interaction.user_id().get(),
            SERVICES[service],
            with_id(id),
        )
    }

    /// The completion's handler: a completion with every service's answer,
    /// all for the same run id, counts that id in the completions'
    /// checksum; any other counts as incomplete.
    ///
    /// Relaxed is enough for the count, as for the checksums: it is read
    /// only once the run has synchronised with every handler call.
    pub fn complete(&self, completed: &DianaInteractionCompleted) {
        let responses = completed.responses();
        let mut ids = responses.values().map(id_in);
        let every_answer = responses.keys().eq(SERVICES)
            && completed.failed().is_empty()
            && completed.timed_out().is_empty();
        match ids.next() {
            Some(id) if every_answer && ids.all(|other| other == id) => {
                self.handlers.call(SERVICES.len(), &Message::new(id, 0));
            }
            _ => {
                self.incomplete.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The verdict on a timed run of `events` interactions: every one
    /// complete, then what [`verdict`] checks (every interaction accepted,
    /// every checksum right). Both counts are reset for the next run,
    /// whatever the outcome.
    pub fn verdict(&self, timed: Timed, events: u64) -> Result<Sample, RunError> {
        let incomplete = self.incomplete.swap(0, Ordering::Relaxed);
        let sample = verdict(timed, events, &self.handlers);
        match incomplete {
            0 => sample,
            interactions => Err(RunError::Incomplete {
                interactions,
                events,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    // Paths instead of `use`: see the note in `publishers.rs`.

    /// Runs interactions `ids` of user 1 inline, each service giving
    /// `answer(service, response)`, and returns the run's verdict.
    fn run(
        ids: std::ops::RangeInclusive<u64>,
        answer: impl Fn(usize, diana_bus::diana::ServiceResponse) -> super::Answer,
    ) -> Result<super::Sample, super::RunError> {
        let flow = super::Flow::default();
        let user = super::User { id: 1, tenant: 1 };
        let events = *ids.end();
        for id in ids {
            let request = super::request(user, id).unwrap();
            let interaction = flow.interaction(&request).unwrap();
            let answers = (0..super::SERVICES.len())
                .map(|service| answer(service, flow.answer(service, &interaction).unwrap()));
            flow.complete(&super::completion(&interaction, answers).unwrap());
        }
        let timed = super::Timed {
            window: Default::default(),
            accepted: events,
            latency: super::super::histogram(),
        };
        flow.verdict(timed, events)
    }

    #[test]
    fn every_answer_of_every_interaction_counts() {
        assert!(run(1..=5, |_, response| super::Answer::Answered(response)).is_ok());
    }

    #[test]
    fn a_failed_or_late_service_makes_the_run_an_error() {
        let error = run(1..=4, |service, response| match service {
            0 => super::Answer::TimedOut,
            1 => super::Answer::Failed,
            _ => super::Answer::Answered(response),
        })
        .unwrap_err();
        assert_eq!(
            error,
            super::RunError::Incomplete {
                interactions: 4,
                events: 4
            }
        );
    }

    #[test]
    fn an_answer_for_another_interaction_makes_the_run_an_error() {
        let stale = |service, response: diana_bus::diana::ServiceResponse| {
            let mut data = response.data().clone();
            if service == 3 {
                data.insert("id".to_owned(), 99.into());
            }
            let response = diana_bus::diana::ServiceResponse::new(
                response.interaction_id(),
                response.user_id().get(),
                response.service(),
                data,
            );
            super::Answer::Answered(response.unwrap())
        };
        assert!(matches!(
            run(1..=2, stale),
            Err(super::RunError::Incomplete {
                interactions: 2,
                ..
            })
        ));
    }
}
