//! Handling latency in the metrics, and the Prometheus text, through the
//! public API.

use std::time::Duration;

use diana_bus::{Bus, Context, Event, HandlerResult};

struct Slow;
impl Event for Slow {}

struct Quick;
impl Event for Quick {}

#[test]
fn sync_handlers_are_timed_on_one_event_in_128_whatever_the_publish_pattern() {
    let bus = Bus::builder().workers(1).shards(1).build().unwrap();
    bus.subscribe(|_: &Slow, _: &Context| -> HandlerResult {
        std::thread::sleep(Duration::from_micros(200));
        Ok(())
    });
    bus.subscribe(|_: &Quick, _: &Context| -> HandlerResult { Ok(()) });
    // The two types take turns: each has every other position.
    for _ in 0..1024 {
        bus.publish(Slow).unwrap();
        bus.publish(Quick).unwrap();
    }
    bus.flush();
    let metrics = bus.metrics();
    let (slow, quick) = (
        &metrics.event("Slow").unwrap().latency,
        &metrics.event("Quick").unwrap().latency,
    );
    // 2,048 events: about 16 timed, both types among them.
    assert!((8..=24).contains(&(slow.count() + quick.count())));
    assert!(
        slow.count() > 0 && quick.count() > 0,
        "{} and {}",
        slow.count(),
        quick.count()
    );
    assert!(slow.quantile(0.0).unwrap() >= Duration::from_micros(200));
    assert!(slow.sum() >= Duration::from_micros(200) * slow.count() as u32);
    assert_eq!(
        metrics.latency.count(),
        slow.count() + quick.count(),
        "the bus's histogram holds every type's"
    );
}

#[cfg(not(diana_bus_loom))]
#[test]
fn every_async_run_is_timed_retries_included() {
    use std::sync::Arc;

    #[derive(Clone)]
    struct Call;
    impl Event for Call {}

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let bus = Bus::builder()
        .workers(1)
        .runtime(runtime.handle().clone())
        .build()
        .unwrap();
    bus.subscriber::<Call>()
        .retry(diana_bus::RetryPolicy::fixed(2, Duration::from_millis(1)))
        .subscribe_async(|_: Arc<Call>, ctx: diana_bus::AsyncContext| async move {
            tokio::time::sleep(Duration::from_millis(3)).await;
            match ctx.attempt() {
                1 => Err(diana_bus::HandlerError::transient("once")),
                _ => Ok(()),
            }
        })
        .unwrap();
    for _ in 0..5 {
        bus.publish(Call).unwrap();
    }
    bus.flush();
    let metrics = bus.metrics();
    let latency = &metrics.event("Call").unwrap().latency;
    assert_eq!(latency.count(), 10, "two runs an event");
    assert!(latency.quantile(0.0).unwrap() >= Duration::from_millis(3));
}

#[test]
fn the_prometheus_text_shows_the_bus_s_counters_and_histograms() {
    let bus = Bus::builder().workers(1).shards(1).build().unwrap();
    bus.subscribe(|_: &Slow, _: &Context| -> HandlerResult { Ok(()) });
    for _ in 0..3 {
        bus.publish(Slow).unwrap();
    }
    bus.flush();
    let text = bus.metrics().prometheus();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"diana_bus_published_total 3"), "{text}");
    assert!(lines.contains(&"diana_bus_event_delivered_total{event=\"Slow\"} 3"));
    assert!(lines.contains(&"diana_bus_handling_seconds_count{event=\"Slow\"} 1"));
}
