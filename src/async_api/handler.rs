//! Async handlers: `subscribe_async` and `respond_async`, run on the tokio
//! runtime given to [`crate::BusBuilder::runtime`].
//!
//! # How a run goes
//!
//! A worker calls an async subscription like any other, in stage order;
//! the call holds the event open (see `reliability::completion`: `flush`,
//! `shutdown`, `publish_and_wait` and dependents wait for the run) and
//! hands a job to the subscription's [`Runner`]. The runner starts jobs
//! on the runtime, at most `concurrency` at a time over all keys, and
//! never two of one (tenant, key) at once: one key's jobs start in the
//! order the worker handed them over, which is publish order, and each
//! starts only when the previous one has ended, retries included. So an
//! async subscription sees one key's events strictly in order, like a
//! sync one with `strict_order`; different keys run concurrently. While
//! more jobs wait to start than the subscription's `backlog`, it holds the
//! bus's backlog gate raised, holding back root publishes, until no more
//! than half the backlog still wait (`reliability::backlog`).
//!
//! Each attempt of a job clones the event into a new `Arc` when it starts
//! on the runtime (a retry does not see what an earlier attempt left in
//! its clone) and runs the handler on it. A panic in the clone, in the
//! handler's code before its future exists or in the future's polls fails
//! the attempt; one in the future's drop, after its outcome, is logged. A
//! failure is retried after the subscription's [`crate::RetryPolicy`]
//! pause (a deadline kept by the bus's timer thread, so the runtime needs
//! no timer), and the last failure becomes a dead letter. Outcomes reach the
//! metrics and any `publish_and_wait` report; the end of the job ends the
//! hold.
//!
//! Later stages of the same event wait for the run and its retries to
//! end. `unsubscribe` stops new runs and retries: it ends the runs not
//! yet started, and the runs waiting out a retry pause, at once (each
//! leaves its waker in `pausing` under the queue's lock, then looks at the
//! subscription's flag, which `unsubscribe` sets before it takes the
//! wakers under that lock); a run in flight on the runtime finishes. The
//! runtime must outlive the bus's last event: a job on a runtime that was
//! shut down never ends, and neither does `flush`.

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use super::deadline::Deadline;
use super::publish::Admit;
use super::request::Request;
use crate::bus::{Bus, RunLasts, Sent, SubscriberBuilder, WeakBus};
use crate::caught::{catch, contain, Caught};
use crate::context::Context;
use crate::delivery::RunFailure;
use crate::error::{ConfigError, HandlerError, HandlerResult, PublishError};
use crate::event::{Event, EventId, Meta, Routing, TenantId};
use crate::executor::Executor;
use crate::metrics::{Counts, RunOutcome};
use crate::registry::{AsyncRun, AsyncRunner, AsyncStart, Subscriber, Subscription};
use crate::reliability::backlog::BacklogGate;
use crate::reliability::dead_letter::DeadLetter;
use crate::sync::lock;

std::thread_local! {
    /// The executor whose async handler's code this thread is running (its
    /// start, or a poll of its future); null when none.
    static RUNNING_HANDLER_OF: std::cell::Cell<*const Executor> =
        const { std::cell::Cell::new(std::ptr::null()) };
}

/// Runs `f`, an async handler's code, marked as running a handler of
/// `executor` (see [`Executor::in_handler`]), and then as before.
fn as_handler_of<T>(executor: &Executor, f: impl FnOnce() -> T) -> T {
    struct Restore(*const Executor);
    impl Drop for Restore {
        fn drop(&mut self) {
            RUNNING_HANDLER_OF.with(|running| running.set(self.0));
        }
    }
    let _restore = Restore(RUNNING_HANDLER_OF.with(|running| running.replace(executor)));
    f()
}

/// Whether this thread is running the code of one of `executor`'s async
/// handlers.
pub(crate) fn runs_handler_of(executor: &Executor) -> bool {
    RUNNING_HANDLER_OF.with(|running| std::ptr::eq(running.get(), executor))
}

/// What an async handler knows about its run, and how it publishes
/// follow-ups. Owned, so it can move into the handler's future.
pub struct AsyncContext {
    bus: Bus,
    routing: Routing,
    attempt: u32,
    subscriber: Arc<Subscriber>,
}

impl AsyncContext {
    /// The id of the event being handled.
    pub fn event_id(&self) -> EventId {
        self.routing.id
    }

