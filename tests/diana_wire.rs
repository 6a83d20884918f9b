//! The Diana events on the wire, through the public API: every event read
//! from the JSON a Python service sends and written back field for field,
//! every kind of bad input refused with an error naming what is wrong,
//! envelopes decoded by name into types that downcast and publish onto a
//! real bus as themselves, in per-user order.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use diana_bus::diana::*;
use diana_bus::{Bus, Context, Event, HandlerResult, Meta, TenantId};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Every Diana event, as a Python service sends it: (name, data).
fn python_events() -> Vec<(&'static str, Value)> {
    vec![
        (
            "UserMessage",
            json!({"user_id": 1001, "message": "Hola Diana", "timestamp": "2025-08-05T10:00:00"}),
        ),
        (
            "CommandExecuted",
            json!({"user_id": 1001, "command": "start", "args": ["ref", "42"],
                   "timestamp": "2025-08-05T10:00:01.250000"}),
        ),
        (
            "UserStartedBot",
            json!({"user_id": 1001, "username": "lucien"}),
        ),
        (
            "ReactionAdded",
            json!({"user_id": 1001, "message_id": 77, "points_to_award": 10}),
        ),
        (
            "PointsAwarded",
            json!({"user_id": 1001, "points": -3, "source_event": "ReactionAdded"}),
        ),
        (
            "NarrativeProgression",
            json!({"user_id": 1001, "fragment_id": "intro_2",
                   "choices_made": {"intro_1": [0, 2], "intro_2": []}}),
        ),
        (
            "PieceUnlocked",
            json!({"user_id": 1001, "piece_id": "lore_7", "unlock_method": "mission"}),
        ),
        (
            "MissionCompleted",
            json!({"user_id": 1001, "mission_id": "daily_1",
                   "completion_time": "2025-08-05T23:59:59+02:00", "reward_points": 50}),
        ),
        (
            "LevelUp",
            json!({"user_id": 1001, "new_level": 3,
                   "rewards": {"badge": "curious", "items": [1, 2], "vip": null}}),
        ),
        (
            "DianaInterfaceRequested",
            json!({"user_id": 1001, "interface_type": "profile",
                   "context": {"chat_id": -100, "lang": "es"}}),
        ),
        (
            "DianaActionExecuted",
            json!({"user_id": 1001, "action": "open_diary", "result": {"ok": true, "page": 4}}),
        ),
        (
            "DianaInteraction",
            json!({"interaction_id": 9, "user_id": 1001, "interface_type": "profile",
                   "context": {"depth": 1.5}}),
        ),
        (
            "ServiceResponse",
            json!({"interaction_id": 9, "user_id": 1001, "service": "gamification",
                   "data": {"points": 120, "level": 3}}),
        ),
        (
            "DianaInteractionCompleted",
            json!({"interaction_id": 9, "user_id": 1001, "interface_type": "profile",
                   "responses": {"gamification": {"points": 120}, "narrative": {}},
                   "failed": ["shop"], "timed_out": ["emotions", "admin"]}),
        ),
    ]
}

/// The fields with a default: (event, field, default).
const DEFAULTS: [(&str, &str, i64); 2] = [
    ("ReactionAdded", "points_to_award", 5),
    ("MissionCompleted", "reward_points", 0),
];

fn envelope(name: &str, data: &Value) -> Value {
    json!({"event": name, "data": data})
}

fn decode(name: &str, data: &Value) -> Result<Box<dyn DecodedEvent>, DomainError> {
    WireRegistry::diana().decode(&envelope(name, data).to_string())
}

fn rejection(name: &str, data: &Value) -> DomainError {
    match decode(name, data) {
        Ok(event) => panic!("{name} accepted {data}: {event:?}"),
        Err(err) => err,
    }
}

/// `data` with `field` set to `value`.
fn with(data: &Value, field: &str, value: Value) -> Value {
    let mut data = data.clone();
    data[field] = value;
    data
}

fn data_of(name: &str) -> Value {
    let (_, data) = python_events()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap();
    data
}

// ---- round trips ----

#[test]
fn every_event_round_trips_through_the_registry_exactly() {
    let registry = WireRegistry::diana();
    let events = python_events();
    assert_eq!(registry.names().count(), events.len());
    for (name, data) in events {
        let sent = envelope(name, &data);
        let event = registry.decode(&sent.to_string()).unwrap();
        assert_eq!(event.name(), name);
        assert_eq!(event.key(), Some(1001), "{name} is keyed by its user");
        assert_eq!(event.to_envelope().unwrap(), sent, "{name}");
        let again = registry.decode_value(&sent).unwrap();
        assert_eq!(
            again.to_envelope().unwrap(),
            sent,
            "{name} from a parsed value"
        );
    }
}

/// Reads `data` as `E` both ways (the registry's `from_data` and plain
/// serde), checks they agree, and that it writes back exactly `data`.
fn typed<E: WireEvent + PartialEq>(data: Value) -> E {
    let event = E::from_data(&data).unwrap();
    let by_serde: E = serde_json::from_value(data.clone()).unwrap();
    assert_eq!(event, by_serde);
    assert_eq!(serde_json::to_value(&event).unwrap(), data, "{}", E::NAME);
    assert_eq!(event.name(), E::NAME);
    assert_eq!(
        WireRegistry::diana().encode_value(&event).unwrap(),
        envelope(E::NAME, &data)
    );
    event
}

