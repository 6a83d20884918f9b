//! Diana's own events: a user asking for an interface
//! ([`DianaInterfaceRequested`]) or acting in one
//! ([`DianaActionExecuted`]), and the interaction flow a coordinator runs
//! to build an interface from several services:
//!
//! ```text
//! DianaInteraction { interaction_id, .. }          fanned out to the services
//!   -> ServiceResponse { interaction_id, service, data }   one per service that answers
//!   -> DianaInteractionCompleted { responses, failed, timed_out }   once per interaction
//! ```
//!
//! Fields are private: the constructors check the rules, and
//! deserialization reads a raw struct and goes through the same
//! constructor.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::DomainError;
use super::rules;
use super::user_id::UserId;
use super::wire::WireEvent;
use super::JsonObject;

/// A user asked Diana for an interface (a menu, a profile, a story view).
///
/// Wire: `{"user_id": int, "interface_type": str, "context": object}`; the
/// interface type must not be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DianaInterfaceRequestedFields")]
pub struct DianaInterfaceRequested {
    user_id: UserId,
    interface_type: String,
    context: JsonObject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DianaInterfaceRequestedFields {
    user_id: i64,
    interface_type: String,
    context: JsonObject,
}

impl DianaInterfaceRequested {
    /// Fails unless `user_id` is positive and `interface_type` not empty.
    pub fn new(
        user_id: i64,
        interface_type: impl Into<String>,
        context: JsonObject,
    ) -> Result<Self, DomainError> {
        let user_id = UserId::parse(Self::NAME, "user_id", user_id)?;
        let interface_type = interface_type.into();
        rules::non_empty(Self::NAME, "interface_type", &interface_type)?;
        Ok(DianaInterfaceRequested {
            user_id,
            interface_type,
            context,
        })
    }

    /// Who asked.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The interface asked for, never empty.
    pub fn interface_type(&self) -> &str {
        &self.interface_type
    }

    /// What the caller knows about the request.
    pub fn context(&self) -> &JsonObject {
        &self.context
    }
}

impl TryFrom<DianaInterfaceRequestedFields> for DianaInterfaceRequested {
    type Error = DomainError;

    fn try_from(f: DianaInterfaceRequestedFields) -> Result<Self, DomainError> {
        Self::new(f.user_id, f.interface_type, f.context)
    }
}

wire_event!(DianaInterfaceRequested, DianaInterfaceRequestedFields);

/// A user did something in a Diana interface.
///
/// Wire: `{"user_id": int, "action": str, "result": object}`; the action
/// must not be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DianaActionExecutedFields")]
pub struct DianaActionExecuted {
    user_id: UserId,
    action: String,
    result: JsonObject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DianaActionExecutedFields {
    user_id: i64,
    action: String,
    result: JsonObject,
}

impl DianaActionExecuted {
    /// Fails unless `user_id` is positive and `action` not empty.
    pub fn new(
        user_id: i64,
        action: impl Into<String>,
        result: JsonObject,
    ) -> Result<Self, DomainError> {
        let user_id = UserId::parse(Self::NAME, "user_id", user_id)?;
        let action = action.into();
        rules::non_empty(Self::NAME, "action", &action)?;
        Ok(DianaActionExecuted {
            user_id,
            action,
            result,
        })
    }

    /// Who acted.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The action, never empty.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// What it produced.
    pub fn result(&self) -> &JsonObject {
        &self.result
    }
}

impl TryFrom<DianaActionExecutedFields> for DianaActionExecuted {
    type Error = DomainError;

