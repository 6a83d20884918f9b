//! The envelope `{"event": "<Name>", "data": {...}}` and the registry that
//! decodes it by name: [`WireEvent`], [`DecodedEvent`], [`WireRegistry`].
//!
//! The registry maps a wire name to a decoding function for one Rust type.
//! Decoding gives a `Box<dyn DecodedEvent>` that knows its concrete type:
//! it can be downcast to it, or published onto a [`Bus`] as it, so that the
//! handlers subscribed to that type receive it.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::error::DomainError;
use super::fields::{decode_fields, json_type, require_data};
use crate::{Bus, Event, EventId, Meta, PublishError};

/// An event that travels as JSON: its wire name, and how to read it from
/// its `data` object with validation.
///
/// Implement it to register your own event types with
/// [`WireRegistry::register`]. The default [`from_data`](Self::from_data)
/// deserializes `Self` with serde and reports schema errors by field; an
/// event with rules overrides it to read a raw struct with
/// [`decode_fields`] and build itself through its validating constructor.
///
/// # Examples
///
/// ```
/// use diana_bus::diana::{decode_fields, DomainError, Rule, UserId, WireEvent, WireRegistry};
/// use diana_bus::Event;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct TipSent { user_id: UserId, amount: i64 }
///
/// impl Event for TipSent {
///     fn key(&self) -> Option<u64> { Some(self.user_id.key()) }
/// }
///
/// impl WireEvent for TipSent {
///     const NAME: &'static str = "TipSent";
///
///     fn from_data(data: &serde_json::Value) -> Result<Self, DomainError> {
///         let tip: TipSent = decode_fields(Self::NAME, data)?;
///         if tip.amount < 1 {
///             return Err(DomainError::Invalid {
///                 event: Self::NAME,
///                 field: "amount",
///                 rule: Rule::Positive,
///                 value: tip.amount.to_string(),
///             });
///         }
///         Ok(tip)
///     }
/// }
///
/// let mut registry = WireRegistry::diana();
/// registry.register::<TipSent>()?;
/// let tip = registry.decode(r#"{"event": "TipSent", "data": {"user_id": 7, "amount": 3}}"#)?;
/// assert_eq!(tip.downcast_ref::<TipSent>().unwrap().amount, 3);
/// let err = registry
///     .decode(r#"{"event": "TipSent", "data": {"user_id": 7, "amount": 0}}"#)
///     .unwrap_err();
/// assert_eq!(err.field(), Some("amount"));
/// # Ok::<(), DomainError>(())
/// ```
pub trait WireEvent: Event + Serialize + DeserializeOwned + fmt::Debug {
    /// The name in the envelope's `event` field (for the Diana events, the
    /// Python class name).
    const NAME: &'static str;

    /// Reads the event from the envelope's `data`, rejecting bad data with
    /// a [`DomainError`] that names the event and the field.
    fn from_data(data: &Value) -> Result<Self, DomainError> {
        decode_fields(Self::NAME, data)
    }
}

/// A decoded event whose concrete type is known only at run time.
///
/// Made by [`WireRegistry::decode`]. Downcast it with
/// [`downcast_ref`](#method.downcast_ref) or
/// [`downcast`](#method.downcast), or publish it with
/// [`publish`](Self::publish): the bus delivers it as its concrete type.
///
/// The trait is sealed: only the registry makes these (implement
/// [`WireEvent`] for your own types instead).
///
/// # Examples
///
/// ```
/// use diana_bus::diana::{UserMessage, WireRegistry};
///
/// let registry = WireRegistry::diana();
/// let event = registry.decode(
///     r#"{"event": "UserMessage",
///         "data": {"user_id": 7, "message": "hi", "timestamp": "2025-08-05T10:00:00"}}"#,
/// )?;
/// assert_eq!(event.name(), "UserMessage");
/// assert_eq!(event.key(), Some(7));
/// let message: &UserMessage = event.downcast_ref().unwrap();
/// assert_eq!(message.message(), "hi");
/// # Ok::<(), diana_bus::diana::DomainError>(())
/// ```
pub trait DecodedEvent: sealed::Sealed + Send + Sync + fmt::Debug + 'static {
    /// The wire name ([`WireEvent::NAME`]).
    fn name(&self) -> &'static str;

    /// The event's ordering key ([`Event::key`]).
    fn key(&self) -> Option<u64>;

    /// The concrete event, for downcasting.
    fn as_any(&self) -> &dyn Any;

    /// The concrete event, boxed, for downcasting by value.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send + Sync>;

    /// The event in its envelope, as JSON.
    fn to_envelope(&self) -> Result<Value, DomainError>;

    /// Publishes the event onto `bus` as its concrete type, with `meta`
    /// (tenant, key, id). A refused event comes back inside the error.
    fn publish(
        self: Box<Self>,
        bus: &Bus,
        meta: Meta,
    ) -> Result<EventId, PublishError<Box<dyn DecodedEvent>>>;
}