#[test]
fn every_event_round_trips_as_its_type() {
    let m: UserMessage = typed(data_of("UserMessage"));
    assert_eq!((m.user_id().get(), m.message()), (1001, "Hola Diana"));
    let c: CommandExecuted = typed(data_of("CommandExecuted"));
    assert_eq!(
        (c.command(), c.args()),
        ("start", &["ref".to_owned(), "42".to_owned()][..])
    );
    let s: UserStartedBot = typed(data_of("UserStartedBot"));
    assert_eq!(s.username(), Some("lucien"));
    let r: ReactionAdded = typed(data_of("ReactionAdded"));
    assert_eq!((r.message_id(), r.points_to_award()), (77, 10));
    let p: PointsAwarded = typed(data_of("PointsAwarded"));
    assert_eq!((p.points(), p.source_event()), (-3, "ReactionAdded"));
    let n: NarrativeProgression = typed(data_of("NarrativeProgression"));
    assert_eq!(n.choices_made()["intro_1"], [0, 2]);
    let u: PieceUnlocked = typed(data_of("PieceUnlocked"));
    assert_eq!((u.piece_id(), u.unlock_method()), ("lore_7", "mission"));
    let mc: MissionCompleted = typed(data_of("MissionCompleted"));
    assert_eq!((mc.mission_id(), mc.reward_points()), ("daily_1", 50));
    let l: LevelUp = typed(data_of("LevelUp"));
    assert_eq!(
        (l.new_level(), &l.rewards()["badge"]),
        (3, &json!("curious"))
    );
    let i: DianaInterfaceRequested = typed(data_of("DianaInterfaceRequested"));
    assert_eq!(
        (i.interface_type(), &i.context()["chat_id"]),
        ("profile", &json!(-100))
    );
    let a: DianaActionExecuted = typed(data_of("DianaActionExecuted"));
    assert_eq!((a.action(), &a.result()["page"]), ("open_diary", &json!(4)));
    let di: DianaInteraction = typed(data_of("DianaInteraction"));
    assert_eq!(
        (di.interaction_id(), &di.context()["depth"]),
        (9, &json!(1.5))
    );
    let sr: ServiceResponse = typed(data_of("ServiceResponse"));
    assert_eq!(
        (sr.service(), &sr.data()["level"]),
        ("gamification", &json!(3))
    );
    let done: DianaInteractionCompleted = typed(data_of("DianaInteractionCompleted"));
    assert_eq!(done.failed(), ["shop"]);
    assert_eq!(done.timed_out(), ["emotions", "admin"]);
    assert_eq!(
        done.responses().keys().collect::<Vec<_>>(),
        ["gamification", "narrative"]
    );
}

#[test]
fn timestamps_are_kept_exactly_as_sent() {
    for stamp in [
        "2025-08-05T10:00:00",
        "2025-08-05T10:00:00.123456+02:00",
        "2025-08-05 10:00",
        "yesterday",
    ] {
        let data = with(&data_of("UserMessage"), "timestamp", json!(stamp));
        let m: UserMessage = typed(data);
        assert_eq!(m.timestamp(), stamp);
        let data = with(
            &data_of("MissionCompleted"),
            "completion_time",
            json!(stamp),
        );
        let mc: MissionCompleted = typed(data);
        assert_eq!(mc.completion_time(), stamp);
    }
}

#[test]
fn absent_defaults_are_applied_and_written_out() {
    for (name, field, default) in DEFAULTS {
        let full = data_of(name);
        let mut sent = full.clone();
        sent.as_object_mut().unwrap().remove(field);
        let back = rejection_free(name, &sent);
        assert_eq!(back, with(&full, field, json!(default)), "{name}.{field}");
    }
    let mut sent = data_of("LevelUp");
    sent.as_object_mut().unwrap().remove("rewards");
    let l = LevelUp::from_data(&sent).unwrap();
    assert!(l.rewards().is_empty());
    assert_eq!(
        rejection_free("LevelUp", &sent),
        with(&sent, "rewards", json!({}))
    );
    assert_eq!(
        ReactionAdded::from_data(&json!({"user_id": 1, "message_id": 2}))
            .unwrap()
            .points_to_award(),
        ReactionAdded::DEFAULT_POINTS_TO_AWARD
    );
}

/// The data the registry writes back for `data`.
fn rejection_free(name: &str, data: &Value) -> Value {
    let event = decode(name, data).unwrap();
    event.to_envelope().unwrap()["data"].clone()
}

#[test]
fn a_null_username_stays_null_and_is_required() {
    let sent = json!({"user_id": 5, "username": null});
    let s: UserStartedBot = typed(sent.clone());
    assert_eq!(s.username(), None);
    assert_eq!(rejection_free("UserStartedBot", &sent), sent);
    assert_eq!(
        rejection("UserStartedBot", &json!({"user_id": 5})),
        DomainError::MissingField {
            event: "UserStartedBot",
            field: "username".into()
        }
    );
}

