//! An async handler slower than its publisher: the bus holds the publisher
//! back once more runs wait than the subscription's backlog, so the events
//! accepted and not yet handled stay bounded.
//!
//! ```bash
//! cargo run --release --example slow_async_handler          # default backlog
//! cargo run --release --example slow_async_handler -- 64    # backlog(64)
//! ```
//!
//! One 256-slot shard; the handler takes 1 ms a run, four at a time; one
//! thread publishes for two seconds with `Backpressure::Block`. It prints
//! how many events were accepted and handled, and the most that were
//! accepted and not yet handled at once.

#[cfg(diana_bus_loom)]
fn main() {}

#[cfg(not(diana_bus_loom))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use diana_bus::{AsyncContext, Bus, Event};

    #[derive(Clone)]
    struct Reaction(u64);
    impl Event for Reaction {
        fn key(&self) -> Option<u64> {
            Some(self.0)
        }
    }

    let backlog = std::env::args().nth(1).map(|arg| arg.parse()).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()?;
    let bus = Bus::builder()
        .workers(1)
        .shards(1)
        .capacity(256)
        .runtime(runtime.handle().clone())
        .build()?;
    let handled = Arc::new(AtomicU64::new(0));
    let counted = handled.clone();
    let mut subscriber = bus.subscriber::<Reaction>().concurrency(4);
    if let Some(backlog) = backlog {
        subscriber = subscriber.backlog(backlog);
    }
    subscriber.subscribe_async(move |_: Arc<Reaction>, _: AsyncContext| {
        let counted = counted.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await; // a database call
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    })?;
    let started = Instant::now();
    let (mut accepted, mut most_open) = (0u64, 0u64);
    while started.elapsed() < Duration::from_secs(2) {
        bus.publish(Reaction(accepted))?;
        accepted += 1;
        most_open = most_open.max(accepted - handled.load(Ordering::Relaxed));
    }
    println!(
        "backlog {}: {accepted} accepted in 2 s, {} handled, at most {most_open} open at once",
        backlog.map_or("default (shards x capacity: 256)".to_owned(), |b: usize| b
            .to_string()),
        handled.load(Ordering::Relaxed),
    );
    bus.shutdown();
    Ok(())
}
