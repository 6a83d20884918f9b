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

/// The error that [`Gathered::failed`] gives an expected responder that
/// was unsubscribed before it answered.
pub const UNSUBSCRIBED: &str = "unsubscribed before it answered";

/// The outcome of a [`Gather`]: who answered what, who failed, who did not
/// answer in time. Responders are told apart by name, and several may
/// share one: each answer or failure settles one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gathered<Resp> {
    /// (responder, answer), in the order the answers came.
    pub answers: Vec<(String, Resp)>,
    /// (responder, last error) of each responder that failed for good,
    /// and (responder, [`UNSUBSCRIBED`]) of each expected one that was
    /// unsubscribed before it answered (the request's handling ended
    /// without it).
    pub failed: Vec<(String, String)>,
    /// Expected responders that neither answered nor failed for good in
    /// time (including ones still retrying, and expected names that no
    /// responder had when the request was published); none once what was
    /// expected is in (with [`Expect::Count`], the others were not waited
    /// for).
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
        let (mut failed, satisfied, ended) = poll_fn(|cx| {
            // The waker first, then the look: an answer or a failure after
            // the look wakes this task.
            let progress = tracker.progress(cx.waker());
            let enough = reply.inspect(|answers| match &expect {
                Expect::All | Expect::Names(_) => {
                    unsettled(&expected, answers, &progress.dead_letters).is_empty()
                }
                Expect::Count(count) => answers.len() >= *count,
            });
            if enough || progress.done || deadline.passed(cx) {
                Poll::Ready((progress.dead_letters, enough, progress.done))
            } else {
                Poll::Pending
            }
        })
        .await;
        let answers = reply.take();
        // Satisfied, it waited for no one else: `Count(n)` had its answers.
        let owed = match satisfied {
            true => Vec::new(),
            false => unsettled(&expected, &answers, &failed),
        };
        // Once the request's handling has ended, no responder owing an
        // answer will give one: it was unsubscribed before it answered. (A
        // name expected but not subscribed at the request stays timed out.)
        let (let_go, timed_out): (Vec<&str>, Vec<&str>) = owed
            .into_iter()
            .partition(|name| ended && responders.iter().any(|r| **r == **name));
        failed.extend(
            let_go
                .into_iter()
                .map(|name| (name.to_owned(), UNSUBSCRIBED.to_owned())),
        );
        let timed_out = timed_out.into_iter().map(str::to_owned).collect();
        Ok(Gathered {
            answers,
            failed,
            timed_out,
        })
    }
}

/// The `expected` responders (by name, each as often as it is expected)
/// that neither answered nor failed for good: each answer or failure
/// settles one of a name, so two responders that share a name are both
/// waited for.
fn unsettled<'e, Resp>(
    expected: &[&'e str],
    answers: &[(String, Resp)],
    failed: &[(String, String)],
) -> Vec<&'e str> {
    let settled = |name: &str| {
        answers.iter().filter(|(n, _)| n == name).count()
            + failed.iter().filter(|(n, _)| n == name).count()
    };
    let mut owed = Vec::new();
    for (at, &name) in expected.iter().enumerate() {
        // Each name once, at its first place.
        if expected[..at].contains(&name) {
            continue;
        }
        let wanted = expected.iter().filter(|&&n| n == name).count();
        owed.extend(std::iter::repeat_n(
            name,
            wanted.saturating_sub(settled(name)),
        ));
    }
    owed
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
