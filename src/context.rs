//! What a handler knows about the event it handles, and how it publishes
//! follow-ups.

use crate::event::{Event, EventId, Meta, Routing, TenantId};
use crate::executor::Executor;
use crate::registry::Subscriber;
use crate::sync::Arc;

/// Passed to every handler call with the event.
pub struct Context<'a> {
    pub(crate) executor: &'a Executor,
    pub(crate) worker: usize,
    pub(crate) routing: &'a Routing,
    pub(crate) attempt: u32,
    pub(crate) subscriber: &'a Arc<Subscriber>,
}

impl Context<'_> {
    /// The id of the event being handled.
    pub fn event_id(&self) -> EventId {
        self.routing.id
    }

    /// Its tenant ([`TenantId::DEFAULT`] when published without one).
    pub fn tenant(&self) -> TenantId {
        self.routing.tenant
    }

    /// Its ordering key (0 when published without one).
    pub fn key(&self) -> u64 {
        self.routing.key
    }

    /// Which run of this handler for this event this is: 1 on the first.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The name of the subscription being run (see
    /// [`crate::SubscriberBuilder::name`]).
    pub fn handler(&self) -> &str {
        &self.subscriber.name
    }

    /// The event whose handler published this one, if any.
    pub fn cause(&self) -> Option<EventId> {
        self.routing.caused.then_some(self.routing.cause)
    }

    /// Publishes a follow-up event. It inherits this event's tenant (unless
    /// it names its own) but not its key, and records this event as its
    /// cause. It is never refused: a full ring puts it in the shard's
    /// overflow instead of waiting (the worker would wait on itself), and it
    /// is accepted during the shutdown drain. `flush` waits for it.
    ///
    /// # Examples
    ///
    /// ```
    /// use diana_bus::{Bus, Context, Event, HandlerResult};
    ///
    /// struct Ping(u32);
    /// impl Event for Ping {}
    /// struct Pong(u32);
    /// impl Event for Pong {}
    ///
    /// let bus = Bus::builder().workers(1).build()?;
    /// bus.subscribe(|p: &Ping, ctx: &Context| -> HandlerResult {
    ///     ctx.publish(Pong(p.0 + 1));
    ///     Ok(())
    /// });
    /// let pongs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    /// let seen = pongs.clone();
    /// bus.subscribe(move |p: &Pong, _: &Context| -> HandlerResult {
    ///     seen.store(p.0, std::sync::atomic::Ordering::Relaxed);
    ///     Ok(())
    /// });
    /// bus.publish(Ping(41))?;
    /// bus.flush();
    /// assert_eq!(pongs.load(std::sync::atomic::Ordering::Relaxed), 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish<E: Event>(&self, event: E) -> EventId {
        self.publish_with(event, Meta::new())
    }

    /// [`Context::publish`] with routing overrides; an explicit id is
    /// deduplicated as by [`crate::Bus::publish_with`].
    pub fn publish_with<E: Event>(&self, event: E, meta: Meta) -> EventId {
        let inherited = meta
            .get_tenant()
            .or_else(|| event.tenant())
            .unwrap_or(self.routing.tenant);
        let meta = meta.tenant(inherited);
        let (tenant, key) = meta.tenant_and_key(&event);
        let mut routing = self.executor.route(tenant, key, meta, self.routing.epoch);
        (routing.cause, routing.caused) = (self.routing.id, true);
        // Never refused, so a reservation is never given back.
        if meta.get_id().is_some()
            && self
                .executor
                .dedup
                .reserve(routing.tenant, routing.id)
                .is_none()
        {
            return routing.id;
        }
        self.executor
            .publish_from_worker(self.worker, routing, event)
    }
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("event_id", &self.routing.id)
            .field("tenant", &self.routing.tenant)
            .field("key", &self.routing.key)
            .field("attempt", &self.attempt)
            .finish()
    }
}
