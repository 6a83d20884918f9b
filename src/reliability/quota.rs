//! Per-tenant quotas: at most `limit` events of one tenant queued (accepted
//! and not yet taken up by a worker), so one noisy tenant cannot fill the
//! rings for everyone.
//!
//! Off by default, and then free. When on, a root publish takes one unit of
//! its tenant's budget under one of 64 locks (chosen by tenant) before it
//! pushes, and gives it back if the push is refused; workers count the
//! events they take up per tenant and give the units back once per batch,
//! then wake publishers waiting for budget. Follow-ups (`ctx.publish`)
//! count against the budget but are never refused, and a publish made on
//! a worker thread never waits for budget (the worker would wait for
//! itself): both may take a tenant over its limit.

use std::collections::HashMap;

use crate::event::TenantId;
use crate::park::WaitQueue;
use crate::sync::{fence, lock, Mutex, Ordering};

const LOCKS: usize = 64;

/// See the module docs.
pub(crate) struct TenantQuota {
    limit: u64,
    queued: [Mutex<HashMap<TenantId, u64>>; LOCKS],
    /// Publishers waiting for budget.
    pub(crate) space: WaitQueue,
}

/// Why a tenant's budget could not be taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Over {
    /// The tenant is at its limit.
    Limit,
    /// The bus closed while waiting.
    Closed,
}

impl TenantQuota {
    pub(crate) fn new(limit: u64) -> Self {
        TenantQuota {
            limit,
            queued: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            space: WaitQueue::default(),
        }
    }

    fn lock_for(&self, tenant: TenantId) -> &Mutex<HashMap<TenantId, u64>> {
        &self.queued[tenant.stripe(LOCKS)]
    }

    /// Takes one unit of `tenant`'s budget if it has one.
    pub(crate) fn try_take(&self, tenant: TenantId) -> bool {
        let mut queued = lock(self.lock_for(tenant));
        let count = queued.entry(tenant).or_default();
        if *count >= self.limit {
            return false;
        }
        *count += 1;
        true
    }

    /// Takes one unit even over the limit (follow-ups).
    pub(crate) fn take_anyway(&self, tenant: TenantId) {
        *lock(self.lock_for(tenant)).entry(tenant).or_default() += 1;
    }

    /// Takes one unit, waiting for one if need be, unless `closed` says the
    /// bus closed meanwhile.
    pub(crate) fn take_waiting(
        &self,
        tenant: TenantId,
        closed: impl Fn() -> bool,
    ) -> Result<(), Over> {
        self.space.wait_for(|| {
            if self.try_take(tenant) {
                Some(Ok(()))
            } else if closed() {
                Some(Err(Over::Closed))
            } else {
                None
            }
        })
    }

    /// Gives units back: `count` events of `tenant` left the queue (or were
    /// never accepted).
    pub(crate) fn give_back(&self, tenant: TenantId, count: u64) {
        let mut queued = lock(self.lock_for(tenant));
        if let Some(left) = queued.get_mut(&tenant) {
            *left = left.saturating_sub(count);
            if *left == 0 {
                queued.remove(&tenant);
            }
        }
    }

    /// Wakes publishers waiting for budget, after units were given back.
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        self.space.notify();
    }
}

impl std::fmt::Debug for TenantQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantQuota")
            .field("limit", &self.limit)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tenant_has_its_own_budget() {
        let quota = TenantQuota::new(2);
        let (a, b) = (TenantId(1), TenantId(2));
        assert!(quota.try_take(a) && quota.try_take(a));
        assert!(!quota.try_take(a));
        assert!(quota.try_take(b), "another tenant keeps flowing");
        quota.give_back(a, 1);
        assert!(quota.try_take(a));
        quota.take_anyway(a);
        assert!(!quota.try_take(a), "3 queued, over the limit of 2");
        quota.give_back(a, 2);
        assert!(quota.try_take(a));
        assert_eq!(quota.take_waiting(a, || true), Err(Over::Closed));
    }
}