// ---- rejections ----

#[test]
fn a_user_id_of_zero_or_below_is_refused_by_every_event() {
    for (name, data) in python_events() {
        for bad in [0, -1001] {
            assert_eq!(
                rejection(name, &with(&data, "user_id", json!(bad))),
                DomainError::Invalid {
                    event: name,
                    field: "user_id",
                    rule: Rule::Positive,
                    value: bad.to_string(),
                },
            );
        }
    }
}

#[test]
fn empty_names_are_refused() {
    let cases = [
        ("CommandExecuted", "command"),
        ("DianaInterfaceRequested", "interface_type"),
        ("DianaActionExecuted", "action"),
        ("DianaInteraction", "interface_type"),
        ("ServiceResponse", "service"),
        ("DianaInteractionCompleted", "interface_type"),
    ];
    for (name, field) in cases {
        let err = rejection(name, &with(&data_of(name), field, json!("")));
        assert_eq!(
            err,
            DomainError::Invalid {
                event: name,
                field,
                rule: Rule::NonEmpty,
                value: r#""""#.into()
            }
        );
    }
}

#[test]
fn negative_points_are_refused() {
    for (name, field, _) in DEFAULTS {
        let err = rejection(name, &with(&data_of(name), field, json!(-1)));
        assert!(
            matches!(err, DomainError::Invalid { event, field: f, rule: Rule::NonNegative, ref value }
                if event == name && f == field && value == "-1"),
            "{err:?}"
        );
    }
    // zero points are fine
    assert!(decode(
        "ReactionAdded",
        &with(&data_of("ReactionAdded"), "points_to_award", json!(0))
    )
    .is_ok());
}

