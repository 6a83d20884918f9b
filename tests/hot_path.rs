//! No heap allocation per event in steady state, seen by a counting global
//! allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use diana_bus::{Bus, Context, Event, HandlerResult};

/// Counts every allocation in the process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A 64-byte event: the largest stored inline.
#[derive(Clone, Copy)]
#[repr(C)]
struct Tick {
    id: u64,
    user: u64,
    _pad: [u64; 6],
}
impl Event for Tick {
    fn key(&self) -> Option<u64> {
        Some(self.user)
    }
}

#[test]
fn publishing_and_handling_small_events_does_not_allocate() {
    common::within(60, || {
        const EVENTS: u64 = 100_000;
        let bus = Bus::builder()
            .workers(2)
            .shards(4)
            .capacity(1024)
            .build()
            .unwrap();
        let sum = Arc::new(AtomicU64::new(0));
        for _ in 0..2 {
            let sum = sum.clone();
            bus.subscribe(move |t: &Tick, _: &Context| -> HandlerResult {
                sum.fetch_add(t.id, Ordering::Relaxed);
                Ok(())
            });
        }
        let publish = |from: u64| {
            for id in from..from + EVENTS {
                bus.publish(Tick {
                    id,
                    user: id % 16,
                    _pad: [0; 6],
                })
                .unwrap();
            }
            bus.flush();
        };
        publish(0); // warm-up: thread-locals, counter maps, arc-swap debts
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        publish(EVENTS);
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        // flush itself allocates a few times per call, not per event
        assert!(
            allocations < 32,
            "{allocations} allocations for {EVENTS} events"
        );
        assert_eq!(
            sum.load(Ordering::Relaxed),
            2 * (2 * EVENTS) * (2 * EVENTS - 1) / 2
        );
    });
}
