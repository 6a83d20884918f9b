//! Scatter/gather: one request to every responder, their answers collected
//! until the expected ones are in or a deadline passes.

use std::future::{poll_fn, Future, IntoFuture};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use super::deadline::Deadline;
use super::publish::Admit;
use super::request::{Reply, Request, RequestError};
use crate::bus::{Bus, Sent};
use crate::delivery::Tracker;
use crate::error::PublishError;
use crate::event::{Event, Meta, Routing};
use crate::sync::Arc;

/// What a [`Gather`] waits for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Expect {
    /// Every responder subscribed when the request was published (the
    /// default).
    #[default]
    All,
    /// This many answers.
    Count(usize),
    /// An answer or a final failure from each of these responders (by
    /// subscription name).
    Names(Vec<String>),
}

impl From<usize> for Expect {
    fn from(count: usize) -> Self {
        Expect::Count(count)
    }
}

impl<S: Into<String>, const N: usize> From<[S; N]> for Expect {
    fn from(names: [S; N]) -> Self {
        Expect::Names(names.into_iter().map(Into::into).collect())
    }
}

impl<S: Into<String>> From<Vec<S>> for Expect {
    fn from(names: Vec<S>) -> Self {
        Expect::Names(names.into_iter().map(Into::into).collect())
    }
}

/// The outcome of a [`Gather`]: who answered what, who failed, who did not
/// answer in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gathered<Resp> {
    /// (responder, answer), in the order the answers came.
    pub answers: Vec<(String, Resp)>,
    /// (responder, last error) of each responder that failed for good.
    pub failed: Vec<(String, String)>,
    /// Expected responders that neither answered nor failed for good in
    /// time (including ones still retrying); none once what was expected
    /// is in (with [`Expect::Count`], the others were not waited for).
    pub timed_out: Vec<String>,
}

impl<Resp> Gathered<Resp> {
    /// The answer of `responder`, if it answered.
    pub fn answer(&self, responder: &str) -> Option<&Resp> {
        self.answers
            .iter()
            .find(|(name, _)| name == responder)
            .map(|(_, answer)| answer)
    }

    /// Whether every expected responder answered.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.timed_out.is_empty()
    }
}

/// A request to every responder of `Req` (see [`Bus::gather`]); set what
/// to expect and a deadline, then `.await` it.
#[must_use = "a gather does nothing until awaited"]
#[derive(Debug)]
pub struct Gather<'b, Req, Resp> {
    bus: &'b Bus,
    request: Req,
    meta: Meta,
    expect: Expect,
    deadline: Option<Duration>,
    response: std::marker::PhantomData<fn() -> Resp>,
}

