//! Promises of the public types: Send, Sync, Clone, Debug.

use diana_bus::*;

fn send_sync<T: Send + Sync>() {}

struct Opaque;
impl Event for Opaque {}

#[test]
fn public_handles_are_send_and_sync() {
    send_sync::<Bus>();
    send_sync::<Subscription>();
    send_sync::<EventId>();
    send_sync::<TenantId>();
    send_sync::<Meta>();
    send_sync::<PublishError<Opaque>>();
    send_sync::<ConfigError>();
    send_sync::<HandlerError>();
    send_sync::<MetricsSnapshot>();
    send_sync::<ShutdownReport>();
}

#[test]
fn public_types_debug_without_needing_the_event_to() {
    let bus = Bus::builder().workers(1).build().unwrap();
    let sub = bus.subscribe(|_: &Opaque, _: &Context| -> HandlerResult { Ok(()) });
    assert!(format!("{bus:?}").starts_with("Bus"));
    assert!(format!("{sub:?}").contains("Opaque#"));
    assert_eq!(format!("{:?}", PublishError::Full(Opaque)), "Full(..)");
    assert!(format!("{:?}", bus.subscriber::<Opaque>().name("n")).contains("\"n\""));
    assert!(format!("{:?}", bus.metrics()).contains("published"));
    assert_eq!(EventId(255).to_string().len(), 32);
    assert_eq!(TenantId(7).to_string(), "7");
}

#[test]
fn an_empty_subscription_name_gets_the_generated_one() {
    let bus = Bus::builder().workers(1).build().unwrap();
    let named = bus
        .subscriber::<Opaque>()
        .name("")
        .subscribe(|_: &Opaque, _: &Context| -> HandlerResult { Ok(()) });
    assert!(
        format!("{named:?}").contains("name: \"Opaque#"),
        "{named:?}"
    );
}
