//! What the bus tells a `tracing` subscriber: a span per worker, a span per
//! event at TRACE level, and a log line per failed or panicked handler run.
//! One test per file: it installs its recorder as the global default, which
//! the bus's worker threads see.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use diana_bus::{Bus, Context, Event, HandlerError, HandlerResult, RetryPolicy};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Metadata};

/// A span or a log line, as recorded: its level, its name (a span's) or
/// message (a log line's), and its other fields as `name=value`.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    span: bool,
    text: String,
    fields: Vec<String>,
}

impl Seen {
    fn has(&self, field: &str) -> bool {
        self.fields.iter().any(|f| f == field)
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.others.push(format!("{}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.others.push(format!("{}={value}", field.name()));
    }
}

#[derive(Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    next_id: AtomicU64,
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields::default();
        span.record(&mut fields);
        self.seen.lock().unwrap().push(Seen {
            level: *span.metadata().level(),
            span: true,
            text: span.metadata().name().to_owned(),
            fields: fields.others,
        });
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.seen.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            span: false,
            text: fields.message,
            fields: fields.others,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

struct Order(u64);
impl Event for Order {}

#[test]
fn workers_events_and_failures_reach_a_tracing_subscriber() {
    let recorder = Recorder::default();
    let seen = Arc::clone(&recorder.seen);
    tracing::subscriber::set_global_default(recorder).unwrap();

    let bus = Bus::builder().workers(1).build().unwrap();
    bus.subscriber::<Order>()
        .name("billing")
        .retry(RetryPolicy::none())
        .subscribe(|order: &Order, _: &Context| -> HandlerResult {
            match order.0 {
                1 => Err(HandlerError::permanent("card declined")),
                2 => panic!("billing broke"),
                _ => Ok(()),
            }
        });
    for n in 0..4 {
        bus.publish(Order(n)).unwrap();
    }
    bus.flush();
    bus.shutdown();

    let seen = seen.lock().unwrap().clone();
    let worker_spans = seen
        .iter()
        .filter(|s| s.span && s.text == "diana_bus_worker")
        .count();
    assert_eq!(worker_spans, 1, "{seen:#?}");
    // One TRACE span per event, named after it.
    let event_spans: Vec<_> = seen
        .iter()
        .filter(|s| s.span && s.text == "event")
        .collect();
    assert_eq!(event_spans.len(), 4, "{seen:#?}");
    assert!(event_spans
        .iter()
        .all(|s| s.level == Level::TRACE && s.has("name=Order")));
    // The failure and the panic, each logged once with its handler.
    let logged = |level: Level, text: &str| {
        seen.iter()
            .filter(|s| !s.span && s.level == level && s.text == text && s.has("handler=billing"))
            .count()
    };
    assert_eq!(logged(Level::WARN, "handler failed"), 1, "{seen:#?}");
    assert_eq!(logged(Level::ERROR, "handler panicked"), 1, "{seen:#?}");
}