    fn try_from(f: DianaActionExecutedFields) -> Result<Self, DomainError> {
        Self::new(f.user_id, f.action, f.result)
    }
}

wire_event!(DianaActionExecuted, DianaActionExecutedFields);

/// The request of one interaction, fanned out to the services that build
/// the interface.
///
/// Wire: `{"interaction_id": int, "user_id": int, "interface_type": str,
/// "context": object}`; the interaction id is positive and the interface
/// type not empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DianaInteractionFields")]
pub struct DianaInteraction {
    interaction_id: i64,
    user_id: UserId,
    interface_type: String,
    context: JsonObject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DianaInteractionFields {
    interaction_id: i64,
    user_id: i64,
    interface_type: String,
    context: JsonObject,
}

impl DianaInteraction {
    /// Fails unless `interaction_id` and `user_id` are positive and
    /// `interface_type` not empty.
    pub fn new(
        interaction_id: i64,
        user_id: i64,
        interface_type: impl Into<String>,
        context: JsonObject,
    ) -> Result<Self, DomainError> {
        let interaction_id = rules::positive(Self::NAME, "interaction_id", interaction_id)?;
        let user_id = UserId::parse(Self::NAME, "user_id", user_id)?;
        let interface_type = interface_type.into();
        rules::non_empty(Self::NAME, "interface_type", &interface_type)?;
        Ok(DianaInteraction {
            interaction_id,
            user_id,
            interface_type,
            context,
        })
    }

    /// The interaction, positive.
    pub fn interaction_id(&self) -> i64 {
        self.interaction_id
    }

    /// Who it is for.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The interface to build, never empty.
    pub fn interface_type(&self) -> &str {
        &self.interface_type
    }

    /// What the services need to know.
    pub fn context(&self) -> &JsonObject {
        &self.context
    }
}

impl TryFrom<DianaInteractionFields> for DianaInteraction {
    type Error = DomainError;

    fn try_from(f: DianaInteractionFields) -> Result<Self, DomainError> {
        Self::new(f.interaction_id, f.user_id, f.interface_type, f.context)
    }
}

wire_event!(DianaInteraction, DianaInteractionFields);

/// One service's answer to a [`DianaInteraction`].
///
/// Wire: `{"interaction_id": int, "user_id": int, "service": str,
/// "data": object}`; the interaction id is positive and the service name
/// not empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ServiceResponseFields")]
pub struct ServiceResponse {
    interaction_id: i64,
    user_id: UserId,
    service: String,
    data: JsonObject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceResponseFields {
    interaction_id: i64,
    user_id: i64,
    service: String,
    data: JsonObject,
}

impl ServiceResponse {
    /// Fails unless `interaction_id` and `user_id` are positive and
    /// `service` not empty.
    pub fn new(
        interaction_id: i64,
        user_id: i64,
        service: impl Into<String>,
        data: JsonObject,
    ) -> Result<Self, DomainError> {
        let interaction_id = rules::positive(Self::NAME, "interaction_id", interaction_id)?;
        let user_id = UserId::parse(Self::NAME, "user_id", user_id)?;
        let service = service.into();
        rules::non_empty(Self::NAME, "service", &service)?;
        Ok(ServiceResponse {
            interaction_id,
            user_id,
            service,
            data,
        })
    }

    /// The interaction answered.
    pub fn interaction_id(&self) -> i64 {
        self.interaction_id
    }

    /// Who it is for.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The answering service, never empty.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The answer.
    pub fn data(&self) -> &JsonObject {
        &self.data
    }

    /// The answer, moved out.
    pub fn into_data(self) -> JsonObject {
        self.data
    }
}

impl TryFrom<ServiceResponseFields> for ServiceResponse {
    type Error = DomainError;