#[test]
fn a_level_below_one_is_refused() {
    for level in [0, -2] {
        let err = rejection(
            "LevelUp",
            &with(&data_of("LevelUp"), "new_level", json!(level)),
        );
        assert!(
            matches!(
                err,
                DomainError::Invalid {
                    event: "LevelUp",
                    field: "new_level",
                    rule: Rule::Positive,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn an_interaction_id_below_one_is_refused() {
    for name in [
        "DianaInteraction",
        "ServiceResponse",
        "DianaInteractionCompleted",
    ] {
        let err = rejection(name, &with(&data_of(name), "interaction_id", json!(0)));
        assert_eq!(err.field(), Some("interaction_id"), "{err:?}");
        assert!(matches!(
            err,
            DomainError::Invalid {
                rule: Rule::Positive,
                ..
            }
        ));
    }
}

#[test]
fn a_completed_interaction_names_each_service_once_and_never_empty() {
    let data = data_of("DianaInteractionCompleted");
    let twice = with(&data, "failed", json!(["shop", "emotions"]));
    let err = rejection("DianaInteractionCompleted", &twice);
    assert!(
        matches!(err, DomainError::Invalid { field: "timed_out", rule: Rule::Distinct, ref value, .. }
            if value == r#""emotions""#),
        "{err:?}"
    );
    let answered_and_failed = with(&data, "failed", json!(["narrative"]));
    let err = rejection("DianaInteractionCompleted", &answered_and_failed);
    assert!(matches!(
        err,
        DomainError::Invalid {
            field: "failed",
            rule: Rule::Distinct,
            ..
        }
    ));
    let unnamed = with(&data, "responses", json!({"": {}}));
    let err = rejection("DianaInteractionCompleted", &unnamed);
    assert!(matches!(
        err,
        DomainError::Invalid {
            field: "responses",
            rule: Rule::NonEmpty,
            ..
        }
    ));
}

#[test]
fn unknown_fields_are_refused_by_every_event() {
    for (name, data) in python_events() {
        assert_eq!(
            rejection(name, &with(&data, "event_id", json!("abc"))),
            DomainError::UnknownField {
                event: name,
                field: "event_id".into()
            }
        );
    }
}

#[test]
fn missing_required_fields_are_refused_by_every_event() {
    let optional = ["points_to_award", "reward_points", "rewards"];
    for (name, data) in python_events() {
        for field in data.as_object().unwrap().keys() {
            if optional.contains(&field.as_str()) {
                continue;
            }
            let mut sent = data.clone();
            sent.as_object_mut().unwrap().remove(field);
            assert_eq!(
                rejection(name, &sent),
                DomainError::MissingField {
                    event: name,
                    field: field.clone()
                }
            );
        }
    }
}

#[test]
fn wrong_types_are_refused_naming_the_field() {
    let cases = [
        ("UserMessage", "user_id", json!("1001"), "user_id"),
        ("UserMessage", "user_id", json!(10.5), "user_id"),
        ("UserMessage", "message", json!(null), "message"),
        ("CommandExecuted", "args", json!(["ok", 7]), "args[1]"),
        ("UserStartedBot", "username", json!(5), "username"),
        (
            "ReactionAdded",
            "points_to_award",
            json!("5"),
            "points_to_award",
        ),
        (
            "NarrativeProgression",
            "choices_made",
            json!({"intro_1": [0, "b"]}),
            "choices_made.intro_1[1]",
        ),
        ("LevelUp", "rewards", json!([]), "rewards"),
        ("DianaInterfaceRequested", "context", json!("{}"), "context"),
        (
            "DianaInteractionCompleted",
            "responses",
            json!({"shop": 1}),
            "responses.shop",
        ),
    ];
    for (name, field, value, path) in cases {
        let err = rejection(name, &with(&data_of(name), field, value.clone()));
        match err {
            DomainError::WrongType { event, field, .. } => {
                assert_eq!(
                    (event, field.as_str()),
                    (name, path),
                    "{name}.{field} = {value}"
                )
            }
            other => panic!("{name}.{field} = {value}: {other:?}"),
        }
    }
    // a user id beyond 64 bits is a wrong type too, not a panic
    let huge = r#"{"event": "UserMessage", "data": {"user_id": 99999999999999999999, "message": "", "timestamp": ""}}"#;
    let err = WireRegistry::diana().decode(huge).unwrap_err();
    assert!(
        matches!(err, DomainError::WrongType { ref field, .. } if field == "user_id"),
        "{err:?}"
    );
}

#[test]
fn non_object_data_is_refused() {
    for (data, found) in [
        (json!([1]), "an array"),
        (json!("x"), "a string"),
        (json!(null), "null"),
    ] {
        assert_eq!(
            rejection("LevelUp", &data),
            DomainError::NotAnObject {
                event: "LevelUp",
                found
            }
        );
        assert_eq!(
            UserMessage::from_data(&data).unwrap_err(),
            DomainError::NotAnObject {
                event: "UserMessage",
                found
            }
        );
    }
}

#[test]
fn unknown_event_names_are_refused() {
    let err = rejection("UserMesage", &data_of("UserMessage"));
    assert_eq!(
        err,
        DomainError::UnknownEvent {
            name: "UserMesage".into()
        }
    );
    assert!(err.to_string().contains("UserMesage"));
}

#[test]
fn malformed_json_is_refused() {
    let registry = WireRegistry::diana();
    for text in [
        "",
        "{",
        r#"{"event": "UserMessage", "data": {"user_id": 1,}}"#,
        "nul",
    ] {
        match registry.decode(text) {
            Err(DomainError::Json { reason }) => assert!(reason.contains("line"), "{reason}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn json_that_a_value_would_change_is_refused() {
    let registry = WireRegistry::diana();
    for (text, why) in [
        (
            r#"{"event": "LevelUp", "data": {"user_id": 1, "new_level": 2,
                "rewards": {"badge": 18446744073709551617}}}"#,
            "integer 18446744073709551617 does not fit in 64 bits",
        ),
        (
            r#"{"event": "UserMessage", "data": {"user_id": 1, "user_id": 2,
                "message": "hi", "timestamp": "t"}}"#,
            "`user_id` is repeated",
        ),
        (
            r#"{"event": "UserMessage", "data": {}, "event": "UserStartedBot"}"#,
            "`event` is repeated",
        ),
    ] {
        match registry.decode(text) {
            Err(DomainError::Json { reason }) => {
                assert!(reason.contains(why) && reason.contains("line"), "{reason}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // A float that large, or such digits in a string, are kept as sent.
    let text = r#"{"event": "LevelUp", "data": {"user_id": 1, "new_level": 2,
        "rewards": {"badge": 1.8446744073709552e19, "code": "18446744073709551617"}}}"#;
    let back = registry.decode(text).unwrap().to_envelope().unwrap();
    assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
}

#[test]
fn floats_in_object_fields_are_read_exactly_as_written() {
    let registry = WireRegistry::diana();
    // What Python's json.dumps writes for this float; serde_json's fast
    // float parser read it one bit off.
    let text = r#"{"event": "LevelUp", "data": {"user_id": 7, "new_level": 2,
        "rewards": {"multiplier": 2.291712365432881e-09}}}"#;
    let event = registry.decode(text).unwrap();
    let level: &LevelUp = event.downcast_ref().unwrap();
    let sent: f64 = "2.291712365432881e-09".parse().unwrap();
    let read = level.rewards()["multiplier"].as_f64().unwrap();
    assert_eq!(read.to_bits(), sent.to_bits());
    // And what this registry writes, it reads back the same.
    let again = registry.encode(level).unwrap();
    let back = registry.decode(&again).unwrap();
    assert_eq!(back.downcast_ref::<LevelUp>(), Some(level));
}

#[test]
fn bad_envelopes_are_refused() {
    let registry = WireRegistry::diana();
    let data = data_of("UserMessage");
    let cases = [
        (json!([data]), "expected an object"),
        (json!({"data": data}), "missing key `event`"),
        (json!({"event": "UserMessage"}), "missing key `data`"),
        (
            json!({"event": 7, "data": data}),
            "`event` must be a string",
        ),
        (
            json!({"event": "UserMessage", "data": data, "tenant": 1}),
            "unknown key `tenant`",
        ),
    ];
    for (sent, why) in cases {
        match registry.decode_value(&sent) {
            Err(DomainError::BadEnvelope { reason }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{sent}: {other:?}"),
        }
    }
}

#[test]
fn constructors_refuse_what_decoding_refuses_with_the_same_error() {
    let decoded = |name: &str, field: &str, value: Value| {
        rejection(name, &with(&data_of(name), field, value))
    };
    assert_eq!(
        UserMessage::new(0, "hi", "t").unwrap_err(),
        decoded("UserMessage", "user_id", json!(0))
    );
    assert_eq!(
        CommandExecuted::new(1001, "", vec![], "t").unwrap_err(),
        decoded("CommandExecuted", "command", json!(""))
    );
    assert_eq!(
        ReactionAdded::new(1001, 77, -1).unwrap_err(),
        decoded("ReactionAdded", "points_to_award", json!(-1))
    );
    assert_eq!(
        MissionCompleted::new(1001, "m", "t", -1).unwrap_err(),
        decoded("MissionCompleted", "reward_points", json!(-1))
    );
    assert_eq!(
        LevelUp::new(1001, 0, JsonObject::new()).unwrap_err(),
        decoded("LevelUp", "new_level", json!(0))
    );
    assert_eq!(
        DianaActionExecuted::new(1001, "", JsonObject::new()).unwrap_err(),
        decoded("DianaActionExecuted", "action", json!(""))
    );
    assert_eq!(
        ServiceResponse::new(9, 1001, "", JsonObject::new()).unwrap_err(),
        decoded("ServiceResponse", "service", json!(""))
    );
    assert_eq!(UserId::new(0), None);
    assert_eq!(UserId::new(-1), None);
}

#[test]
fn plain_serde_refuses_bad_data_too() {
    let zero = with(&data_of("UserMessage"), "user_id", json!(0));
    let err = serde_json::from_value::<UserMessage>(zero).unwrap_err();
    assert!(err.to_string().contains("UserMessage.user_id = 0"), "{err}");
    let extra = with(&data_of("LevelUp"), "bonus", json!(1));
    let err = serde_json::from_value::<LevelUp>(extra).unwrap_err();
    assert!(err.to_string().contains("bonus"), "{err}");
    let empty = with(&data_of("DianaInteraction"), "interface_type", json!(""));
    assert!(serde_json::from_value::<DianaInteraction>(empty).is_err());
}

// ---- envelopes, downcasts, publishing ----

#[test]
fn an_envelope_decodes_by_name_into_its_type() {
    let registry = WireRegistry::diana();
    let event = registry
        .decode(&envelope("CommandExecuted", &data_of("CommandExecuted")).to_string())
        .unwrap();
    assert!(event.is::<CommandExecuted>());
    assert!(event.downcast_ref::<UserMessage>().is_none());
    let command = event.downcast_ref::<CommandExecuted>().unwrap();
    assert_eq!(
        (command.user_id().get(), command.command()),
        (1001, "start")
    );
    let event = event.downcast::<UserMessage>().unwrap_err(); // comes back whole
    let command = event.downcast::<CommandExecuted>().unwrap();
    assert_eq!(command.timestamp(), "2025-08-05T10:00:01.250000");
}

#[test]
fn decoded_events_reach_the_handlers_of_their_type() {
    common::within(20, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let levels = Arc::new(Mutex::new(Vec::new()));
        let log = messages.clone();
        bus.subscribe(move |m: &UserMessage, ctx: &Context| -> HandlerResult {
            log.lock()
                .unwrap()
                .push((m.clone(), ctx.tenant(), ctx.key()));
            Ok(())
        });
        let log = levels.clone();
        bus.subscribe(move |l: &LevelUp, _: &Context| -> HandlerResult {
            log.lock().unwrap().push(l.clone());
            Ok(())
        });

        let registry = WireRegistry::diana();
        for (name, data) in python_events() {
            let event = registry.decode_value(&envelope(name, &data)).unwrap();
            event
                .publish(&bus, Meta::new().tenant(TenantId(3)))
                .unwrap();
        }
        bus.flush();

        let expected = UserMessage::from_data(&data_of("UserMessage")).unwrap();
        assert_eq!(*messages.lock().unwrap(), [(expected, TenantId(3), 1001)]);
        assert_eq!(
            *levels.lock().unwrap(),
            [LevelUp::from_data(&data_of("LevelUp")).unwrap()]
        );
        bus.shutdown();
    });
}

#[test]
fn one_users_decoded_events_are_handled_in_order() {
    common::within(20, || {
        let bus = Bus::builder().workers(2).shards(8).build().unwrap();
        let seen: Arc<Mutex<BTreeMap<i64, Vec<usize>>>> = Arc::default();
        let log = seen.clone();
        bus.subscribe(move |m: &UserMessage, ctx: &Context| -> HandlerResult {
            assert_eq!(ctx.key(), m.user_id().key());
            let n = m.message().parse().unwrap();
            log.lock()
                .unwrap()
                .entry(m.user_id().get())
                .or_default()
                .push(n);
            Ok(())
        });
        let registry = WireRegistry::diana();
        let users = [1, 2, 3, 1_000_000_007];
        for n in 0..200 {
            let user = users[n % users.len()];
            let data = json!({"user_id": user, "message": n.to_string(), "timestamp": "t"});
            let event = registry
                .decode_value(&envelope("UserMessage", &data))
                .unwrap();
            assert_eq!(event.key(), Some(user as u64));
            event.publish(&bus, Meta::new()).unwrap();
        }
        bus.flush();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), users.len());
        for (user, ns) in seen.iter() {
            let i = users.iter().position(|u| u == user).unwrap();
            let expected: Vec<usize> = (0..200).filter(|n| n % users.len() == i).collect();
            assert_eq!(ns, &expected, "user {user}");
        }
        bus.shutdown();
    });
}

#[test]
fn a_refused_decoded_event_comes_back() {
    let bus = Bus::builder().workers(1).build().unwrap();
    bus.shutdown();
    let event = decode("PieceUnlocked", &data_of("PieceUnlocked")).unwrap();
    let err = event.publish(&bus, Meta::new()).unwrap_err();
    assert!(err.is_closed());
    let piece = err.into_inner().downcast::<PieceUnlocked>().unwrap();
    assert_eq!(piece.piece_id(), "lore_7");
}

// ---- encoding and user-registered events ----

/// A user's own event, with a rule of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TipSent {
    user_id: UserId,
    amount: i64,
}

impl Event for TipSent {
    fn key(&self) -> Option<u64> {
        Some(self.user_id.key())
    }
}

impl WireEvent for TipSent {
    const NAME: &'static str = "TipSent";

    fn from_data(data: &Value) -> Result<Self, DomainError> {
        let tip: TipSent = decode_fields(Self::NAME, data)?;
        if tip.amount < 1 {
            return Err(DomainError::Invalid {
                event: Self::NAME,
                field: "amount",
                rule: Rule::Positive,
                value: tip.amount.to_string(),
            });
        }
        Ok(tip)
    }
}

/// A type that wants a name the Diana events already have.
#[derive(Debug, Serialize, Deserialize)]
struct Impostor {}

impl Event for Impostor {}

impl WireEvent for Impostor {
    const NAME: &'static str = "UserMessage";
}

/// A user's event that reads its data without [`decode_fields`].
#[derive(Debug, Serialize, Deserialize)]
struct Ping {
    user_id: UserId,
}

impl Event for Ping {}

impl WireEvent for Ping {
    const NAME: &'static str = "Ping";

    fn from_data(data: &Value) -> Result<Self, DomainError> {
        serde_json::from_value(data.clone()).map_err(|err| DomainError::Rejected {
            event: Self::NAME,
            field: String::new(),
            reason: err.to_string(),
        })
    }
}

#[test]
fn the_registry_refuses_non_object_data_whatever_the_event_reads() {
    let mut registry = WireRegistry::new();
    registry.register::<Ping>().unwrap();
    assert!(registry
        .decode(r#"{"event": "Ping", "data": {"user_id": 1}}"#)
        .is_ok());
    assert_eq!(
        registry
            .decode(r#"{"event": "Ping", "data": [1]}"#)
            .unwrap_err(),
        DomainError::NotAnObject {
            event: "Ping",
            found: "an array"
        }
    );
}

#[test]
fn users_register_their_own_events() {
    let mut registry = WireRegistry::diana();
    let tip = TipSent {
        user_id: UserId::new(8).unwrap(),
        amount: 3,
    };
    assert_eq!(
        registry.encode(&tip),
        Err(DomainError::Unregistered { name: "TipSent" })
    );
    registry.register::<TipSent>().unwrap();
    registry.register::<TipSent>().unwrap(); // again: no change
    assert_eq!(
        registry.register::<Impostor>(),
        Err(DomainError::NameTaken {
            name: "UserMessage"
        })
    );
    assert!(registry.contains("TipSent"));

    let sent = registry.encode(&tip).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&sent).unwrap(),
        json!({"event": "TipSent", "data": {"user_id": 8, "amount": 3}})
    );
    let back = registry.decode(&sent).unwrap();
    assert_eq!(back.key(), Some(8));
    assert_eq!(back.downcast::<TipSent>().unwrap(), tip);

    let err = registry
        .decode(r#"{"event": "TipSent", "data": {"user_id": 8, "amount": 0}}"#)
        .unwrap_err();
    assert_eq!(
        (err.event(), err.field()),
        (Some("TipSent"), Some("amount"))
    );
    let err = registry
        .decode(r#"{"event": "TipSent", "data": {"user_id": 0, "amount": 1}}"#)
        .unwrap_err();
    assert!(
        matches!(err, DomainError::WrongType { ref field, .. } if field == "user_id"),
        "{err:?}"
    );
}

/// A user's event with maps keyed by numbers, booleans and ids: serde_json
/// writes such keys as strings (`"12"`).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scores {
    user_id: UserId,
    by_message: BTreeMap<u64, i64>,
    by_offset: BTreeMap<i32, f64>,
    by_flag: BTreeMap<bool, u8>,
    by_user: BTreeMap<UserId, Option<i64>>,
}

impl Event for Scores {}

impl WireEvent for Scores {
    const NAME: &'static str = "Scores";
}

#[test]
fn maps_with_number_keys_decode_as_they_were_encoded() {
    let mut registry = WireRegistry::diana();
    registry.register::<Scores>().unwrap();
    let sent = Scores {
        user_id: UserId::new(7).unwrap(),
        by_message: BTreeMap::from([(12, 5), (u64::MAX, -1)]),
        by_offset: BTreeMap::from([(-3, 0.5)]),
        by_flag: BTreeMap::from([(true, 1), (false, 0)]),
        by_user: BTreeMap::from([
            (UserId::new(9).unwrap(), Some(2)),
            (UserId::new(10).unwrap(), None),
        ]),
    };
    let text = registry.encode(&sent).unwrap();
    assert!(text.contains(r#""12":5"#), "{text}");
    let back = registry
        .decode(&text)
        .unwrap_or_else(|err| panic!("{text}: {err}"));
    assert_eq!(back.downcast::<Scores>().unwrap(), sent);

    let bad = r#"{"event": "Scores", "data": {"user_id": 7, "by_message": {"twelve": 5},
        "by_offset": {}, "by_flag": {}, "by_user": {"0": 1}}}"#;
    let err = registry.decode(bad).unwrap_err();
    assert!(
        matches!(err, DomainError::WrongType { ref field, ref found, .. }
            if field == "by_message" && found.contains("twelve")),
        "{err:?}"
    );
}

#[test]
fn a_number_key_spelled_otherwise_than_serde_json_writes_it_is_refused() {
    // "05" and "5" would name one number: one of the two values would be
    // lost without a word.
    let mut registry = WireRegistry::diana();
    registry.register::<Scores>().unwrap();
    for (map, keys) in [
        ("by_message", r#"{"5": 1, "05": 2}"#),
        ("by_message", r#"{"+5": 1}"#),
        ("by_message", r#"{"007": 1}"#),
        ("by_offset", r#"{"-0": 1.5}"#),
        ("by_flag", r#"{"True": 1}"#),
    ] {
        let data = format!(
            r#"{{"user_id": 7, "by_message": {{}}, "by_offset": {{}}, "by_flag": {{}}, "by_user": {{}}, "{map}": {keys}}}"#
        );
        let data: Value = serde_json::from_str(&data).unwrap();
        let err = registry
            .decode_value(&json!({"event": "Scores", "data": data}))
            .unwrap_err();
        assert!(
            matches!(err, DomainError::WrongType { ref field, .. } if field == map),
            "{keys}: {err:?}"
        );
    }
}

/// `levels` arrays, one inside the other, around a number.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| Value::Array(vec![inner]))
}

#[test]
fn what_a_registry_encodes_it_decodes_and_deeper_data_is_refused_both_ways() {
    let registry = WireRegistry::diana();
    // data (level 1) > rewards (2) > `levels` arrays: the deepest array is
    // at level 2 + levels.
    let deepest_allowed = MAX_DATA_DEPTH - 2;
    for levels in [
        deepest_allowed - 1,
        deepest_allowed,
        deepest_allowed + 1,
        200,
    ] {
        let mut rewards = JsonObject::new();
        rewards.insert("a".into(), nested(levels));
        let level = LevelUp::new(1, 2, rewards).unwrap();
        match registry.encode(&level) {
            Ok(text) => {
                assert!(levels <= deepest_allowed, "{levels} levels encoded");
                let back = registry
                    .decode(&text)
                    .unwrap_or_else(|err| panic!("{levels} levels: {err}"));
                assert_eq!(back.downcast::<LevelUp>().unwrap(), level);
            }
            Err(err) => {
                assert!(levels > deepest_allowed, "{levels} levels: {err}");
                assert!(
                    matches!(
                        err,
                        DomainError::Rejected {
                            event: "LevelUp",
                            ..
                        }
                    ),
                    "{err:?}"
                );
            }
        }
        let envelope = json!({"event": "LevelUp",
            "data": {"user_id": 1, "new_level": 2, "rewards": {"a": nested(levels)}}});
        assert_eq!(
            registry.decode_value(&envelope).is_ok(),
            levels <= deepest_allowed,
            "{levels} levels"
        );
    }
}

#[test]
fn a_value_nested_far_deeper_is_refused_without_running_out_of_stack() {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(|| {
            // Put together by hand: `json!` would copy the deep value
            // recursively.
            let mut envelope =
                json!({"event": "LevelUp", "data": {"user_id": 1, "new_level": 2, "rewards": {}}});
            envelope["data"]["rewards"]
                .as_object_mut()
                .unwrap()
                .insert("a".into(), nested(100_000));
            let err = WireRegistry::diana().decode_value(&envelope).unwrap_err();
            assert!(matches!(err, DomainError::Rejected { .. }), "{err:?}");
            // serde_json drops a `Value` recursively, one stack frame per
            // level: a value this deep cannot be dropped on this stack.
            std::mem::forget(envelope);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn a_registry_encodes_only_what_it_can_decode() {
    let message = UserMessage::new(1, "hi", "t").unwrap();
    assert_eq!(
        WireRegistry::new().encode(&message),
        Err(DomainError::Unregistered {
            name: "UserMessage"
        })
    );
    let sent = WireRegistry::diana().encode(&message).unwrap();
    let back = WireRegistry::diana().decode(&sent).unwrap();
    assert_eq!(back.downcast::<UserMessage>().unwrap(), message);
}

// ---- properties ----

fn name() -> impl Strategy<Value = String> {
    "[a-z_]{1,10}"
}

fn text() -> impl Strategy<Value = String> {
    any::<String>()
}

fn user_id() -> impl Strategy<Value = i64> {
    1..=i64::MAX
}

fn object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(name(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(name(), value, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// An arbitrary valid event: (name, data).
fn valid_event() -> impl Strategy<Value = (&'static str, Value)> {
    let services = prop::collection::btree_set(name(), 0..6);
    prop_oneof![
        (user_id(), text(), text()).prop_map(|(u, m, t)| (
            "UserMessage",
            json!({"user_id": u, "message": m, "timestamp": t})
        )),
        (
            user_id(),
            name(),
            prop::collection::vec(text(), 0..3),
            text()
        )
            .prop_map(|(u, c, a, t)| (
                "CommandExecuted",
                json!({"user_id": u, "command": c, "args": a, "timestamp": t})
            )),
        (user_id(), prop::option::of(text()))
            .prop_map(|(u, n)| ("UserStartedBot", json!({"user_id": u, "username": n}))),
        (user_id(), any::<i64>(), 0..=i64::MAX).prop_map(|(u, m, p)| (
            "ReactionAdded",
            json!({"user_id": u, "message_id": m, "points_to_award": p})
        )),
        (user_id(), any::<i64>(), text()).prop_map(|(u, p, s)| (
            "PointsAwarded",
            json!({"user_id": u, "points": p, "source_event": s})
        )),
        (
            user_id(),
            text(),
            prop::collection::btree_map(text(), prop::collection::vec(any::<i64>(), 0..4), 0..4)
        )
            .prop_map(|(u, f, c)| (
                "NarrativeProgression",
                json!({"user_id": u, "fragment_id": f, "choices_made": c})
            )),
        (user_id(), text(), text()).prop_map(|(u, p, m)| (
            "PieceUnlocked",
            json!({"user_id": u, "piece_id": p, "unlock_method": m})
        )),
        (user_id(), text(), text(), 0..=i64::MAX).prop_map(|(u, m, t, r)| (
            "MissionCompleted",
            json!({"user_id": u, "mission_id": m, "completion_time": t, "reward_points": r})
        )),
        (user_id(), 1..=i64::MAX, object()).prop_map(|(u, l, r)| (
            "LevelUp",
            json!({"user_id": u, "new_level": l, "rewards": r})
        )),
        (user_id(), name(), object()).prop_map(|(u, i, c)| (
            "DianaInterfaceRequested",
            json!({"user_id": u, "interface_type": i, "context": c})
        )),
        (user_id(), name(), object()).prop_map(|(u, a, r)| (
            "DianaActionExecuted",
            json!({"user_id": u, "action": a, "result": r})
        )),
        (user_id(), user_id(), name(), object()).prop_map(|(n, u, i, c)| (
            "DianaInteraction",
            json!({"interaction_id": n, "user_id": u, "interface_type": i, "context": c})
        )),
        (user_id(), user_id(), name(), object()).prop_map(|(n, u, s, d)| (
            "ServiceResponse",
            json!({"interaction_id": n, "user_id": u, "service": s, "data": d})
        )),
        (user_id(), user_id(), name(), services, object()).prop_map(|(n, u, i, services, data)| {
            // each service lands in exactly one of the three outcomes
            let (mut responses, mut failed, mut timed_out) = (json!({}), vec![], vec![]);
            for (k, service) in services.into_iter().enumerate() {
                match k % 3 {
                    0 => responses[service.as_str()] = data.clone(),
                    1 => failed.push(service),
                    _ => timed_out.push(service),
                }
            }
            (
                "DianaInteractionCompleted",
                json!({"interaction_id": n, "user_id": u, "interface_type": i,
                       "responses": responses, "failed": failed, "timed_out": timed_out}),
            )
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn valid_events_round_trip_exactly((name, data) in valid_event()) {
        let registry = WireRegistry::diana();
        let sent = envelope(name, &data);
        let event = registry.decode(&sent.to_string()).unwrap();
        prop_assert_eq!(event.name(), name);
        prop_assert_eq!(event.key(), data["user_id"].as_u64());
        prop_assert_eq!(event.to_envelope().unwrap(), sent);
    }

    #[test]
    fn user_ids_below_one_are_always_refused((name, data) in valid_event(), bad in i64::MIN..=0) {
        let err = rejection(name, &with(&data, "user_id", json!(bad)));
        prop_assert_eq!(err.field(), Some("user_id"));
        let is_positive_rule = matches!(err, DomainError::Invalid { rule: Rule::Positive, .. });
        prop_assert!(is_positive_rule);
    }
}

#[test]
fn a_completions_clone_shares_its_responses() {
    let responses = serde_json::from_value(json!({"narrative": {"scene": 3}})).unwrap();
    let done = DianaInteractionCompleted::new(9, 7, "profile", responses, vec![], vec![]).unwrap();
    let copy = done.clone();
    assert_eq!(copy, done);
    assert!(std::ptr::eq(copy.responses(), done.responses()));
    assert_eq!(
        serde_json::to_value(&copy).unwrap(),
        serde_json::to_value(&done).unwrap()
    );
}
