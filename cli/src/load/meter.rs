//! What a timed window cost besides wall-clock time: the process's CPU time
//! (user + system, all threads) and its heap allocations.
//!
//! Allocations are counted only when the host process installs a counting
//! global allocator that feeds [`ALLOCATIONS`] (the `diana-bus` binary
//! does; the criterion bench does not, and reads nothing from it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Heap allocations (and reallocations) in this process so far, when a
/// counting global allocator feeds it.
pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The clocks and counters at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    at: Instant,
    cpu: Duration,
    allocations: u64,
}

/// The difference between two [`Reading`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Wall-clock time.
    pub elapsed: Duration,
    /// CPU time of the whole process, every thread.
    pub cpu: Duration,
    /// Allocations of the whole process, every thread.
    pub allocations: u64,
}

impl Reading {
    /// The clocks and counters now.
    pub fn now() -> Self {
        Self {
            allocations: ALLOCATIONS.load(Ordering::Relaxed),
            cpu: process_cpu(),
            at: Instant::now(),
        }
    }

    /// From this reading until now.
    pub fn window(self) -> Window {
        // The wall clock last in and first out, so the window does not time
        // the other readings.
        let elapsed = self.at.elapsed();
        let now = Self::now();
        Window {
            elapsed,
            cpu: now.cpu.saturating_sub(self.cpu),
            allocations: now.allocations - self.allocations,
        }
    }
}

/// User plus system CPU time of this process so far.
#[cfg(unix)]
fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `usage` is valid for writes of one `rusage`, which is all
    // getrusage writes; RUSAGE_SELF is a valid `who`.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if status != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it filled `usage` in.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// CPU time is not measured on this platform.
#[cfg(not(unix))]
fn process_cpu() -> Duration {
    Duration::ZERO
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_busy_window_uses_cpu() {
        let start = super::Reading::now();
        let mut x = 0u64;
        while start.at.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let window = start.window();
        assert!(window.elapsed >= std::time::Duration::from_millis(30));
        // getrusage ticks coarsely; a 30 ms spin shows at least some of it.
        assert!(window.cpu > std::time::Duration::ZERO, "{window:?}");
    }
}
