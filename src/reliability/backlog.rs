//! The backlog gate: backpressure from async subscriptions to the
//! publishers.
//!
//! A worker hands an async handler's run to its subscription's runner and
//! goes on; the runs waiting there for a slot of the subscription's
//! `concurrency`, or for their key, are out of the rings. Without a bound,
//! a handler slower than its events queued them all, in memory. So each
//! async subscription has a bound, its *backlog*
//! (`SubscriberBuilder::backlog`): when more runs than that wait, it raises
//! this gate, and when they have fallen to half of it, lowers it again.
//! While any subscription holds the gate raised, root publishes wait for it
//! to be lowered (`Backpressure::Block`, `publish_async`) or are refused
//! with `PublishError::Backlogged` (`Backpressure::Reject`, `try_publish`).
//!
//! What the gate lets through, so that no run waits for itself: what the
//! runs may wait for, that is follow-ups, publishes made in a handler's
//! code (a worker thread, or a poll of an async handler's future) or
//! through an async handler's handle while its run lasts
//! (`AsyncContext::bus` and its clones);
//! and a blocking publish that could hold up the runs themselves (on a
//! thread in a tokio runtime, or anywhere when the bus's runtime is a
//! current-thread one). `unsubscribe` ends a subscription's runs not yet
//! started, and so lowers the gate it held. The gate bounds the backlog
//! softly: a publish that read the gate lowered just before it was raised
//! goes on, and the events already in the rings still reach the runner.
//!
//! # Protocol
//!
//! `raised` counts the subscriptions holding the gate raised. Each
//! subscription raises and lowers under its own lock, so its raises and
//! lowerings alternate and the count never goes below zero. A root publish
//! reads `raised` (Relaxed) on its fast path, and only when it is not zero
//! takes the gate's slow path. A waiting publisher follows the
//! [`WaitQueue`] protocol: it counts itself, fences, and re-checks
//! `raised == 0 || closed` before every wait; `lower` stores the new count,
//! fences (`SeqCst`) and notifies, as does the bus's close. So a waiter
//! either sees the gate lowered or is woken after it is. The `backlog` loom
//! model checks this.

use std::task::Waker;

use crate::park::{WaitQueue, WaiterId};
use crate::sync::{fence, AtomicUsize, CachePadded, Ordering};

/// See the module docs.
#[derive(Debug, Default)]
pub struct BacklogGate {
    /// Read by every root publish: on a line of its own, written only when
    /// a subscription's backlog crosses its bound.
    raised: CachePadded<AtomicUsize>,
    /// Publishers waiting for the gate to be lowered.
    space: WaitQueue,
}

/// A publish refused at the gate: the bus closed while it waited.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

impl BacklogGate {
    /// Whether some subscription holds the gate raised (a snapshot).
    #[inline]
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Relaxed) != 0
    }

    /// A subscription's backlog went over its bound. Call under the
    /// subscription's lock, alternating with [`BacklogGate::lower`].
    pub fn raise(&self) {
        self.raised.fetch_add(1, Ordering::Relaxed);
    }

    /// A subscription's backlog fell back to half its bound. Call under the
    /// subscription's lock, after its [`BacklogGate::raise`]; then call
    /// [`BacklogGate::notify`], outside the lock (a waker is user code).
    pub fn lower(&self) {
        self.raised.fetch_sub(1, Ordering::Relaxed);
    }

    /// Wakes the publishers waiting at the gate, after a
    /// [`BacklogGate::lower`] or the bus's close.
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        self.space.notify();
    }

    /// Waits until the gate is lowered, or `closed` says the bus closed.
    pub fn wait(&self, closed: impl Fn() -> bool) -> Result<(), Closed> {
        self.space.wait_for(|| {
            if !self.is_raised() {
                Some(Ok(()))
            } else if closed() {
                Some(Err(Closed))
            } else {
                None
            }
        })
    }

    /// Leaves an async publisher's waker until the gate is lowered (or the
    /// bus closes); the publisher then tries again.
    pub fn register(&self, id: WaiterId, waker: &Waker) {
        self.space.register(id, waker);
    }

    /// Takes back the waker `id` left: its publisher no longer waits.
    pub fn forget(&self, id: WaiterId) {
        self.space.forget(id);
    }
}
