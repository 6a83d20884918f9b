//! No lost wake-up at the backlog gate: a publisher waiting for the gate
//! to be lowered is woken when the last subscription holding it raised
//! lowers it, or when the bus closes. Loom reports a deadlock (the
//! publisher waiting forever, the main thread joining it) if a wake-up can
//! be lost.
#![cfg(diana_bus_loom)]

use diana_bus::model::{BacklogGate, Closed};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Lowers the gate as a subscription does: the count, then the wake-up.
fn lower(gate: &BacklogGate) {
    gate.lower();
    gate.notify();
}

#[test]
fn a_publisher_waiting_at_the_gate_passes_once_both_raisers_lowered_it() {
    loom::model(|| {
        let gate = Arc::new(BacklogGate::default());
        gate.raise();
        gate.raise();
        let lowering: Vec<_> = (0..2)
            .map(|_| {
                let gate = gate.clone();
                thread::spawn(move || lower(&gate))
            })
            .collect();
        assert_eq!(gate.wait(|| false), Ok(()));
        lowering.into_iter().for_each(|t| t.join().unwrap());
    });
}

#[test]
fn a_publisher_waiting_at_the_gate_gets_closed_when_the_bus_closes() {
    loom::model(|| {
        let gate = Arc::new(BacklogGate::default());
        let closed = Arc::new(AtomicBool::new(false));
        gate.raise();
        let closer = {
            let (gate, closed) = (gate.clone(), closed.clone());
            thread::spawn(move || {
                closed.store(true, Ordering::Relaxed);
                gate.notify();
            })
        };
        assert_eq!(gate.wait(|| closed.load(Ordering::Relaxed)), Err(Closed));
        closer.join().unwrap();
    });
}
