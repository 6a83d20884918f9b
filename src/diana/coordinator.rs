//! The Diana interaction coordinator: one [`DianaInterfaceRequested`] in,
//! one [`DianaInteractionCompleted`] out, built from the answers of the
//! services that respond to [`DianaInteraction`]. The flow, its
//! aggregation rules and its cancel safety are documented on
//! [`Coordinator`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::error::DomainError;
use super::interface::{
    DianaInteraction, DianaInteractionCompleted, DianaInterfaceRequested, ServiceResponse,
};
use super::rules;
use super::wire::WireEvent;
use super::JsonObject;
use crate::async_api::{Expect, Gathered, RequestError};
use crate::bus::Bus;
use crate::event::{EventId, Meta};

/// Interaction ids, shared by every coordinator in the process so that no
/// two interactions share one.
static NEXT_INTERACTION: AtomicI64 = AtomicI64::new(1);

/// Runs Diana interactions on a bus: fans each request out to the
/// services, gathers their answers within a deadline, and publishes one
/// [`DianaInteractionCompleted`] per interaction. Cloning one is cheap
/// (a bus handle and its settings); clones can run interactions at once.
///
/// # The four steps
///
/// [`Coordinator::interact`] runs them in order:
///
/// 1. **Publish to the relevant services.** It takes a fresh interaction id
///    (from one counter for the whole process: ids are unique across
///    coordinators and increase in the order interactions start) and
///    publishes a [`DianaInteraction`] as a request to every responder
///    of `DianaInteraction` answering [`ServiceResponse`] (see
///    [`Bus::responder`]) for the request's tenant. [`Coordinator::expect`]
///    names the services waited for; the others get the interaction too,
///    and their answers count if they come before the wait ends.
/// 2. **Collect and aggregate their responses** until every expected
///    service has answered or failed for good, or the deadline passes:
///    answers by service, the services that failed (after their retries),
///    and those that had not answered in time.
/// 3. **Coordinate the final response**: the [`DianaInteractionCompleted`]
///    (each service named once, see *Aggregation*) and the merged
///    [`Outcome::response`] a bot renders.
/// 4. **Publish the completion event**, once, for the request's tenant and
///    keyed by the user, then return the [`Outcome`].
///
/// # Aggregation
///
/// A service is known by its subscription name (the name given to
/// [`SubscriberBuilder::name`](crate::SubscriberBuilder::name)), which is
/// also what `expect` and dead letters use; the `service` field of its
/// [`ServiceResponse`] is not consulted. Each service lands in exactly one
/// of the completion's three lists:
///
/// - `responses` holds the `data` of each service that answered. If several
///   subscriptions share a name, the first answer counts.
/// - `failed` lists first the services that answered for another
///   interaction or user (a bug in the service, logged as a warning), then,
///   in the order their failures were final, those that gave up (a
///   permanent error, or a transient one on the last attempt of their
///   retry policy) without any answer.
/// - `timed_out` lists the expected services that did neither before the
///   deadline, including any still waiting for a retry. A late answer is
///   dropped: the interaction is already complete.
///
/// The merged [`Outcome::response`] is the services' `data` objects merged
/// key by key, in service-name order; when two services set the same key,
/// the first service in name order keeps it (the completion still holds
/// every service's own data).
///
/// # Ordering and tenants
///
/// Every event of the flow is keyed by its user id, so one user's
/// interactions reach each service in the order they were started, behind
/// the user's earlier events, and different users run in parallel. The
/// tenant comes from the [`Meta`] given to `interact`: the request goes to
/// the responders of that tenant (and unscoped ones), and the completion is
/// published for it.
///
/// # Cancel safety
///
/// Dropped before it completes, an `interact` has published no
/// completion (the services still handle the interaction); when it
/// returns `Ok`, the completion was published exactly once: it is
/// published in the same poll that returns.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use diana_bus::diana::{Coordinator, DianaInteraction, DianaInterfaceRequested, ServiceResponse};
/// use diana_bus::{Bus, Context, HandlerError, Meta, TenantId};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let bus = Bus::builder().workers(2).build()?;
/// bus.responder::<DianaInteraction, ServiceResponse>().name("gamification").respond(
///     |i: &DianaInteraction, _: &Context| -> Result<ServiceResponse, HandlerError> {
///         let data = json!({"points": 15}).as_object().cloned().unwrap_or_default();
///         ServiceResponse::new(i.interaction_id(), i.user_id().get(), "gamification", data)
///             .map_err(|e| HandlerError::permanent(e.to_string()))
///     },
/// );
/// let coordinator = Coordinator::new(&bus, Duration::from_millis(200));
/// let request = DianaInterfaceRequested::new(7, "profile", Default::default())?;
/// let outcome = coordinator.interact(request, Meta::new().tenant(TenantId(3))).await?;
/// assert_eq!(outcome.completed.responses()["gamification"]["points"], 15);
/// assert_eq!(outcome.response["points"], 15);
/// assert!(outcome.completed.failed().is_empty() && outcome.completed.timed_out().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Coordinator {
    bus: Bus,
    deadline: Duration,
    expect: Option<Vec<String>>,
}