    /// Its tenant.
    pub fn tenant(&self) -> TenantId {
        self.routing.tenant
    }

    /// Its ordering key.
    pub fn key(&self) -> u64 {
        self.routing.key
    }

    /// Which run of this handler for this event this is: 1 on the first.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The subscription's name.
    pub fn handler(&self) -> &str {
        &self.subscriber.name
    }

    /// The bus. This one does not keep the bus open: when the last handle
    /// its users hold is dropped, it shuts down. A clone of it is a handle
    /// of its own, which does. Until this run ends, publishes through it
    /// and its clones (from a task the run spawned and awaits, say) are
    /// not held back by the async backlogs (see
    /// [`crate::SubscriberBuilder::backlog`]); after, they are, like any
    /// other root publish.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Publishes a follow-up, waiting for room like
    /// [`Bus::publish_async`]. As with [`Context::publish`], it inherits
    /// this event's tenant (unless it names its own), records this event as
    /// its cause, and `flush` waits for it. Published from the handler's
    /// future, it is accepted during the shutdown drain too; from a task
    /// the handler spawned, after shutdown, it is refused as closed.
    pub async fn publish<E: Event>(&self, event: E) -> Result<EventId, PublishError<E>> {
        let tenant = event.tenant().unwrap_or(self.routing.tenant);
        Admit::new(&self.bus, event, Meta::new().tenant(tenant), None)
            .follow_up(self.routing)
            .await
            .map(Sent::id)
    }
}

impl std::fmt::Debug for AsyncContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncContext")
            .field("event_id", &self.routing.id)
            .field("tenant", &self.routing.tenant)
            .field("key", &self.routing.key)
            .field("attempt", &self.attempt)
            .finish()
    }
}

type BoxedRun = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type AsyncFn<E> = dyn Fn(Arc<E>, AsyncContext) -> BoxedRun + Send + Sync;

/// See the module docs.
struct Runner<E> {
    bus: WeakBus,
    runtime: tokio::runtime::Handle,
    handler: Box<AsyncFn<E>>,
    limit: usize,
    /// Jobs that may wait to start before this subscription raises the
    /// backlog gate.
    backlog: usize,
    queue: Mutex<Keyed>,
}

/// The jobs of one subscription, by key. A key is present while one of
/// its jobs runs or waits for a slot; its queue holds the jobs not yet
/// started, in order. `ready` lists keys whose next job waits for a slot.
/// `pausing` holds the waker of each key's job that waits out a retry
/// pause (one job of a key runs at a time).
#[derive(Default)]
struct Keyed {
    running: usize,
    /// Jobs not yet started, over all keys.
    waiting: usize,
    /// Whether this subscription holds the backlog gate raised.
    raising: bool,
    keys: HashMap<(TenantId, u64), VecDeque<AsyncRun>>,
    ready: VecDeque<(TenantId, u64)>,
    pausing: HashMap<(TenantId, u64), Waker>,
}

/// Keys the maps keep room for once they have emptied.
const KEYS_SHRINK_ABOVE: usize = 1024;

impl Keyed {
    /// Takes every job not yet started (the subscription is gone); the
    /// keys with none running go.
    fn take_unstarted(&mut self) -> Vec<AsyncRun> {
        let mut taken = Vec::with_capacity(self.waiting);
        for key in std::mem::take(&mut self.ready) {
            taken.extend(self.keys.remove(&key).into_iter().flatten());
        }
        for waiting in self.keys.values_mut() {
            taken.extend(waiting.drain(..));
        }
        self.waiting = 0;
        taken
    }

    /// A job of `key` ended: the key's next job, if any, waits for a slot;
    /// else the key goes. Once no key is left, the maps give back what a
    /// burst of keys grew them to.
    fn ended(&mut self, key: (TenantId, u64)) {
        self.running -= 1;
        if self
            .keys
            .get(&key)
            .is_some_and(|waiting| !waiting.is_empty())
        {
            self.ready.push_back(key);
        } else {
            self.keys.remove(&key);
        }
        if self.keys.is_empty() && self.keys.capacity() > KEYS_SHRINK_ABOVE {
            self.keys.shrink_to(KEYS_SHRINK_ABOVE);
            self.ready.shrink_to(KEYS_SHRINK_ABOVE);
        }
    }
}

