//! `diana-bus idle`: what each implementation costs while no events come.
//!
//! Each implementation is set up with one handler (one consumer thread for
//! a peer), takes one event, and, once the event is handled, the process's
//! CPU time is read over a window in which nothing is published:
//! diana-bus with its workers parked; a crossbeam-channel consumer blocked
//! in `recv`; the disruptor crate's consumer waiting with a yielding
//! strategy and with busy-spin. Setting up and tearing down are outside
//! the window. The window starts right after the event, so diana-bus's
//! first second of idleness, before its workers grow drowsy (they then
//! look for work ten times less often), is in it.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use diana_bus::{Bus, Context, HandlerResult};
use disruptor::{build_single_producer, BusySpin, Producer};

use crate::load::meter::Reading;
use crate::load::{Message, Yield};
use crate::report;

/// Slots of each peer's queue, as in `run`'s default.
const CAPACITY: usize = 1024;

/// One implementation's cost while idle.
#[derive(Clone, Debug, PartialEq)]
pub struct Idle {
    pub implementation: &'static str,
    /// The threads it keeps waiting for events.
    pub threads: usize,
    /// Its CPU time over the window, as a share of one core.
    pub share: f64,
}

/// Measures every implementation, one after the other, each over `window`;
/// diana-bus with `workers` workers.
pub fn measure(window: Duration, workers: usize) -> Result<Vec<Idle>, String> {
    Ok(vec![
        diana_bus(window, workers)?,
        crossbeam(window),
        disruptor("disruptor-yield", Yield, window),
        disruptor("disruptor-spin", BusySpin, window),
    ])
}

/// The table `idle` prints.
pub fn render(window: Duration, rows: &[Idle]) -> String {
    let mut lines = vec![vec![
        "implementation".to_owned(),
        "idle threads".to_owned(),
        format!("CPU over {:.1} s, share of a core", window.as_secs_f64()),
    ]];
    lines.extend(rows.iter().map(|row| {
        vec![
            row.implementation.to_owned(),
            row.threads.to_string(),
            format!("{:.3}%", row.share * 100.0),
        ]
    }));
    report::aligned(&lines)
}

/// The share of one core the process uses over `window`, from now.
fn share_over(window: Duration) -> f64 {
    let start = Reading::now();
    thread::sleep(window);
    let used = start.window();
    used.cpu.as_secs_f64() / used.elapsed.as_secs_f64()
}

/// Waits until `handled` is set by a consumer thread.
fn wait_for(handled: &AtomicBool) {
    while !handled.load(Ordering::Acquire) {
        thread::sleep(Duration::from_millis(1));
    }
}

fn diana_bus(window: Duration, workers: usize) -> Result<Idle, String> {
    let bus = Bus::builder()
        .workers(workers)
        .build()
        .map_err(|error| error.to_string())?;
    bus.subscribe(|message: &Message, _: &Context| -> HandlerResult {
        black_box(message);
        Ok(())
    });
    bus.publish(Message::new(1, 0))
        .map_err(|error| error.to_string())?;
    bus.flush();
    let share = share_over(window);
    bus.shutdown();
    Ok(Idle {
        implementation: "diana-bus",
        threads: workers,
        share,
    })
}

fn crossbeam(window: Duration) -> Idle {
    let (sender, receiver) = crossbeam_channel::bounded::<Message>(CAPACITY);
    let handled = Arc::new(AtomicBool::new(false));
    let consumer = {
        let handled = Arc::clone(&handled);
        thread::spawn(move || {
            for message in receiver {
                black_box(message);
                handled.store(true, Ordering::Release);
            }
        })
    };
    sender
        .send(Message::new(1, 0))
        .expect("the consumer is receiving");
    wait_for(&handled);
    let share = share_over(window);
    drop(sender);
    consumer.join().expect("the consumer does not panic");
    Idle {
        implementation: "crossbeam-channel",
        threads: 1,
        share,
    }
}

fn disruptor<W>(implementation: &'static str, waiting: W, window: Duration) -> Idle
where
    W: disruptor::wait_strategies::WaitStrategy + 'static,
{
    let handled = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&handled);
    let mut producer = build_single_producer(CAPACITY, Message::default, waiting)
        .handle_events_with(move |message: &Message, _, _| {
            black_box(message);
            seen.store(true, Ordering::Release);
        })
        .build();
    producer.publish(|slot| *slot = Message::new(1, 0));
    wait_for(&handled);
    let share = share_over(window);
    drop(producer); // stops and joins the consumer
    Idle {
        implementation,
        threads: 1,
        share,
    }
}
