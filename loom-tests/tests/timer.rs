//! No lost deadline: the timer thread wakes every task whose deadline has
//! come, whether its wake-up was queued before the thread looked at the
//! queue or while the thread was waiting. Loom reports a deadlock (the
//! main thread waiting forever for a wake) if a wake-up can be lost.
//!
//! loom's `Condvar::wait_timeout` never times out, so the model queues only
//! deadlines already due: it checks the look under the lock before a wait
//! and the notify of a new wake-up, not the rule that a wake-up earlier
//! than the one the thread sleeps towards notifies it. The timer's unit
//! test checks that one (it fails when the rule is broken).
#![cfg(diana_bus_loom)]

use std::task::{Wake, Waker};
use std::time::Instant;

use diana_bus::model::Timer;
use loom::sync::{Arc, Notify};
use loom::thread;

/// A task's waker: signals the test.
struct Signal(Notify);

impl Wake for Signal {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.notify();
    }
}

fn signal() -> std::sync::Arc<Signal> {
    std::sync::Arc::new(Signal(Notify::new()))
}

#[test]
fn a_deadline_queued_while_the_timer_runs_still_wakes_its_task() {
    loom::model(|| {
        let timer = Arc::new(Timer::default());
        let (first, second) = (signal(), signal());
        // starts the thread
        timer.wake_at(Instant::now(), Waker::from(first.clone()));
        let other = {
            let (timer, second) = (timer.clone(), second.clone());
            thread::spawn(move || {
                timer.wake_at(Instant::now(), Waker::from(second));
            })
        };
        first.0.wait();
        second.0.wait();
        other.join().unwrap();
    });
}