/// What one interaction came to: the completion event as published, the
/// merged response, and why the failed services failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The completion event, as published.
    pub completed: DianaInteractionCompleted,
    /// The id the bus gave the published completion event.
    pub completion_id: EventId,
    /// The services' data merged into one object (see [`Coordinator`],
    /// *Aggregation*).
    pub response: JsonObject,
    /// (service, last error) for each service in `completed.failed()`.
    pub failures: Vec<(String, String)>,
}

/// Why [`Coordinator::interact`] could not complete an interaction.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The [`Meta`] given sets something the coordinator decides itself:
    /// the key (always the user id), the id or a dependency (one
    /// interaction publishes two events, which cannot share them).
    UnsupportedMeta(&'static str),
    /// The interaction could not be published to the services:
    /// [`RequestError::NoResponder`] when no service answers
    /// [`DianaInteraction`] for the tenant, [`RequestError::Failed`] when
    /// the bus refused it (closed), [`RequestError::Timeout`] when the
    /// deadline passed before it could be published (its ring or quota
    /// stayed full, or the async backlogs over their bound). No completion
    /// was published.
    Request(RequestError),
    /// An event of the flow could not be built (it names the rule broken).
    Invalid(DomainError),
    /// The bus closed before the completion could be published; here it is.
    Unpublished(Box<DianaInteractionCompleted>),
}

impl fmt::Display for CoordinatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoordinatorError::UnsupportedMeta(field) => write!(
                f,
                "an interaction's meta may set only the tenant, not the {field}"
            ),
            CoordinatorError::Request(error) => {
                write!(f, "the interaction reached no service: {error}")
            }
            CoordinatorError::Invalid(error) => write!(f, "invalid interaction: {error}"),
            CoordinatorError::Unpublished(completed) => write!(
                f,
                "the bus closed before interaction {} was published as completed",
                completed.interaction_id()
            ),
        }
    }
}

impl std::error::Error for CoordinatorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CoordinatorError::Request(error) => Some(error),
            CoordinatorError::Invalid(error) => Some(error),
            CoordinatorError::UnsupportedMeta(_) | CoordinatorError::Unpublished(_) => None,
        }
    }
}

impl From<DomainError> for CoordinatorError {
    fn from(error: DomainError) -> Self {
        CoordinatorError::Invalid(error)
    }
}

impl Coordinator {
    /// A coordinator on `bus` (a clone of the handle is kept) that waits
    /// for the services at most `deadline` per interaction, and expects
    /// every service that answers [`DianaInteraction`] for the tenant.
    pub fn new(bus: &Bus, deadline: Duration) -> Self {
        Coordinator {
            bus: bus.clone(),
            deadline,
            expect: None,
        }
    }

