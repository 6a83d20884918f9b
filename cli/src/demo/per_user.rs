//! Per-user state of a service: one entry per (tenant, user), since the
//! same user id in two tenants is two different users.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use diana_bus::TenantId;

/// A service's state of each user.
#[derive(Debug)]
pub struct PerUser<T>(Mutex<HashMap<(TenantId, i64), T>>);

impl<T> Default for PerUser<T> {
    fn default() -> Self {
        PerUser(Mutex::new(HashMap::new()))
    }
}

impl<T: Default> PerUser<T> {
    /// Runs `f` on the state of `user` of `tenant`, created on first use.
    pub fn with<R>(&self, tenant: TenantId, user: i64, f: impl FnOnce(&mut T) -> R) -> R {
        // A handler that panicked holding the lock left whole entries: the
        // state is still usable.
        let mut users = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(users.entry((tenant, user)).or_default())
    }

    /// Every user's state, by (tenant, user).
    pub fn snapshot(&self) -> Vec<((TenantId, i64), T)>
    where
        T: Clone,
    {
        let users = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = users.iter().map(|(k, v)| (*k, v.clone())).collect();
        all.sort_by_key(|((tenant, user), _)| (tenant.0, *user));
        all
    }
}

/// Counts events that arrive out of order for one user: each must carry
/// the number after the last one seen.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sequence {
    last: i64,
}

impl Sequence {
    /// Records `number`; false if it is not the one after the last.
    pub fn next(&mut self, number: i64) -> bool {
        let in_order = number == self.last + 1;
        self.last = number;
        in_order
    }
}
