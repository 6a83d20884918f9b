//! The loom shim: the only place in the crate that names atomics, cells,
//! `Arc`, locks, threads, park/unpark, spin hints and the arc-swap cell.
//!
//! Normally these are the std and arc-swap types. Built with
//! `RUSTFLAGS="--cfg diana_bus_loom"` (as `loom-tests/run.sh` does), they are
//! loom's, so the model checks in `loom-tests/` run the real protocols of
//! the ring, the registry and the executor. arc-swap is not loom-aware, so
//! under loom [`ArcCell`] is a loom mutex around an `Arc`: it has the same
//! interface and gives the model every interleaving of load and store.

#[cfg(not(diana_bus_loom))]
mod imp {
    pub(crate) use std::hint::spin_loop;
    pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(crate) use std::thread;
    pub(crate) use std::thread_local;

    /// `std::cell::UnsafeCell` with loom's closure-based API, so that every
    /// raw access is a call loom can see when the crate is built for it.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// An atomically replaceable `Arc<T>`: readers never lock.
    pub(crate) struct ArcCell<T>(arc_swap::ArcSwap<T>);

    /// What [`ArcCell::load`] returns: a cheap, thread-local-debt guard.
    pub(crate) struct Snapshot<T>(arc_swap::Guard<Arc<T>>);

    impl<T> ArcCell<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(arc_swap::ArcSwap::from_pointee(value))
        }

        #[inline]
        pub(crate) fn load(&self) -> Snapshot<T> {
            Snapshot(self.0.load())
        }

        pub(crate) fn load_full(&self) -> Arc<T> {
            self.0.load_full()
        }

        pub(crate) fn store(&self, value: Arc<T>) {
            self.0.store(value)
        }
    }

    impl<T> std::ops::Deref for Snapshot<T> {
        type Target = T;
        #[inline]
        fn deref(&self) -> &T {
            &self.0
        }
    }
}

#[cfg(diana_bus_loom)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::hint::spin_loop;
    pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(crate) use loom::thread;
    pub(crate) use loom::thread_local;

    /// Loom stand-in for arc-swap: a loom mutex around an `Arc`.
    pub(crate) struct ArcCell<T>(Mutex<Arc<T>>);

    /// What [`ArcCell::load`] returns under loom: a clone of the `Arc`.
    pub(crate) struct Snapshot<T>(Arc<T>);

    impl<T> ArcCell<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(Mutex::new(Arc::new(value)))
        }

        pub(crate) fn load(&self) -> Snapshot<T> {
            Snapshot(self.load_full())
        }

        pub(crate) fn load_full(&self) -> Arc<T> {
            self.0.lock().unwrap().clone()
        }

        pub(crate) fn store(&self, value: Arc<T>) {
            *self.0.lock().unwrap() = value;
        }
    }

    impl<T> std::ops::Deref for Snapshot<T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }
}

pub(crate) use imp::*;

impl<T> std::fmt::Debug for ArcCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArcCell")
    }
}

/// Locks a mutex, ignoring poisoning: no lock in this crate is held while
/// user code runs, so a poisoned lock only means another thread panicked
/// between two of our own statements, and the data is still consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Park and unpark for one thread, with a wake-up token: an `unpark`
/// before `park` makes that `park` return at once.
///
/// std's `thread::park_timeout`/`unpark`; under loom, `loom::sync::Notify`
/// (the same token, and a possible spurious wake-up), because loom 0.7's
/// `unpark` makes a thread that is
/// blocked on a mutex runnable (it then fails loom's "expected to be able
/// to acquire lock" assertion), and a worker is unparked at any moment by
/// a producer that saw it announce sleep, also after it woke and went on
/// to take a lock. Loom has no time: its `park` waits for the token.
#[derive(Debug, Default)]
pub(crate) struct Parker {
    #[cfg(not(diana_bus_loom))]
    thread: Mutex<Option<thread::Thread>>,
    #[cfg(diana_bus_loom)]
    token: loom::sync::Notify,
}

#[cfg(not(diana_bus_loom))]
impl Parker {
    /// Records the calling thread as the one that parks.
    pub(crate) fn register_current(&self) {
        *lock(&self.thread) = Some(thread::current());
    }

    /// Waits for the token, or for at most `at_most`.
    pub(crate) fn park(&self, at_most: std::time::Duration) {
        thread::park_timeout(at_most);
    }

    /// Gives the registered thread the token.
    pub(crate) fn unpark(&self) {
        if let Some(thread) = lock(&self.thread).as_ref() {
            thread.unpark();
        }
    }
}

#[cfg(diana_bus_loom)]
impl Parker {
    pub(crate) fn register_current(&self) {}

    pub(crate) fn park(&self, _: std::time::Duration) {
        self.token.wait();
    }

    pub(crate) fn unpark(&self) {
        self.token.notify();
    }
}

/// Pads and aligns a value to two cache lines, so that counters written by
/// different threads never share one (128 bytes covers the adjacent-line
/// prefetcher of x86 and the 128-byte lines of Apple silicon).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Waiting for another thread: spin (doubling), then yield, then, once
/// [`Backoff::is_completed`], sleep briefly on each step; a caller with a
/// wake-up signal switches to it at that point instead. Under loom every
/// step yields, so models that wait still end.
#[derive(Debug, Default)]
pub(crate) struct Backoff(u32);

impl Backoff {
    /// Whether spinning and yielding are over.
    pub(crate) fn is_completed(&self) -> bool {
        self.0 > 9
    }

    pub(crate) fn snooze(&mut self) {
        #[cfg(not(diana_bus_loom))]
        match self.0 {
            0..=5 => (0..1 << self.0).for_each(|_| spin_loop()),
            6..=9 => thread::yield_now(),
            _ => thread::sleep(std::time::Duration::from_micros(50)),
        }
        #[cfg(diana_bus_loom)]
        thread::yield_now();
        self.0 = self.0.saturating_add(1);
    }
}
