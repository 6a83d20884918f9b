//! Idempotent republish: an event published with an id already seen in its
//! tenant's recent window is acknowledged but not handled again.
//!
//! Only publishes that carry an explicit id ([`crate::Meta::id`]) are
//! checked; generated ids are unique, so the hot path never comes here.
//! Each tenant has a window bounded by size (the oldest ids leave first)
//! and by time (ids older than the time-to-live leave on the tenant's next
//! check), behind one of 16 locks (stripes) chosen by tenant. A tenant
//! that falls quiet is not checked again, so each stripe is swept too:
//! once per [`SWEEP_EVERY`] reservations, or per as many as it has
//! windows if more, every window of the stripe lets go of its expired ids,
//! and empty windows go. That keeps the sweeps' cost per reservation
//! constant, and a stripe's memory to the ids still in their time.
//!
//! An id is *reserved* before its event is pushed and released again if
//! the push is refused, so a refused publish can be retried with the same
//! id; a release takes back only its own reservation, not a later one of
//! the same id (made after the first left the window while its publish
//! waited for room). A duplicate that races the first publish of its id
//! is acknowledged as soon as the id is reserved: if that first publish is
//! then refused (a full ring under `Reject`, or a closed bus), its own
//! caller gets the event back and is the one to retry it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::event::{EventId, TenantId};
use crate::sync::{lock, AtomicU64, Mutex, Ordering};

const LOCKS: usize = 16;

/// Reservations in a stripe between two sweeps of its quiet tenants, at
/// least: a sweep looks at every window of the stripe, so it comes at most
/// once per as many reservations as the stripe has windows.
const SWEEP_EVERY: usize = 1024;

/// The tenants of one lock.
#[derive(Default)]
struct Stripe {
    windows: HashMap<TenantId, Window>,
    /// Numbers the reservations, so that a release finds its own.
    next: u64,
    /// Reservations since the last sweep.
    since_sweep: usize,
}

/// One tenant's ids: each with its reservation's number, and in the order
/// they came.
#[derive(Default)]
struct Window {
    seen: HashMap<EventId, Reservation>,
    order: VecDeque<(Instant, EventId)>,
}

/// One reservation of an id, for [`Dedup::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refused publish gives its reservation back"]
pub(crate) struct Reservation(u64);

/// See the module docs.
pub(crate) struct Dedup {
    stripes: [Mutex<Stripe>; LOCKS],
    size: usize,
    ttl: Duration,
    duplicates: AtomicU64,
}

impl Dedup {
    pub(crate) fn new(size: usize, ttl: Duration) -> Self {
        Dedup {
            stripes: std::array::from_fn(|_| Mutex::new(Stripe::default())),
            size,
            ttl,
            duplicates: AtomicU64::new(0),
        }
    }

    fn stripe_of(&self, tenant: TenantId) -> &Mutex<Stripe> {
        &self.stripes[tenant.stripe(LOCKS)]
    }

    /// Reserves `id` for `tenant`; `None` (and counted) if it was already
    /// in the window.
    pub(crate) fn reserve(&self, tenant: TenantId, id: EventId) -> Option<Reservation> {
        if self.size == 0 {
            return Some(Reservation(0));
        }
        let now = Instant::now();
        let mut stripe = lock(self.stripe_of(tenant));
        let stripe = &mut *stripe;
        stripe.since_sweep += 1;
        if stripe.since_sweep >= SWEEP_EVERY.max(stripe.windows.len()) {
            stripe.since_sweep = 0;
            stripe.windows.retain(|_, window| {
                window.expire(now, self.ttl, usize::MAX);
                !window.order.is_empty()
            });
        }
        let window = stripe.windows.entry(tenant).or_default();
        window.expire(now, self.ttl, self.size - 1);
        if window.seen.contains_key(&id) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        stripe.next += 1;
        let reservation = Reservation(stripe.next);
        window.seen.insert(id, reservation);
        window.order.push_back((now, id));
        Some(reservation)
    }

