//! What an event is and how it is routed: the [`Event`] trait, its identity
//! ([`EventId`]), its owner ([`TenantId`]) and the per-publish routing
//! overrides ([`Meta`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

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
/// are unique within the process and never 0.
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
}

/// The routing of one accepted event, as the workers see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Routing {
    pub(crate) id: EventId,
    /// The event whose handler published this one, or `EventId(0)`.
    pub(crate) cause: EventId,
    pub(crate) tenant: TenantId,
    pub(crate) key: u64,
    /// The flush epoch of the publish that started this chain of events
    /// (see `executor` for the flush protocol).
    pub(crate) epoch: u64,
}

impl Routing {
    /// Resolves meta over the event's own key and tenant.
    pub(crate) fn resolve<E: Event>(event: &E, meta: Meta, epoch: u64) -> Self {
        Routing {
            id: meta.id.unwrap_or_else(EventId::fresh),
            cause: EventId(0),
            tenant: meta.tenant.or_else(|| event.tenant()).unwrap_or_default(),
            key: meta.key.or_else(|| event.key()).unwrap_or(0),
            epoch,
        }
    }
}

impl EventId {
    /// A process-unique id without a shared write per call: each thread
    /// takes a 64-bit prefix from a global counter once, then counts
    /// locally in the low 64 bits.
    pub(crate) fn fresh() -> EventId {
        static NEXT_THREAD_PREFIX: AtomicU64 = AtomicU64::new(1);
        thread_local! {
            static LOCAL: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        }
        LOCAL.with(|local| {
            let (mut prefix, mut count) = local.get();
            if prefix == 0 || count == u64::MAX {
                prefix = NEXT_THREAD_PREFIX.fetch_add(1, Ordering::Relaxed);
                count = 0;
            }
            count += 1;
            local.set((prefix, count));
            EventId(((prefix as u128) << 64) | count as u128)
        })
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

/// The type's name without its module paths: `a::b::Foo<c::Bar>` gives
/// `Foo<c::Bar>` (generic arguments keep their paths).
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let head_end = full.find('<').unwrap_or(full.len());
    match full[..head_end].rfind("::") {
        Some(i) => &full[i + 2..],
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod inner {
        pub struct Plain;
        pub struct Generic<T>(pub T);
    }

    #[test]
    fn short_names_drop_the_module_path() {
        assert_eq!(short_type_name::<inner::Plain>(), "Plain");
        assert!(short_type_name::<inner::Generic<inner::Plain>>().starts_with("Generic<"));
        assert_eq!(short_type_name::<u64>(), "u64");
    }

    #[test]
    fn fresh_ids_are_unique_across_threads() {
        let mut ids: Vec<EventId> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1000).map(|_| EventId::fresh()).collect::<Vec<_>>()))
            .flat_map(|t| t.join().unwrap())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 4000);
        assert!(ids.iter().all(|id| id.0 != 0));
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