    fn try_from(f: ServiceResponseFields) -> Result<Self, DomainError> {
        Self::new(f.interaction_id, f.user_id, f.service, f.data)
    }
}

wire_event!(ServiceResponse, ServiceResponseFields);

/// The outcome of one interaction, published once: the answers by
/// service, and the services that failed or did not answer in time.
///
/// Wire: `{"interaction_id": int, "user_id": int, "interface_type": str,
/// "responses": {str: object}, "failed": [str], "timed_out": [str]}`. The
/// interaction id is positive, the interface type and every service name
/// not empty, and each service appears once across `responses`, `failed`
/// and `timed_out`. The lists keep their order. Clones share the answers;
/// a clone copies only the interface type and the two lists.
///
/// # Examples
///
/// ```
/// use diana_bus::diana::{DianaInteractionCompleted, DomainError, Rule};
/// use serde_json::json;
///
/// let responses = serde_json::from_value(json!({"narrative": {"scene": 3}})).unwrap();
/// let done = DianaInteractionCompleted::new(
///     9, 7, "profile", responses, vec!["gamification".into()], vec![],
/// )?;
/// assert_eq!(
///     serde_json::to_value(&done).unwrap(),
///     json!({
///         "interaction_id": 9, "user_id": 7, "interface_type": "profile",
///         "responses": {"narrative": {"scene": 3}},
///         "failed": ["gamification"], "timed_out": [],
///     })
/// );
///
/// let twice = DianaInteractionCompleted::new(
///     9, 7, "profile", Default::default(), vec!["a".into()], vec!["a".into()],
/// );
/// assert!(matches!(
///     twice,
///     Err(DomainError::Invalid { field: "timed_out", rule: Rule::Distinct, .. })
/// ));
/// # Ok::<(), DomainError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DianaInteractionCompletedFields")]
pub struct DianaInteractionCompleted {
    interaction_id: i64,
    user_id: UserId,
    interface_type: String,
    /// Shared by clones: the coordinator publishes one and returns another.
    responses: Arc<BTreeMap<String, JsonObject>>,
    failed: Vec<String>,
    timed_out: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DianaInteractionCompletedFields {
    interaction_id: i64,
    user_id: i64,
    interface_type: String,
    responses: BTreeMap<String, JsonObject>,
    failed: Vec<String>,
    timed_out: Vec<String>,
}

impl DianaInteractionCompleted {
    /// Fails unless `interaction_id` and `user_id` are positive,
    /// `interface_type` and every service name are not empty, and no
    /// service is named twice across `responses`, `failed` and
    /// `timed_out`.
    pub fn new(
        interaction_id: i64,
        user_id: i64,
        interface_type: impl Into<String>,
        responses: BTreeMap<String, JsonObject>,
        failed: Vec<String>,
        timed_out: Vec<String>,
    ) -> Result<Self, DomainError> {
        let interaction_id = rules::positive(Self::NAME, "interaction_id", interaction_id)?;
        let user_id = UserId::parse(Self::NAME, "user_id", user_id)?;
        let interface_type = interface_type.into();
        rules::non_empty(Self::NAME, "interface_type", &interface_type)?;
        let services = (responses.keys().map(|s| ("responses", s)))
            .chain(failed.iter().map(|s| ("failed", s)))
            .chain(timed_out.iter().map(|s| ("timed_out", s)));
        let mut seen = BTreeSet::new();
        for (field, service) in services {
            rules::non_empty(Self::NAME, field, service)?;
            rules::distinct(Self::NAME, field, &mut seen, service)?;
        }
        Ok(DianaInteractionCompleted {
            interaction_id,
            user_id,
            interface_type,
            responses: Arc::new(responses),
            failed,
            timed_out,
        })
    }

    /// The interaction.
    pub fn interaction_id(&self) -> i64 {
        self.interaction_id
    }

    /// Who it was for.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The interface built, never empty.
    pub fn interface_type(&self) -> &str {
        &self.interface_type
    }

    /// The answers, by service.
    pub fn responses(&self) -> &BTreeMap<String, JsonObject> {
        &self.responses
    }

    /// The services that failed, in the order given.
    pub fn failed(&self) -> &[String] {
        &self.failed
    }

    /// The services that did not answer in time, in the order given.
    pub fn timed_out(&self) -> &[String] {
        &self.timed_out
    }
}

impl TryFrom<DianaInteractionCompletedFields> for DianaInteractionCompleted {
    type Error = DomainError;

    fn try_from(f: DianaInteractionCompletedFields) -> Result<Self, DomainError> {
        Self::new(
            f.interaction_id,
            f.user_id,
            f.interface_type,
            f.responses,
            f.failed,
            f.timed_out,
        )
    }
}

wire_event!(DianaInteractionCompleted, DianaInteractionCompletedFields);
