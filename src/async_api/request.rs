//! Request/reply: responders answer a request type with a response type.

use std::fmt;
use std::time::Duration;

use crate::bus::{Bus, SubscriberBuilder};
use crate::context::Context;
use crate::delivery::Tracker;
use crate::error::HandlerError;
use crate::event::{Event, EventId, TenantId};
use crate::registry::Subscription;
use crate::sync::{lock, Arc, Mutex};

/// A request of type `Req` on its way to the responders that answer it
/// with `Resp`: the event responders subscribe to (see
/// [`Bus::responder`]). Its name, key and tenant are the request's.
pub struct Request<Req, Resp> {
    request: Req,
    reply: Arc<Reply<Resp>>,
}

impl<Req, Resp> Request<Req, Resp> {
    pub(crate) fn new(request: Req, reply: Arc<Reply<Resp>>) -> Self {
        Request { request, reply }
    }

    /// The request.
    pub fn get(&self) -> &Req {
        &self.request
    }

    /// Records `responder`'s answer and wakes the requester.
    pub(crate) fn answer(&self, responder: &str, response: Resp) {
        self.reply.answer(responder, response);
    }
}

impl<Req: Clone, Resp> Clone for Request<Req, Resp> {
    fn clone(&self) -> Self {
        Request {
            request: self.request.clone(),
            reply: Arc::clone(&self.reply),
        }
    }
}

impl<Req: Event, Resp: Send + 'static> Event for Request<Req, Resp> {
    fn name(&self) -> &'static str {
        self.request.name()
    }

    fn key(&self) -> Option<u64> {
        self.request.key()
    }

    fn tenant(&self) -> Option<TenantId> {
        self.request.tenant()
    }
}

impl<Req, Resp> fmt::Debug for Request<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Request")
    }
}

/// Where the answers to one request go, by responder name; the waiting
/// task is woken through the event's tracker once `enough` answers are
/// in, and at every answer after that: fewer answers cannot satisfy it,
/// so earlier ones do not wake it (failures and the end of the request
/// wake it through the tracker itself).
pub(crate) struct Reply<Resp> {
    answers: Mutex<Vec<(String, Resp)>>,
    enough: usize,
    tracker: Arc<Tracker>,
}

impl<Resp> Reply<Resp> {
    /// A reply for `responders` responders, `enough` answers of which may
    /// satisfy the requester.
    pub(crate) fn new(tracker: Arc<Tracker>, responders: usize, enough: usize) -> Self {
        Reply {
            answers: Mutex::new(Vec::with_capacity(responders)),
            enough,
            tracker,
        }
    }

    fn answer(&self, responder: &str, response: Resp) {
        let mut answers = lock(&self.answers);
        answers.push((responder.to_owned(), response));
        let wake = answers.len() >= self.enough;
        drop(answers);
        if wake {
            self.tracker.notify();
        }
    }

    /// Looks at the answers so far (who answered what) under their lock.
    pub(crate) fn inspect<R>(&self, look: impl FnOnce(&[(String, Resp)]) -> R) -> R {
        look(&lock(&self.answers))
    }

    /// Takes the answers so far.
    pub(crate) fn take(&self) -> Vec<(String, Resp)> {
        std::mem::take(&mut *lock(&self.answers))
    }
}

/// Why a [`Bus::request`] got no response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// No subscription answers this request type (for the request's
    /// tenant).
    NoResponder,
    /// No answer came before the timeout (the request is still handled),
    /// or the request could not even be published in time (the ring, the
    /// tenant quota or the async backlogs stayed full): then it is dropped
    /// unpublished.
    Timeout,
    /// The responders failed for good (their error) or were unsubscribed
    /// before they answered ([`UNSUBSCRIBED`](crate::async_api::UNSUBSCRIBED)),
    /// or the bus refused the request (closed, or over the tenant's quota).
    Failed(String),
    /// The request's explicit id ([`Meta::id`](crate::Meta::id)) was
    /// published for its tenant within the dedup window: it was not
    /// handled again, and its answers went to the first requester.
    Duplicate(EventId),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NoResponder => f.write_str("no responder for this request"),
            RequestError::Timeout => f.write_str("no response before the timeout"),
            RequestError::Failed(why) => write!(f, "request failed: {why}"),
            RequestError::Duplicate(id) => {
                write!(f, "request {id} was already published (deduplicated)")
            }
        }
    }
}