impl<E: Event + Clone> Runner<E> {
    fn submit(self: &Arc<Self>, job: AsyncRun, executor: &Executor) {
        let routing = &job.envelope.routing;
        let key = (routing.tenant, routing.key);
        let mut queue = lock(&self.queue);
        // Handed over by a batch that ran before `unsubscribe` (called from
        // a handler, which does not wait for batches) but settled after it:
        // it must not queue, behind a run that may never end. The flag is
        // set before `unsubscribed` takes this lock.
        if job.subscriber.is_unsubscribed() {
            drop(queue);
            let attempt = job.attempt;
            return end_unrun(executor, job, attempt);
        }
        queue.waiting += 1;
        match queue.keys.get_mut(&key) {
            Some(waiting) => waiting.push_back(job),
            None => {
                queue.keys.insert(key, VecDeque::from([job]));
                queue.ready.push_back(key);
                self.start_ready(&mut queue);
            }
        }
        self.steer(queue, Some(&executor.gate));
    }

    /// Raises the backlog gate once more jobs wait than the backlog, and
    /// lowers it once they are down to half of it (see
    /// `reliability::backlog`): under the queue's lock, which it then lets
    /// go before waking the publishers. No gate: the bus is gone.
    fn steer(&self, mut queue: std::sync::MutexGuard<'_, Keyed>, gate: Option<&BacklogGate>) {
        let Some(gate) = gate else {
            return;
        };
        if !queue.raising && queue.waiting > self.backlog {
            queue.raising = true;
            gate.raise();
        } else if queue.raising && queue.waiting <= self.backlog / 2 {
            queue.raising = false;
            gate.lower();
            drop(queue);
            gate.notify();
        }
    }

    /// Starts the next job of ready keys while slots are free.
    fn start_ready(self: &Arc<Self>, queue: &mut Keyed) {
        while queue.running < self.limit {
            let Some(key) = queue.ready.pop_front() else {
                return;
            };
            let Some(job) = queue.keys.get_mut(&key).and_then(VecDeque::pop_front) else {
                continue;
            };
            queue.waiting -= 1;
            queue.running += 1;
            let runner = Arc::clone(self);
            self.runtime.spawn(async move {
                // No bus: it is gone, and with it whoever waited.
                let bus = runner.bus.upgrade();
                if let Some(bus) = &bus {
                    runner.run(bus, job).await;
                }
                runner.ended(key, bus.as_ref().map(|bus| &bus.executor().gate));
            });
        }
    }

    /// A job of `key` ended: its next one, if any, waits for a slot.
    fn ended(self: &Arc<Self>, key: (TenantId, u64), gate: Option<&BacklogGate>) {
        let mut queue = lock(&self.queue);
        queue.ended(key);
        self.start_ready(&mut queue);
        self.steer(queue, gate);
    }

