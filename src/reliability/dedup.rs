//! Idempotent republish: an event published with an id already seen in its
//! tenant's recent window is acknowledged but not handled again.
//!
//! Only publishes that carry an explicit id ([`crate::Meta::id`]) are
//! checked; generated ids are unique, so the hot path never comes here.
//! Each tenant has a window bounded by size (the oldest ids leave first)
//! and by time (ids older than the time-to-live leave on the next check),
//! behind one of 16 locks chosen by tenant.
//!
//! An id is *reserved* before its event is pushed and released again if
//! the push is refused, so a refused publish can be retried with the same
//! id. A duplicate that races the first publish of its id is acknowledged
//! as soon as the id is reserved: if that first publish is then refused
//! (a full ring under `Reject`, or a closed bus), its own caller gets the
//! event back and is the one to retry it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::event::{EventId, TenantId};
use crate::sync::{lock, AtomicU64, Mutex, Ordering};

const LOCKS: usize = 16;

#[derive(Default)]
struct Window {
    seen: HashSet<EventId>,
    order: VecDeque<(Instant, EventId)>,
}

/// See the module docs.
pub(crate) struct Dedup {
    tenants: [Mutex<HashMap<TenantId, Window>>; LOCKS],
    size: usize,
    ttl: Duration,
    duplicates: AtomicU64,
}

impl Dedup {
    pub(crate) fn new(size: usize, ttl: Duration) -> Self {
        Dedup {
            tenants: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            size,
            ttl,
            duplicates: AtomicU64::new(0),
        }
    }

    fn lock_for(&self, tenant: TenantId) -> &Mutex<HashMap<TenantId, Window>> {
        &self.tenants[tenant.stripe(LOCKS)]
    }

    /// Reserves `id` for `tenant`; false (and counted) if it was already
    /// in the window.
    pub(crate) fn reserve(&self, tenant: TenantId, id: EventId) -> bool {
        if self.size == 0 {
            return true;
        }
        let now = Instant::now();
        let mut tenants = lock(self.lock_for(tenant));
        let window = tenants.entry(tenant).or_default();
        while let Some(&(at, old)) = window.order.front() {
            if window.order.len() < self.size && now.duration_since(at) < self.ttl {
                break;
            }
            window.order.pop_front();
            window.seen.remove(&old);
        }
        if !window.seen.insert(id) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        window.order.push_back((now, id));
        true
    }

    /// Gives back a reservation whose publish was refused.
    pub(crate) fn release(&self, tenant: TenantId, id: EventId) {
        if self.size == 0 {
            return;
        }
        let mut tenants = lock(self.lock_for(tenant));
        if let Some(window) = tenants.get_mut(&tenant) {
            if window.seen.remove(&id) {
                window.order.retain(|&(_, seen)| seen != id);
            }
        }
    }

    /// Publishes acknowledged as duplicates.
    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup")
            .field("size", &self.size)
            .field("ttl", &self.ttl)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_remembered_per_tenant_within_size_and_time() {
        let dedup = Dedup::new(2, Duration::from_secs(60));
        let (a, b) = (TenantId(1), TenantId(2));
        assert!(dedup.reserve(a, EventId(1)));
        assert!(!dedup.reserve(a, EventId(1)));
        assert!(dedup.reserve(b, EventId(1)), "another tenant's window");
        assert!(dedup.reserve(a, EventId(2)));
        assert!(
            dedup.reserve(a, EventId(3)),
            "the window holds 2: id 1 leaves"
        );
        assert!(dedup.reserve(a, EventId(1)));
        assert_eq!(dedup.duplicates(), 1);

        let short = Dedup::new(100, Duration::ZERO);
        assert!(short.reserve(a, EventId(1)));
        assert!(short.reserve(a, EventId(1)), "expired at once");
    }

    #[test]
    fn a_released_reservation_can_be_taken_again() {
        let dedup = Dedup::new(10, Duration::from_secs(60));
        assert!(dedup.reserve(TenantId(0), EventId(5)));
        dedup.release(TenantId(0), EventId(5));
        assert!(dedup.reserve(TenantId(0), EventId(5)));
        assert!(!dedup.reserve(TenantId(0), EventId(5)));
    }
}
