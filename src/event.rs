//! What an event is and how it is routed: the [`Event`] trait, its identity
//! ([`EventId`]), its owner ([`TenantId`]) and the per-publish routing
//! overrides ([`Meta`]).

use crate::place::Place;

/// A value that can travel through the bus.
///
/// Every item has a default, so `impl Event for MyEvent {}` is enough.
///
/// # Examples
///
/// ```
/// use diana_bus::{Event, TenantId};
///
/// struct PointsAwarded { user_id: u64, points: u32 }
///
/// impl Event for PointsAwarded {
///     // one user's events keep their order
///     fn key(&self) -> Option<u64> { Some(self.user_id) }
/// }
///
/// let e = PointsAwarded { user_id: 7, points: 5 };
/// assert_eq!(e.name(), "PointsAwarded");
/// assert_eq!(e.key(), Some(7));
/// assert_eq!(e.tenant(), None::<TenantId>);
/// ```
pub trait Event: Send + Sync + 'static {
    /// The event's name in logs, metrics and dead letters: by default the
    /// type's name without its module path.
    fn name(&self) -> &'static str {
        short_type_name::<Self>()
    }

    /// The ordering key (for example a user id): events with the same
    /// tenant and key are handled in publish order. `None` means key 0.
    fn key(&self) -> Option<u64> {
        None
    }

    /// The tenant the event belongs to; `None` means [`TenantId::DEFAULT`].
    fn tenant(&self) -> Option<TenantId> {
        None
    }
}

/// The unique identity of one published event.
///
/// Given by the publisher through [`Meta::id`], or generated: generated ids
/// are unique within the process and never 0 (they encode where the bus
/// put the event, which is how [`Meta::after`] finds it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct EventId(pub u128);

/// The tenant (bot, workspace, customer) an event belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct TenantId(pub u64);

impl TenantId {
    /// The tenant of events published without one.
    pub const DEFAULT: TenantId = TenantId(0);
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Per-publish routing and identity, overriding what the event says of
/// itself.
///
/// # Examples
///
/// ```
/// use diana_bus::{EventId, Meta, TenantId};
///
/// let meta = Meta::new().tenant(TenantId(7)).key(42).id(EventId(1));
/// assert_eq!(meta.get_tenant(), Some(TenantId(7)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    tenant: Option<TenantId>,
    key: Option<u64>,
    id: Option<EventId>,
    after: Option<EventId>,
}

impl Meta {
    /// No overrides: the event's own key and tenant, a fresh id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes the event for this tenant.
    pub fn tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Orders the event by this key instead of `Event::key`.
    pub fn key(mut self, key: u64) -> Self {
        self.key = Some(key);
        self
    }

    /// Gives the event this id instead of a generated one.
    pub fn id(mut self, id: EventId) -> Self {
        self.id = Some(id);
        self
    }

    /// Holds the event until the event `id` is fully handled: every one of
    /// its handlers succeeded or was dead-lettered, retries included. The
    /// wait blocks no worker, and later events of the same (tenant, key)
    /// stay behind the held one, in order.
    ///
    /// Dependencies look back: `id` must name an event accepted before this
    /// publish (by any thread, on any shard). An id that names no event in
    /// flight at that moment, because it is unknown, not yet published, or
    /// already fully handled, is satisfied at once. Generated ids are
    /// recognised for as long as the bus lives; explicit ids ([`Meta::id`])
    /// while their event is in flight, and within the dependent's tenant
    /// (as deduplication, which lets tenants use the same ids).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use diana_bus::{Bus, Context, Event, HandlerResult, Meta};
    ///
    /// struct Step(&'static str);
    /// impl Event for Step {}
    ///
    /// let bus = Bus::builder().workers(2).build()?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// bus.subscribe(move |s: &Step, _: &Context| -> HandlerResult {
    ///     log.lock().unwrap().push(s.0);
    ///     Ok(())
    /// });
    /// // Different keys: different shards, possibly different workers.
    /// let first = bus.publish_with(Step("account created"), Meta::new().key(1))?;
    /// bus.publish_with(Step("welcome sent"), Meta::new().key(2).after(first))?;
    /// bus.flush();
    /// assert_eq!(*seen.lock().unwrap(), ["account created", "welcome sent"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn after(mut self, id: EventId) -> Self {
        self.after = Some(id);
        self
    }

    /// The tenant set by [`Meta::tenant`].
    pub fn get_tenant(&self) -> Option<TenantId> {
        self.tenant
    }

    /// The key set by [`Meta::key`].
    pub fn get_key(&self) -> Option<u64> {
        self.key
    }

    /// The id set by [`Meta::id`].
    pub fn get_id(&self) -> Option<EventId> {
        self.id
    }

    /// The dependency set by [`Meta::after`].
    pub fn get_after(&self) -> Option<EventId> {
        self.after
    }

    /// The tenant and key of a publish of `event` with this meta: the
    /// event's own where the meta sets none. All that routing needs of the
    /// event's type, taken before the type is erased (see [`Routing::of`]).
    #[inline]
    pub(crate) fn tenant_and_key<E: Event>(&self, event: &E) -> (TenantId, u64) {
        (
            self.tenant.or_else(|| event.tenant()).unwrap_or_default(),
            self.key.or_else(|| event.key()).unwrap_or(0),
        )
    }
}