    /// Runs the handler until it succeeds, gives up, or is unsubscribed.
    async fn run(&self, bus: &Bus, run: AsyncRun) {
        let executor = bus.executor();
        let routing = run.envelope.routing;
        let subscriber = &run.subscriber;
        let payload = &run.envelope.payload;
        let name = payload.name();
        let type_id = std::any::TypeId::of::<E>();
        let tracker = run.envelope.tracker.as_deref();
        let mut attempt = run.attempt;
        loop {
            if subscriber.is_unsubscribed() {
                return end_unrun(executor, run, attempt);
            }
            let mut counts = Counts::default();
            if attempt > 1 {
                counts.retried();
            }
            let lasts = RunLasts::new(AtomicBool::new(true));
            let ctx = AsyncContext {
                bus: bus.lent(&lasts),
                routing,
                attempt,
                subscriber: Arc::clone(subscriber),
            };
            let began = Instant::now();
            // The event's clone and the handler's code before its future
            // exists can panic too: caught like a panic in a poll.
            let started = catch(|| {
                let event = payload
                    .downcast_ref::<E>()
                    .expect("an async run is filed under its event's TypeId");
                as_handler_of(executor, || (self.handler)(Arc::new(event.clone()), ctx))
            });
            let outcome = match started {
                Ok(future) => CatchUnwind(Some(future), executor).await,
                Err(panic) => Err(panic),
            };
            let took = began.elapsed();
            lasts.store(false, Ordering::Relaxed);
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some((error.message().to_owned(), error.is_transient(), false)),
                Err(panic) => Some((format!("panicked: {}", panic.message()), true, true)),
            };
            let Some((error, transient, panicked)) = failure else {
                counts.ran(RunOutcome::Delivered);
                if let Some(tracker) = tracker {
                    tracker.succeeded();
                }
                executor.count_async_run(type_id, name, &counts, took);
                break;
            };
            tracing::warn!(handler = %subscriber.name, event = name, id = %routing.id, attempt, %error, "async handler failed");
            counts.ran(if panicked {
                RunOutcome::Panicked
            } else {
                RunOutcome::Failed
            });
            executor.count_async_run(type_id, name, &counts, took);
            let retry = transient && subscriber.retry.allows_after(attempt);
            if let Some(tracker) = tracker {
                tracker.failed(RunFailure {
                    handler: subscriber.name.to_string(),
                    attempt,
                    error: error.clone(),
                    dead_lettered: !retry,
                });
            }
            if !retry {
                executor.dead_letters.record(DeadLetter::new(
                    Arc::clone(&run.envelope),
                    subscriber,
                    error,
                    attempt,
                ));
                break;
            }
            let pause = subscriber
                .retry
                .pause_before(attempt + 1, routing.id.0 as u64);
            self.pause(executor, subscriber, (routing.tenant, routing.key), pause)
                .await;
            attempt += 1;
        }
        executor.async_run_ended(run);
    }

    /// Waits out the retry pause of `key`'s job, or until its subscriber
    /// is unsubscribed (see the module docs).
    async fn pause(
        &self,
        executor: &Executor,
        subscriber: &Subscriber,
        key: (TenantId, u64),
        pause: Duration,
    ) {
        /// Takes the job's waker back when the pause ends (or its future
        /// is dropped).
        struct Pausing<'r>(&'r Mutex<Keyed>, (TenantId, u64));
        impl Drop for Pausing<'_> {
            fn drop(&mut self) {
                let waker = lock(self.0).pausing.remove(&self.1);
                drop(waker); // after the lock: a waker's drop is user code
            }
        }
        let _pausing = Pausing(&self.queue, key);
        let mut deadline = Deadline::after(executor, Some(pause));
        poll_fn(|cx| {
            // Cloned and dropped outside the lock: a waker is user code.
            let waker = cx.waker().clone();
            let earlier = lock(&self.queue).pausing.insert(key, waker);
            drop(earlier);
            if subscriber.is_unsubscribed() || deadline.passed(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

impl<E: Event + Clone> AsyncRunner for Arc<Runner<E>> {
    fn start(&self, run: AsyncRun, executor: &Executor) {
        self.submit(run, executor);
    }

    fn unsubscribed(&self, executor: &Executor) {
        let mut queue = lock(&self.queue);
        let pausing = std::mem::take(&mut queue.pausing);
        let unstarted = queue.take_unstarted();
        self.steer(queue, Some(&executor.gate));
        pausing.into_values().for_each(crate::caught::wake);
        for run in unstarted {
            let attempt = run.attempt;
            end_unrun(executor, run, attempt);
        }
    }
}

/// Ends a job whose subscription was removed before its `attempt`: if that
/// was a retry, the series ends unfinished.
fn end_unrun(executor: &Executor, run: AsyncRun, attempt: u32) {
    if let (Some(tracker), true) = (run.envelope.tracker.as_deref(), attempt > 1) {
        tracker.abandoned();
    }
    executor.async_run_ended(run);
}

/// Polls a handler's future, catching a panic as a failed run, and drops
/// it once it has ended, under a catch too: what the future holds (the
/// event's clone, say) may panic on drop, and the run must still end. A
/// panic there is logged; the run's outcome stands, since counting it as
/// a failure would run a handler that succeeded again.
struct CatchUnwind<'e>(Option<BoxedRun>, &'e Executor);

impl Future for CatchUnwind<'_> {
    type Output = Result<HandlerResult, Caught>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let executor = self.1;
        let run = self
            .0
            .as_mut()
            .expect("a handler's run polled after it ended");
        let polled = catch(|| as_handler_of(executor, || run.as_mut().poll(cx)));
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => Ok(result),
            Err(panic) => Err(panic),
        };
        // Still the handler's code: the future may hold the last handle
        // of the bus, whose shutdown must not wait for this run.
        let ended = self.0.take();
        contain(
            format_args!("an async handler's future panicked on drop"),
            || as_handler_of(executor, || drop(ended)),
        );
        Poll::Ready(outcome)
    }
}