impl<'b, Req: Event, Resp: Send + 'static> Gather<'b, Req, Resp> {
    /// Waits for a number of answers, or for named responders
    /// (`.expect(2)`, `.expect(["gamification", "narrative"])`); by
    /// default for every responder.
    pub fn expect(mut self, expect: impl Into<Expect>) -> Self {
        self.expect = expect.into();
        self
    }

    /// Gives up waiting after `deadline`; whoever has not answered then is
    /// reported as timed out. The deadline covers the wait for room to
    /// publish the request too: if it passes first, the request is not
    /// published, and the gather fails with [`RequestError::Timeout`].
    /// Without one, a gather waits until every responder has answered or
    /// failed for good.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Publishes the request with these routing overrides.
    pub fn meta(mut self, meta: Meta) -> Self {
        self.meta = meta;
        self
    }

    async fn run(self) -> Result<Gathered<Resp>, RequestError> {
        let Gather {
            bus,
            request,
            meta,
            expect,
            deadline,
            ..
        } = self;
        let tenant = Routing::resolve(&request, meta, 0).tenant;
        let responders = bus
            .executor()
            .registry
            .names(std::any::TypeId::of::<Request<Req, Resp>>(), tenant);
        if responders.is_empty() {
            // The end of a shutdown's drain removes every responder: a
            // closed bus is the reason, not their absence.
            return Err(match bus.is_closed() {
                true => RequestError::Failed(PublishError::Closed(()).to_string()),
                false => RequestError::NoResponder,
            });
        }
        let expected: Vec<&str> = match &expect {
            Expect::Names(names) => names.iter().map(String::as_str).collect(),
            Expect::All | Expect::Count(_) => responders.iter().map(|name| &**name).collect(),
        };
        // Answers that may end the wait: any one, when a responder that
        // failed for good settles its name without an answer.
        let enough = match &expect {
            Expect::All | Expect::Names(_) => 1,
            Expect::Count(count) => *count,
        };
        let tracker = Arc::new(Tracker::default());
        let reply = Arc::new(Reply::new(Arc::clone(&tracker), responders.len(), enough));
        let request = Request::new(request, Arc::clone(&reply));
        // The deadline covers the wait for room in the ring (or the
        // quota) too: past it, the request is dropped unpublished, and the
        // gather fails (its caller must not take it for one that ran).
        let mut deadline = Deadline::after(bus.executor(), deadline);
        let mut admit = Admit::new(bus, request, meta, Some(Arc::clone(&tracker)));
        let admitted = poll_fn(|cx| match Pin::new(&mut admit).poll(cx) {
            Poll::Ready(sent) => Poll::Ready(Some(sent)),
            Poll::Pending if deadline.passed(cx) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        drop(admit);
        let Some(sent) = admitted else {
            return Err(RequestError::Timeout);
        };
        match sent.map_err(|refused| RequestError::Failed(refused.to_string()))? {
            Sent::Accepted(accepted) => bus.executor().watch(accepted.place, Arc::clone(&tracker)),
            // Nothing will answer a duplicate.
            Sent::Duplicate(id) => return Err(RequestError::Duplicate(id)),
        }
        let (failed, satisfied) = poll_fn(|cx| {
            // The waker first, then the look: an answer or a failure after
            // the look wakes this task.
            let progress = tracker.progress(cx.waker());
            let enough = reply.inspect(|answers| {
                let settled = |name: &&str| {
                    answers.iter().any(|(n, _)| n == name)
                        || progress.dead_letters.iter().any(|(n, _)| n == name)
                };
                match &expect {
                    Expect::All | Expect::Names(_) => expected.iter().all(settled),
                    Expect::Count(count) => answers.len() >= *count,
                }
            });
            if enough || progress.done || deadline.passed(cx) {
                Poll::Ready((progress.dead_letters, enough))
            } else {
                Poll::Pending
            }
        })
        .await;
        let answers = reply.take();
        // Satisfied, it waited for no one else: `Count(n)` had its answers.
        let timed_out = expected
            .into_iter()
            .filter(|&name| {
                !satisfied
                    && !answers.iter().any(|(n, _)| n == name)
                    && !failed.iter().any(|(n, _)| n == name)
            })
            .map(str::to_owned)
            .collect();
        Ok(Gathered {
            answers,
            failed,
            timed_out,
        })
    }
}

impl<'b, Req: Event, Resp: Send + 'static> IntoFuture for Gather<'b, Req, Resp> {
    type Output = Result<Gathered<Resp>, RequestError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'b>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl Bus {
    /// Scatter/gather: publishes `request` to every responder of `Req`
    /// (see [`Bus::respond`]) and collects their answers, recording who
    /// answered, who failed for good and who timed out. Fails at once
    /// with [`RequestError::NoResponder`] when no one answers `Req`, with
    /// [`RequestError::Duplicate`] when the request's explicit id is a
    /// duplicate, and with [`RequestError::Timeout`] when the deadline
    /// passes before the request could be published.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use diana_bus::{Bus, Context, Event, HandlerError};
    ///
    /// struct Quote;
    /// impl Event for Quote {}
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let bus = Bus::builder().workers(2).build()?;
    /// bus.responder::<Quote, u32>().name("cheap").respond(|_: &Quote, _: &Context| -> Result<u32, HandlerError> { Ok(5) });
    /// bus.responder::<Quote, u32>().name("broken").respond(|_: &Quote, _: &Context| -> Result<u32, HandlerError> {
    ///     Err(HandlerError::permanent("no stock"))
    /// });
    /// let gathered = bus.gather::<Quote, u32>(Quote).deadline(Duration::from_secs(1)).await?;
    /// assert_eq!(gathered.answer("cheap"), Some(&5));
    /// assert_eq!(gathered.failed, [("broken".to_string(), "no stock".to_string())]);
    /// assert!(gathered.timed_out.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gather<Req: Event, Resp: Send + 'static>(&self, request: Req) -> Gather<'_, Req, Resp> {
        Gather {
            bus: self,
            request,
            meta: Meta::new(),
            expect: Expect::All,
            deadline: None,
            response: std::marker::PhantomData,
        }
    }
}
