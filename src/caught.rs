//! Panics caught on threads that must go on: a worker, which would leave
//! its shard claimed if it unwound out of a batch (or stop for good if it
//! unwound out of its loop, from a waker it wakes), and a runtime task
//! that must end its handler's run.
//!
//! A caught panic's payload is user data (`panic_any` throws any value),
//! and its drop is user code that can panic in turn. [`Caught`] owns the
//! payload and drops it under a catch of its own; a second panic from
//! that drop is logged, and its payload dropped if it is a string (whose
//! drop runs no user code) or leaked otherwise, since dropping that one
//! could panic again, and so on.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::Waker;

/// A caught panic: its payload (always there until the drop), dropped
/// safely.
pub(crate) struct Caught(Option<Box<dyn Any + Send>>);

/// Runs `f`, catching a panic from it.
#[inline(always)]
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Caught> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Caught(Some(payload)))
}

/// Runs user code that returns nothing (a value's drop, a waker) on a
/// thread that must go on. A panic from it is logged as `what` and goes no
/// further.
pub(crate) fn contain(what: fmt::Arguments<'_>, f: impl FnOnce()) {
    if let Err(panic) = catch(f) {
        tracing::error!(panic = panic.message(), "{what}");
    }
}

/// Wakes an async task from a worker. A waker is its executor's code; a
/// panic from it must not stop the worker.
pub(crate) fn wake(waker: Waker) {
    contain(format_args!("an async task's waker panicked"), || {
        waker.wake()
    });
}

impl Caught {
    /// The panic's text, when its payload is a string.
    pub(crate) fn message(&self) -> &str {
        self.0
            .as_deref()
            .and_then(text)
            .unwrap_or("(non-string panic payload)")
    }
}

/// A panic payload's text: `panic!` throws a `&str` or a `String`.
fn text(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

impl Drop for Caught {
    fn drop(&mut self) {
        let payload = self.0.take();
        if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            // A string drops without running user code; anything else is
            // leaked, since its drop could panic in turn.
            match text(&*again) {
                Some(text) => {
                    tracing::error!(panic = text, "a caught panic's payload panicked on drop");
                }
                None => {
                    tracing::error!(
                        "a caught panic's payload panicked on drop; its own payload is leaked"
                    );
                    std::mem::forget(again);
                }
            }
        }
    }
}

impl fmt::Debug for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Caught").field(&self.message()).finish()
    }
}