impl std::error::Error for RequestError {}

impl<Req: Event, Resp: Send + 'static> SubscriberBuilder<'_, Request<Req, Resp>> {
    /// Subscribes `handler` as a responder: its `Ok` value is the answer,
    /// an error is retried and dead-lettered as for any handler.
    pub fn respond<F>(self, handler: F) -> Subscription
    where
        F: Fn(&Req, &Context<'_>) -> Result<Resp, HandlerError> + Send + Sync + 'static,
    {
        self.subscribe(move |request: &Request<Req, Resp>, ctx: &Context<'_>| {
            let response = handler(&request.request, ctx)?;
            request.answer(ctx.handler(), response);
            Ok(())
        })
    }
}

impl Bus {
    /// Subscribes a responder to `Req` requests, answering with `Resp`
    /// (see [`Bus::request`], [`Bus::gather`]).
    pub fn respond<Req, Resp, F>(&self, handler: F) -> Subscription
    where
        Req: Event,
        Resp: Send + 'static,
        F: Fn(&Req, &Context<'_>) -> Result<Resp, HandlerError> + Send + Sync + 'static,
    {
        self.responder::<Req, Resp>().respond(handler)
    }

    /// A responder with options (name, tenant, retry, ...), finished with
    /// [`SubscriberBuilder::respond`].
    pub fn responder<Req: Event, Resp: Send + 'static>(
        &self,
    ) -> SubscriberBuilder<'_, Request<Req, Resp>> {
        self.subscriber::<Request<Req, Resp>>()
    }

    /// Publishes `request` and resolves with the first answer, or
    /// [`RequestError::NoResponder`] at once if nothing answers `Req` with
    /// `Resp`, [`RequestError::Failed`] if every responder failed for
    /// good or was unsubscribed before it answered,
    /// [`RequestError::Timeout`] after `timeout` (which covers the wait for
    /// room to publish: past it, the request is not published).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use diana_bus::{Bus, Context, Event, HandlerError, RequestError};
    ///
    /// struct Balance { user_id: u64 }
    /// impl Event for Balance {}
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let bus = Bus::builder().workers(1).build()?;
    /// let none = bus.request::<Balance, u64>(Balance { user_id: 1 }, Duration::from_secs(1)).await;
    /// assert_eq!(none, Err(RequestError::NoResponder));
    ///
    /// bus.respond(|b: &Balance, _: &Context| -> Result<u64, HandlerError> { Ok(b.user_id * 10) });
    /// let points = bus.request::<Balance, u64>(Balance { user_id: 7 }, Duration::from_secs(1)).await?;
    /// assert_eq!(points, 70);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn request<Req, Resp>(
        &self,
        request: Req,
        timeout: Duration,
    ) -> Result<Resp, RequestError>
    where
        Req: Event,
        Resp: Send + 'static,
    {
        let gathered = self
            .gather::<Req, Resp>(request)
            .expect(1)
            .deadline(timeout)
            .await?;
        if let Some((_, response)) = gathered.answers.into_iter().next() {
            return Ok(response);
        }
        // Failed only if every responder failed for good (or was
        // unsubscribed first): one still at work (or retrying) at the
        // timeout makes it a timeout.
        match gathered.failed.into_iter().next() {
            Some((responder, error)) if gathered.timed_out.is_empty() => {
                Err(RequestError::Failed(format!("{responder}: {error}")))
            }
            _ => Err(RequestError::Timeout),
        }
    }
}

#[cfg(all(test, not(diana_bus_loom)))]
mod tests {
    use super::*;
    use crate::async_api::counting_waker::CountingWaker;

    #[test]
    fn the_requester_is_woken_once_enough_answers_are_in_and_not_before() {
        let tracker = Arc::new(Tracker::default());
        let reply = Reply::new(Arc::clone(&tracker), 3, 2);
        let (wakes, waker) = CountingWaker::new();
        let woken = || wakes.wakes();

        tracker.progress(&waker);
        reply.answer("a", 1);
        assert_eq!(woken(), 0, "one answer of two cannot be enough");
        reply.answer("b", 2);
        assert_eq!(woken(), 1);
        tracker.progress(&waker);
        reply.answer("c", 3);
        assert_eq!(woken(), 2, "every answer after that may matter");
        assert_eq!(reply.inspect(|answers| answers.len()), 3);
    }
}
