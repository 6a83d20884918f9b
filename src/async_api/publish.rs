//! `publish_async` and `publish_and_wait`.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use crate::bus::{Bus, Sent};
use crate::delivery::{DeliveryReport, Tracker};
use crate::error::PublishError;
use crate::event::{Event, EventId, Meta, Routing};
use crate::executor::OnFull;
use crate::park::WaiterId;
use crate::sync::Arc;

/// A publish that waits for room in its ring (and its tenant's quota)
/// without blocking a thread. See the module docs for cancel safety.
pub(crate) struct Admit<'b, E> {
    bus: &'b Bus,
    pending: Option<(E, Meta, Option<Arc<Tracker>>)>,
    parent: Option<Routing>,
    /// Once it has left its waker with a wait queue: its id there, and the
    /// routing that names its ring's queue.
    waiting: Option<(WaiterId, Routing)>,
}

// The event is moved in and out, never pinned: nothing here relies on
// `Admit` staying put.
impl<E> Unpin for Admit<'_, E> {}

/// Done or cancelled, a publish takes its waker back from the queues it
/// left it with (see `park`).
impl<E> Drop for Admit<'_, E> {
    fn drop(&mut self) {
        if let Some((id, routing)) = self.waiting.take() {
            self.bus.executor().stop_waiting(&routing, id);
        }
    }
}

impl<'b, E: Event> Admit<'b, E> {
    pub(crate) fn new(bus: &'b Bus, event: E, meta: Meta, tracker: Option<Arc<Tracker>>) -> Self {
        Admit {
            bus,
            pending: Some((event, meta, tracker)),
            parent: None,
            waiting: None,
        }
    }

    /// Publishes as a follow-up of the event of `parent` (see
    /// [`crate::Context::publish`]).
    #[cfg_attr(diana_bus_loom, allow(dead_code))]
    pub(crate) fn follow_up(mut self, parent: Routing) -> Self {
        self.parent = Some(parent);
        self
    }
}

/// The wait queues an async publisher may be refused by.
#[derive(Clone, Copy)]
enum WaitFor {
    Ring,
    Quota,
    Gate,
}

impl<E: Event> Future for Admit<'_, E> {
    type Output = Result<Sent, PublishError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        // The waker goes to the queue of what refused the publish only (a
        // publisher waiting for its ring is not woken by every quota unit
        // given back, its own included), once per poll: `left` marks the
        // queues it went to.
        let mut left = [false; 3];
        loop {
            let (event, meta, tracker) = this
                .pending
                .take()
                .expect("a publish future polled after it completed");
            let parent = this.parent.as_ref();
            let executor = this.bus.executor();
            let sent = this
                .bus
                .send(event, meta, tracker.clone(), OnFull::Retry, parent);
            let (event, refusal) = match sent {
                Ok(sent) => return Poll::Ready(Ok(sent)),
                Err(PublishError::Full(event)) => (event, WaitFor::Ring),
                Err(PublishError::QuotaExceeded(event)) => (event, WaitFor::Quota),
                Err(PublishError::Backlogged(event)) => (event, WaitFor::Gate),
                Err(refused) => return Poll::Ready(Err(refused)),
            };
            let registered = !std::mem::replace(&mut left[refusal as usize], true);
            if registered {
                let waker = cx.waker();
                let (id, routing) = *this
                    .waiting
                    .get_or_insert_with(|| (WaiterId::unique(), Routing::resolve(&event, meta, 0)));
                match refusal {
                    WaitFor::Ring => executor.wait_for_ring(&routing, id, waker),
                    WaitFor::Quota => executor.wait_for_quota(id, waker),
                    WaitFor::Gate => executor.wait_for_gate(id, waker),
                }
            }
            this.pending = Some((event, meta, tracker));
            // Having left the waker, try once more: room freed before it
            // was left is seen by this try.
            if !registered {
                return Poll::Pending;
            }
        }
    }
}

impl Bus {
    /// Publishes `event`, waiting for room in a full ring (or the tenant's
    /// quota, or the async subscriptions' backlogs: see
    /// [`crate::SubscriberBuilder::backlog`]) without blocking the thread,
    /// whatever the backpressure policy. After shutdown:
    /// [`PublishError::Closed`].
    ///
    /// Cancel safe: dropping the future before it completes drops the event
    /// unpublished; when it completes, the event is published.
    ///
    /// # Examples
    ///
    /// ```
    /// use diana_bus::{Bus, Context, Event, HandlerResult};
    ///
    /// struct Ping;
    /// impl Event for Ping {}
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let bus = Bus::builder().workers(1).capacity(2).build()?;
    /// bus.subscribe(|_: &Ping, _: &Context| -> HandlerResult { Ok(()) });
    /// for _ in 0..100 {
    ///     bus.publish_async(Ping).await?; // waits whenever the ring is full
    /// }
    /// bus.flush();
    /// assert_eq!(bus.metrics().delivered, 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn publish_async<E: Event>(&self, event: E) -> Result<EventId, PublishError<E>> {
        self.publish_async_with(event, Meta::new()).await
    }

    /// [`Bus::publish_async`] with routing overrides, as
    /// [`Bus::publish_with`].
    pub async fn publish_async_with<E: Event>(
        &self,
        event: E,
        meta: Meta,
    ) -> Result<EventId, PublishError<E>> {
        Admit::new(self, event, meta, None).await.map(Sent::id)
    }

    /// Publishes `event` (waiting for room like [`Bus::publish_async`]) and
    /// resolves when every handler of it has finished, retries included:
    /// the Python bus's `await publish(event)`. The report counts the
    /// handlers that succeeded, the failed runs, the handlers that gave up
    /// (dead letters), and each failure's error.
    ///
    /// Dropped after the publish, the event is still handled in full; only
    /// the report is lost.
    pub async fn publish_and_wait<E: Event>(
        &self,
        event: E,
    ) -> Result<DeliveryReport, PublishError<E>> {
        self.publish_and_wait_with(event, Meta::new()).await
    }

    /// [`Bus::publish_and_wait`] with routing overrides. A duplicate (an
    /// explicit id seen within the dedup window) resolves at once with
    /// `deduplicated` set.
    pub async fn publish_and_wait_with<E: Event>(
        &self,
        event: E,
        meta: Meta,
    ) -> Result<DeliveryReport, PublishError<E>> {
        let tracker = Arc::new(Tracker::default());
        match Admit::new(self, event, meta, Some(Arc::clone(&tracker))).await? {
            Sent::Duplicate(id) => Ok(DeliveryReport {
                id,
                deduplicated: true,
                ..DeliveryReport::default()
            }),
            Sent::Accepted(accepted) => {
                self.executor().watch(accepted.place, Arc::clone(&tracker));
                let mut report = poll_fn(|cx| tracker.poll_report(cx.waker())).await;
                report.id = accepted.id;
                Ok(report)
            }
        }
    }
}