impl dyn DecodedEvent {
    /// Whether the event is an `E`.
    pub fn is<E: WireEvent>(&self) -> bool {
        self.as_any().is::<E>()
    }

    /// The event as an `E`, if it is one.
    pub fn downcast_ref<E: WireEvent>(&self) -> Option<&E> {
        self.as_any().downcast_ref()
    }

    /// The event as an `E`, or itself back if it is not one.
    pub fn downcast<E: WireEvent>(self: Box<Self>) -> Result<E, Box<dyn DecodedEvent>> {
        if !self.is::<E>() {
            return Err(self);
        }
        match self.into_any().downcast::<E>() {
            Ok(event) => Ok(*event),
            // Sealed: the only implementation gives the same value from both.
            Err(_) => unreachable!("as_any and into_any give the same value"),
        }
    }
}

/// Wraps a typed event as a [`DecodedEvent`]. A wrapper rather than a
/// blanket impl, so that `name` and `key` never clash with [`Event`]'s on
/// the concrete types.
struct Decoded<E>(E);

impl<E: WireEvent> fmt::Debug for Decoded<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn erase<E: WireEvent>(event: E) -> Box<dyn DecodedEvent> {
    Box::new(Decoded(event))
}

mod sealed {
    /// Keeps [`DecodedEvent`](super::DecodedEvent) to [`Decoded`](super::Decoded),
    /// so `as_any` and `into_any` always give the same concrete event.
    pub trait Sealed {}
}

impl<E: WireEvent> sealed::Sealed for Decoded<E> {}

impl<E: WireEvent> DecodedEvent for Decoded<E> {
    fn name(&self) -> &'static str {
        E::NAME
    }

    fn key(&self) -> Option<u64> {
        self.0.key()
    }

    fn as_any(&self) -> &dyn Any {
        &self.0
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send + Sync> {
        Box::new(self.0)
    }

    fn to_envelope(&self) -> Result<Value, DomainError> {
        envelope(&self.0)
    }

    fn publish(
        self: Box<Self>,
        bus: &Bus,
        meta: Meta,
    ) -> Result<EventId, PublishError<Box<dyn DecodedEvent>>> {
        let Decoded(event) = *self;
        bus.publish_with(event, meta)
            .map_err(|refused| refused.map(erase))
    }
}

/// `{"event": E::NAME, "data": <event>}`.
fn envelope<E: WireEvent>(event: &E) -> Result<Value, DomainError> {
    let data = serde_json::to_value(event).map_err(|err| DomainError::Rejected {
        event: E::NAME,
        field: String::new(),
        reason: err.to_string(),
    })?;
    require_data(E::NAME, &data)?;
    Ok(serde_json::json!({ "event": E::NAME, "data": data }))
}

type DecodeFn = fn(&Value) -> Result<Box<dyn DecodedEvent>, DomainError>;

fn decode_as<E: WireEvent>(data: &Value) -> Result<Box<dyn DecodedEvent>, DomainError> {
    E::from_data(data).map(erase)
}

#[derive(Clone, Copy)]
struct Entry {
    type_id: TypeId,
    decode: DecodeFn,
}

/// Decodes envelopes into events by name, and encodes registered events
/// into envelopes.
///
/// [`WireRegistry::diana`] knows every Diana event; [`register`](Self::register)
/// adds your own.
///
/// # Examples
///
/// Decode, then publish onto a bus as the concrete type, for a tenant:
///
/// ```
/// use diana_bus::diana::{LevelUp, WireRegistry};
/// use diana_bus::{Bus, Context, HandlerResult, Meta, TenantId};
/// use std::sync::{Arc, Mutex};
///
/// let registry = WireRegistry::diana();
/// let bus = Bus::builder().workers(1).build()?;
/// let levels = Arc::new(Mutex::new(Vec::new()));
/// let seen = levels.clone();
/// bus.subscriber::<LevelUp>()
///     .tenant(TenantId(7))
///     .subscribe(move |e: &LevelUp, _: &Context| -> HandlerResult {
///         seen.lock().unwrap().push((e.user_id().get(), e.new_level()));
///         Ok(())
///     });
///
/// let event = registry.decode(r#"{"event": "LevelUp", "data": {"user_id": 3, "new_level": 2}}"#)?;
/// event.publish(&bus, Meta::new().tenant(TenantId(7)))?;
/// bus.flush();
/// assert_eq!(*levels.lock().unwrap(), [(3, 2)]);
///
/// // Encoding writes every field, defaults included.
/// let level = LevelUp::new(3, 2, Default::default())?;
/// assert_eq!(
///     registry.encode_value(&level)?,
///     serde_json::json!({"event": "LevelUp", "data": {"user_id": 3, "new_level": 2, "rewards": {}}})
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct WireRegistry {
    entries: BTreeMap<&'static str, Entry>,
}