    /// Expects these services (by subscription name) instead of whichever
    /// are subscribed: an expected service that is not subscribed is
    /// reported as timed out, and the wait ends as soon as all of these
    /// are in. Every responder still gets the interaction, and an
    /// unexpected one's answer counts if it comes before the wait ends.
    pub fn expect<I, S>(mut self, services: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.expect = Some(services.into_iter().map(Into::into).collect());
        self
    }

    /// How long an interaction waits for its services.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Runs one interaction through the four steps (see [`Coordinator`])
    /// and returns its outcome, whose completion event has been published
    /// exactly once. `meta` may set the tenant and nothing else.
    ///
    /// Cancel safety: dropped before it completes, it has published no
    /// completion (the services still handle the interaction).
    pub async fn interact(
        &self,
        request: DianaInterfaceRequested,
        meta: Meta,
    ) -> Result<Outcome, CoordinatorError> {
        let routing = routing(meta)?;
        // An expected service that does not answer is listed as timed out:
        // its name must be fit for the completion before anything is sent.
        for service in self.expect.iter().flatten() {
            rules::non_empty(DianaInteractionCompleted::NAME, "timed_out", service)?;
        }

        // 1. Publish to the relevant services.
        let interaction = DianaInteraction::new(
            NEXT_INTERACTION.fetch_add(1, Ordering::Relaxed),
            request.user_id().get(),
            request.interface_type(),
            request.context().clone(),
        )?;
        let id = interaction.interaction_id();
        tracing::debug!(interaction = id, user = %request.user_id(), "diana: interaction published");
        let expect = match &self.expect {
            Some(names) => Expect::Names(names.clone()),
            None => Expect::All,
        };

        // 2. Collect and aggregate their responses.
        let gathered = self
            .bus
            .gather::<DianaInteraction, ServiceResponse>(interaction)
            .expect(expect)
            .deadline(self.deadline)
            .meta(routing)
            .await
            .map_err(CoordinatorError::Request)?;
        let aggregate = Aggregate::of(id, &request, gathered);

        // 3. Coordinate the final response.
        let response = merge(&aggregate.responses);
        let failures = aggregate.failures;
        let completed = DianaInteractionCompleted::new(
            id,
            request.user_id().get(),
            request.interface_type(),
            aggregate.responses,
            failures
                .iter()
                .map(|(service, _)| service.clone())
                .collect(),
            aggregate.timed_out,
        )?;

        // 4. Publish the completion event, once.
        let completion_id = self
            .bus
            .publish_async_with(completed.clone(), routing)
            .await
            .map_err(|refused| CoordinatorError::Unpublished(Box::new(refused.into_inner())))?;
        tracing::debug!(
            interaction = id,
            answered = completed.responses().len(),
            failed = completed.failed().len(),
            timed_out = completed.timed_out().len(),
            "diana: interaction completed"
        );
        Ok(Outcome {
            completed,
            completion_id,
            response,
            failures,
        })
    }
}

/// The routing of both events of an interaction: the caller's tenant,
/// nothing else (the events are keyed by their user).
fn routing(meta: Meta) -> Result<Meta, CoordinatorError> {
    if meta.get_key().is_some() {
        return Err(CoordinatorError::UnsupportedMeta("key"));
    }
    if meta.get_id().is_some() {
        return Err(CoordinatorError::UnsupportedMeta("id"));
    }
    if meta.get_after().is_some() {
        return Err(CoordinatorError::UnsupportedMeta("dependency (after)"));
    }
    Ok(match meta.get_tenant() {
        Some(tenant) => Meta::new().tenant(tenant),
        None => Meta::new(),
    })
}

/// The answers of one interaction, each service in exactly one place.
#[derive(Debug)]
struct Aggregate {
    responses: BTreeMap<String, JsonObject>,
    failures: Vec<(String, String)>,
    timed_out: Vec<String>,
}