impl<E: Event + Clone> SubscriberBuilder<'_, E> {
    /// Subscribes an async handler, run on the bus's runtime (see the
    /// module docs), with these options and [`SubscriberBuilder::concurrency`].
    /// Without [`crate::BusBuilder::runtime`]: [`ConfigError::NoRuntime`];
    /// with a concurrency of 0: [`ConfigError::Concurrency`].
    ///
    /// The workers hand each event over and go on: the runs waiting for a
    /// slot of `concurrency` (or for their key) are queued outside the
    /// rings and the tenant quota, up to [`SubscriberBuilder::backlog`];
    /// over it, the bus holds back its root publishers until the handler
    /// has caught up (see "Backpressure from async handlers" in the README).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use diana_bus::{AsyncContext, Bus, Event};
    ///
    /// #[derive(Clone)]
    /// struct Reaction { user_id: u64 }
    /// impl Event for Reaction {
    ///     fn key(&self) -> Option<u64> { Some(self.user_id) }
    /// }
    ///
    /// let runtime = tokio::runtime::Runtime::new()?;
    /// let bus = Bus::builder().workers(1).runtime(runtime.handle().clone()).build()?;
    /// let points = Arc::new(AtomicU64::new(0));
    /// let p = points.clone();
    /// bus.subscriber::<Reaction>().concurrency(4).subscribe_async(move |r: Arc<Reaction>, _ctx: AsyncContext| {
    ///     let p = p.clone();
    ///     async move {
    ///         tokio::task::yield_now().await; // a database call, say
    ///         p.fetch_add(r.user_id, Ordering::Relaxed);
    ///         Ok(())
    ///     }
    /// })?;
    /// bus.publish(Reaction { user_id: 5 })?;
    /// bus.flush(); // waits for async runs too
    /// assert_eq!(points.load(Ordering::Relaxed), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe_async<F, Fut>(self, handler: F) -> Result<Subscription, ConfigError>
    where
        F: Fn(Arc<E>, AsyncContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let (bus, limit, backlog) = self.async_parts();
        let runtime = bus.runtime().ok_or(ConfigError::NoRuntime)?.clone();
        if limit == 0 {
            return Err(ConfigError::Concurrency(limit));
        }
        let runner = Arc::new(Runner {
            bus: bus.downgrade(),
            runtime,
            handler: Box::new(move |event, ctx| Box::pin(handler(event, ctx))),
            limit,
            backlog,
            queue: Mutex::new(Keyed::default()),
        });
        let start: AsyncStart = Box::new(runner);
        // The workers start runs through `start`; the handler is never called.
        Ok(self.subscribe_erased(Some(start), |_: &E, _: &Context<'_>| Ok(())))
    }
}

impl<Req, Resp> SubscriberBuilder<'_, Request<Req, Resp>>
where
    Req: Event + Clone,
    Resp: Send + 'static,
{
    /// Subscribes an async responder (see
    /// [`SubscriberBuilder::subscribe_async`] and
    /// [`SubscriberBuilder::respond`]).
    pub fn respond_async<F, Fut>(self, handler: F) -> Result<Subscription, ConfigError>
    where
        F: Fn(Arc<Req>, AsyncContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, HandlerError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.subscribe_async(move |request: Arc<Request<Req, Resp>>, ctx: AsyncContext| {
            let handler = Arc::clone(&handler);
            async move {
                let responder = ctx.handler().to_owned();
                let response = handler(Arc::new(request.get().clone()), ctx).await?;
                request.answer(&responder, response);
                Ok(())
            }
        })
    }
}

#[cfg(all(test, not(diana_bus_loom)))]
mod tests {
    use super::*;

    #[test]
    fn emptied_key_maps_give_back_what_a_burst_grew_them_to() {
        let mut queue = Keyed::default();
        let keys: Vec<_> = (0..50_000).map(|key| (TenantId(0), key)).collect();
        for &key in &keys {
            queue.keys.insert(key, VecDeque::new());
            queue.running += 1;
        }
        assert!(queue.keys.capacity() >= 50_000);
        keys.into_iter().for_each(|key| queue.ended(key));
        assert_eq!(queue.running, 0);
        assert!(queue.keys.capacity() <= 2 * KEYS_SHRINK_ABOVE);
    }
}
