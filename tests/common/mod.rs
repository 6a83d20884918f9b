//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `f` on its own thread and fails the test if it does not finish in
/// `secs` seconds, so a deadlock fails instead of hanging CI.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(value) => {
            worker.join().unwrap();
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the closure returned without sending"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("timed out after {secs}s: deadlock?"),
    }
}

/// Polls `condition` until it holds; fails after `secs` seconds.
pub fn wait_until(secs: u64, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "condition not reached in {secs}s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A gate that handlers wait at until the test opens it.
#[derive(Clone, Default)]
pub struct Gate(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn wait(&self) {
        let (open, cond) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cond.wait(open).unwrap();
        }
    }

    pub fn open(&self) {
        let (open, cond) = &*self.0;
        *open.lock().unwrap() = true;
        cond.notify_all();
    }
}

/// Opens the gate when dropped, so a failing assertion does not leave a
/// handler parked (and the bus's drop waiting for it).
pub struct OpenOnDrop(pub Gate);
impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// A panic payload that panics again when dropped, as `panic_any(Volatile)`
/// throws it: what catches it must survive dropping it.
pub struct Volatile;
impl Drop for Volatile {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a panic's payload broke on drop");
        }
    }
}