/// The routing of one accepted event, as the workers see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Routing {
    /// Explicit, or made from `place` when the event is accepted.
    pub(crate) id: EventId,
    /// Whether `id` came from [`Meta::id`].
    pub(crate) explicit: bool,
    /// Where the event was accepted ([`Place::UNSET`] before).
    pub(crate) place: Place,
    /// The place of the event this one waits for (see [`Meta::after`]).
    pub(crate) after: Option<Place>,
    /// The event whose handler published this one, if `caused`.
    pub(crate) cause: EventId,
    /// Whether a handler's event caused this one (every id, 0 included,
    /// can be an event's, see [`Meta::id`]). A flag beside `cause` rather
    /// than an `Option` of it, which would take `Routing`, built and
    /// copied by every publish, from 96 bytes to 112.
    pub(crate) caused: bool,
    pub(crate) tenant: TenantId,
    pub(crate) key: u64,
    /// The flush epoch of the publish that started this chain of events
    /// (see `executor` for the flush protocol).
    pub(crate) epoch: u64,
}

impl Routing {
    /// Resolves meta over the event's own key and tenant; the place, and
    /// with it a generated id, comes with the push, and the dependency is
    /// the executor's to resolve.
    pub(crate) fn resolve<E: Event>(event: &E, meta: Meta, epoch: u64) -> Self {
        let (tenant, key) = meta.tenant_and_key(event);
        Self::of(tenant, key, meta, epoch)
    }

    /// [`Routing::resolve`] once the event's type is erased: `tenant` and
    /// `key` are [`Meta::tenant_and_key`]'s for the event.
    #[inline]
    pub(crate) fn of(tenant: TenantId, key: u64, meta: Meta, epoch: u64) -> Self {
        Routing {
            id: meta.id.unwrap_or_default(),
            explicit: meta.id.is_some(),
            place: Place::UNSET,
            after: None,
            cause: EventId(0),
            caused: false,
            tenant,
            key,
            epoch,
        }
    }
}

/// splitmix64's finaliser: spreads any 64-bit value over all 64 bits. Used
/// wherever the bus turns ids, keys or tenants into shard, lock or jitter
/// choices.
#[inline]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl TenantId {
    /// Which of `stripes` locks guards this tenant's entry in a striped
    /// table.
    pub(crate) fn stripe(self, stripes: usize) -> usize {
        (mix64(self.0) % stripes as u64) as usize
    }
}

/// The type's name without its path: what follows the last `::` outside
/// any brackets, so `a::b::Foo<c::Bar>` gives `Foo<c::Bar>` (generic
/// arguments keep their paths), and a type declared in a generic impl's
/// method, `a::Holder<_>::f::Opened`, gives `Opened`.
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let bytes = full.as_bytes();
    let (mut depth, mut start) = (0usize, 0);
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'<' | b'(' | b'[' => depth += 1,
            // The arrow of a fn type closes nothing.
            b'>' if at > 0 && bytes[at - 1] == b'-' => {}
            b'>' | b')' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && bytes.get(at + 1) == Some(&b':') => {
                start = at + 2;
                at += 1;
            }
            _ => {}
        }
        at += 1;
    }
    &full[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    mod inner {
        pub struct Plain;
        pub struct Generic<T>(pub T);
    }

    struct Holder<T>(T);
    impl<T> Holder<T> {
        fn local_name() -> &'static str {
            struct Opened;
            short_type_name::<Opened>()
        }
    }

    #[test]
    fn short_names_drop_the_path() {
        assert_eq!(short_type_name::<inner::Plain>(), "Plain");
        assert!(short_type_name::<inner::Generic<inner::Plain>>().starts_with("Generic<"));
        assert_eq!(short_type_name::<u64>(), "u64");
        assert_eq!(Holder::<u8>::local_name(), "Opened");
        for (name, brackets) in [
            (
                short_type_name::<inner::Generic<fn() -> inner::Plain>>(),
                "Generic<fn() -> ",
            ),
            (
                short_type_name::<inner::Generic<(u8, [u8; 2])>>(),
                "Generic<(u8, [u8; 2])>",
            ),
            (
                short_type_name::<inner::Generic<inner::Generic<u8>>>(),
                "Generic<",
            ),
        ] {
            assert!(name.starts_with(brackets), "{name}");
        }
    }

    #[test]
    fn meta_overrides_the_event() {
        struct Keyed;
        impl Event for Keyed {
            fn key(&self) -> Option<u64> {
                Some(3)
            }
            fn tenant(&self) -> Option<TenantId> {
                Some(TenantId(9))
            }
        }
        let own = Routing::resolve(&Keyed, Meta::new(), 0);
        assert_eq!((own.key, own.tenant), (3, TenantId(9)));
        let over = Routing::resolve(
            &Keyed,
            Meta::new().key(5).tenant(TenantId(1)).id(EventId(8)),
            0,
        );
        assert_eq!(
            (over.key, over.tenant, over.id),
            (5, TenantId(1), EventId(8))
        );
    }
}