impl Aggregate {
    fn of(id: i64, request: &DianaInterfaceRequested, gathered: Gathered<ServiceResponse>) -> Self {
        let mut responses = BTreeMap::new();
        let mut failures: Vec<(String, String)> = Vec::new();
        for (service, answer) in gathered.answers {
            if answer.interaction_id() != id || answer.user_id() != request.user_id() {
                tracing::warn!(
                    %service,
                    interaction = id,
                    answered_for = answer.interaction_id(),
                    "diana: a service answered for another interaction or user"
                );
                let why = format!(
                    "answered for interaction {} of user {}",
                    answer.interaction_id(),
                    answer.user_id()
                );
                failures.push((service, why));
                continue;
            }
            responses
                .entry(service)
                .or_insert_with(|| answer.into_data());
        }
        failures.extend(gathered.failed);
        let mut aggregate = Aggregate {
            responses,
            failures: Vec::new(),
            timed_out: Vec::new(),
        };
        for (service, error) in failures {
            if !aggregate.names(&service) {
                aggregate.failures.push((service, error));
            }
        }
        for service in gathered.timed_out {
            if !aggregate.names(&service) {
                aggregate.timed_out.push(service);
            }
        }
        aggregate
    }

    /// Whether `service` is already in one of the three places.
    fn names(&self, service: &str) -> bool {
        self.responses.contains_key(service)
            || self.failures.iter().any(|(name, _)| name == service)
            || self.timed_out.iter().any(|name| name == service)
    }
}

/// The services' data merged key by key in service-name order; the first
/// service to set a key keeps it.
fn merge(responses: &BTreeMap<String, JsonObject>) -> JsonObject {
    let mut merged = JsonObject::new();
    for data in responses.values() {
        for (key, value) in data {
            merged.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: serde_json::Value) -> JsonObject {
        value.as_object().cloned().unwrap_or_default()
    }

    fn answer(id: i64, user: i64, service: &str, data: serde_json::Value) -> ServiceResponse {
        ServiceResponse::new(id, user, service, object(data)).unwrap()
    }

    #[test]
    fn merge_keeps_the_first_service_in_name_order() {
        let mut responses = BTreeMap::new();
        responses.insert(
            "narrative".to_owned(),
            object(json!({"title": "b", "scene": 3})),
        );
        responses.insert(
            "gamification".to_owned(),
            object(json!({"title": "a", "points": 5})),
        );
        assert_eq!(
            merge(&responses),
            object(json!({"title": "a", "points": 5, "scene": 3}))
        );
    }

    #[test]
    fn each_service_lands_in_exactly_one_place() {
        let request = DianaInterfaceRequested::new(7, "menu", JsonObject::new()).unwrap();
        let gathered = Gathered {
            answers: vec![
                (
                    "user".to_owned(),
                    answer(9, 7, "user", json!({"name": "ana"})),
                ),
                (
                    "user".to_owned(),
                    answer(9, 7, "user", json!({"name": "again"})),
                ),
                ("stale".to_owned(), answer(8, 7, "stale", json!({}))),
            ],
            failed: vec![
                ("admin".to_owned(), "down".to_owned()),
                ("user".to_owned(), "a twin failed".to_owned()),
            ],
            timed_out: vec!["emotional".to_owned(), "admin".to_owned()],
        };
        let aggregate = Aggregate::of(9, &request, gathered);
        assert_eq!(
            aggregate.responses.keys().collect::<Vec<_>>(),
            ["user"],
            "the first answer of a name counts"
        );
        assert_eq!(aggregate.responses["user"]["name"], "ana");
        let failed: Vec<_> = aggregate.failures.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(failed, ["stale", "admin"]);
        assert_eq!(aggregate.timed_out, ["emotional"]);
    }

    #[test]
    fn meta_may_set_only_the_tenant() {
        use crate::event::TenantId;
        assert_eq!(
            routing(Meta::new().tenant(TenantId(4))),
            Ok(Meta::new().tenant(TenantId(4)))
        );
        assert_eq!(
            routing(Meta::new().key(1)),
            Err(CoordinatorError::UnsupportedMeta("key"))
        );
        assert_eq!(
            routing(Meta::new().id(EventId(1))),
            Err(CoordinatorError::UnsupportedMeta("id"))
        );
        assert!(routing(Meta::new().after(EventId(1))).is_err());
    }
}