impl WireRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with every Diana event: the bot's events, the Diana
    /// events and the interaction-flow events.
    pub fn diana() -> Self {
        use super::*;
        let mut registry = Self::new();
        registry.insert::<UserMessage>();
        registry.insert::<CommandExecuted>();
        registry.insert::<UserStartedBot>();
        registry.insert::<ReactionAdded>();
        registry.insert::<PointsAwarded>();
        registry.insert::<NarrativeProgression>();
        registry.insert::<PieceUnlocked>();
        registry.insert::<MissionCompleted>();
        registry.insert::<LevelUp>();
        registry.insert::<DianaInterfaceRequested>();
        registry.insert::<DianaActionExecuted>();
        registry.insert::<DianaInteraction>();
        registry.insert::<ServiceResponse>();
        registry.insert::<DianaInteractionCompleted>();
        registry
    }

    /// Registers `E` under [`WireEvent::NAME`]. Registering a type again
    /// does nothing; a name already taken by another type is refused with
    /// [`DomainError::NameTaken`].
    pub fn register<E: WireEvent>(&mut self) -> Result<(), DomainError> {
        match self.entries.get(E::NAME) {
            Some(existing) if existing.type_id != TypeId::of::<E>() => {
                Err(DomainError::NameTaken { name: E::NAME })
            }
            _ => {
                self.insert::<E>();
                Ok(())
            }
        }
    }

    fn insert<E: WireEvent>(&mut self) {
        let entry = Entry {
            type_id: TypeId::of::<E>(),
            decode: decode_as::<E>,
        };
        self.entries.insert(E::NAME, entry);
    }

    /// Whether an event of this name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The registered names, in alphabetical order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.keys().copied()
    }

    /// Decodes a JSON envelope.
    ///
    /// Errors: [`DomainError::Json`] for text that is not JSON or repeats
    /// a key within an object; those of
    /// [`decode_value`](Self::decode_value); then [`DomainError::Json`]
    /// for an integer beyond 64 bits that no typed field refused (one in
    /// an object field, which a `Value` would hold as a float, losing
    /// digits). A `Value` would keep only the last of repeated keys.
    pub fn decode(&self, json: &str) -> Result<Box<dyn DecodedEvent>, DomainError> {
        let event = self.decode_value(&super::json::parse(json)?)?;
        super::json::refuse_wide_integers(json)?;
        Ok(event)
    }

    /// Decodes an envelope already parsed.
    ///
    /// Errors: [`DomainError::BadEnvelope`] unless it is an object with
    /// exactly a string `event` and a `data`; [`DomainError::UnknownEvent`]
    /// for a name not registered; [`DomainError::NotAnObject`] when `data`
    /// is not an object; [`DomainError::Rejected`] when it nests deeper
    /// than [`MAX_DATA_DEPTH`](super::MAX_DATA_DEPTH); and the event's own
    /// errors for bad data.
    pub fn decode_value(&self, envelope: &Value) -> Result<Box<dyn DecodedEvent>, DomainError> {
        let bad = |reason: String| DomainError::BadEnvelope { reason };
        let object = envelope
            .as_object()
            .ok_or_else(|| bad(format!("expected an object, found {}", json_type(envelope))))?;
        if let Some(extra) = object.keys().find(|k| *k != "event" && *k != "data") {
            return Err(bad(format!("unknown key `{extra}`")));
        }
        let name = match object.get("event") {
            Some(Value::String(name)) => name,
            Some(other) => {
                return Err(bad(format!(
                    "`event` must be a string, found {}",
                    json_type(other)
                )))
            }
            None => return Err(bad("missing key `event`".into())),
        };
        let data = object
            .get("data")
            .ok_or_else(|| bad("missing key `data`".into()))?;
        let (&name, entry) = self
            .entries
            .get_key_value(name.as_str())
            .ok_or_else(|| DomainError::UnknownEvent { name: name.clone() })?;
        require_data(name, data)?;
        (entry.decode)(data)
    }

    /// Encodes `event` into its envelope, as JSON text.
    ///
    /// Refused with [`DomainError::Unregistered`] unless `E` is registered
    /// under its name, and with [`DomainError::Rejected`] when its data
    /// nests deeper than [`MAX_DATA_DEPTH`](super::MAX_DATA_DEPTH), so
    /// whatever this registry encodes, it can decode.
    pub fn encode<E: WireEvent>(&self, event: &E) -> Result<String, DomainError> {
        self.encode_value(event)
            .map(|envelope| envelope.to_string())
    }

    /// Encodes `event` into its envelope, as a JSON value.
    pub fn encode_value<E: WireEvent>(&self, event: &E) -> Result<Value, DomainError> {
        match self.entries.get(E::NAME) {
            Some(entry) if entry.type_id == TypeId::of::<E>() => envelope(event),
            _ => Err(DomainError::Unregistered { name: E::NAME }),
        }
    }
}

impl fmt::Debug for WireRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireRegistry")
            .field("events", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}