    /// Gives back a reservation whose publish was refused, unless the id
    /// has left the window since and been reserved again (by another
    /// publish, which keeps it).
    pub(crate) fn release(&self, tenant: TenantId, id: EventId, reservation: Reservation) {
        if self.size == 0 {
            return;
        }
        let mut stripe = lock(self.stripe_of(tenant));
        if let Some(window) = stripe.windows.get_mut(&tenant) {
            if window.seen.get(&id) == Some(&reservation) {
                window.seen.remove(&id);
                window.order.retain(|&(_, seen)| seen != id);
            }
            if window.order.is_empty() {
                stripe.windows.remove(&tenant);
            }
        }
    }

    /// Publishes acknowledged as duplicates.
    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// The tenants with a window.
    #[cfg(test)]
    fn windows(&self) -> usize {
        self.stripes
            .iter()
            .map(|stripe| lock(stripe).windows.len())
            .sum()
    }
}

impl Window {
    /// Lets go of the ids older than `ttl`, and of the oldest until at most
    /// `keep` are left.
    fn expire(&mut self, now: Instant, ttl: Duration, keep: usize) {
        while let Some(&(at, old)) = self.order.front() {
            if self.order.len() <= keep && now.duration_since(at) < ttl {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
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
        assert!(dedup.reserve(a, EventId(1)).is_some());
        assert!(dedup.reserve(a, EventId(1)).is_none());
        assert!(
            dedup.reserve(b, EventId(1)).is_some(),
            "another tenant's window"
        );
        assert!(dedup.reserve(a, EventId(2)).is_some());
        assert!(
            dedup.reserve(a, EventId(3)).is_some(),
            "the window holds 2: id 1 leaves"
        );
        assert!(dedup.reserve(a, EventId(1)).is_some());
        assert_eq!(dedup.duplicates(), 1);

        let short = Dedup::new(100, Duration::ZERO);
        assert!(short.reserve(a, EventId(1)).is_some());
        assert!(short.reserve(a, EventId(1)).is_some(), "expired at once");
    }

    #[test]
    fn a_released_reservation_can_be_taken_again() {
        let dedup = Dedup::new(10, Duration::from_secs(60));
        let reservation = dedup.reserve(TenantId(0), EventId(5)).unwrap();
        dedup.release(TenantId(0), EventId(5), reservation);
        assert_eq!(dedup.windows(), 0, "an empty window is let go");
        assert!(dedup.reserve(TenantId(0), EventId(5)).is_some());
        assert!(dedup.reserve(TenantId(0), EventId(5)).is_none());
    }

    #[test]
    fn a_release_leaves_a_later_reservation_of_its_id_alone() {
        let dedup = Dedup::new(2, Duration::from_secs(60));
        let tenant = TenantId(3);
        let stale = dedup.reserve(tenant, EventId(5)).unwrap();
        // The window holds two ids: 7 pushes 5 out, and 5 comes back.
        assert!(dedup.reserve(tenant, EventId(6)).is_some());
        assert!(dedup.reserve(tenant, EventId(7)).is_some());
        assert!(dedup.reserve(tenant, EventId(5)).is_some());
        dedup.release(tenant, EventId(5), stale);
        assert!(
            dedup.reserve(tenant, EventId(5)).is_none(),
            "still reserved"
        );
    }

    #[test]
    fn the_windows_of_quiet_tenants_are_let_go_once_expired() {
        let ttl = Duration::from_millis(5);
        let dedup = Dedup::new(100, ttl);
        // Tenants in every stripe, then quiet.
        for tenant in 0..200 {
            assert!(dedup.reserve(TenantId(tenant), EventId(1)).is_some());
        }
        assert_eq!(dedup.windows(), 200);
        std::thread::sleep(2 * ttl);
        // One busy tenant per stripe.
        let busy: Vec<TenantId> = (1000..)
            .map(TenantId)
            .scan(std::collections::HashSet::new(), |stripes, tenant| {
                Some(stripes.insert(tenant.stripe(LOCKS)).then_some(tenant))
            })
            .flatten()
            .take(LOCKS)
            .collect();
        for &tenant in &busy {
            for id in 0..SWEEP_EVERY as u128 {
                let _ = dedup.reserve(tenant, EventId(id));
            }
        }
        assert_eq!(dedup.windows(), LOCKS, "only the busy tenants' windows");
    }
}
