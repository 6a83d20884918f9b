//! The binary's global allocator: the system allocator, counting every
//! allocation and reallocation into [`crate::load::meter::ALLOCATIONS`], so
//! a run can report allocations per event. One relaxed add per allocation;
//! a hot path that does not allocate does not pay it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::Ordering;

use crate::load::meter::ALLOCATIONS;

/// Forwards to [`System`], counting.
#[derive(Debug)]
pub struct Counting;

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged, so it keeps the system allocator's contract; the
// count is a side effect that touches no memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator, that is from System, with
        // `layout`; the caller upholds the rest of `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from System, with
        // `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}
