//! The demo's trace: every step of a few users, one line each, the
//! interactions of other users where something went wrong (a bounded
//! number of them), and general lines; the rest is only in the summary.

use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use diana_bus::TenantId;

/// Which users are traced, and where the lines go (standard output).
#[derive(Debug)]
pub struct Trace {
    tenants: u64,
    traced: u64,
    notable: AtomicU64,
}

impl Trace {
    /// Traces the first `traced` users, taking tenants in turn: user 1 of
    /// tenants 1, 2, ..., then user 2 of each, and so on; and up to
    /// `notable` interactions of other users (see [`Trace::notable`]).
    pub fn new(tenants: u64, traced: u64, notable: u64) -> Self {
        Trace {
            tenants,
            traced,
            notable: AtomicU64::new(notable),
        }
    }

    /// Whether an interaction of an untraced user, where something went
    /// wrong, may be traced: true until the budget is spent.
    pub fn notable(&self) -> bool {
        self.notable
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }

    /// Whether `user` of `tenant` is traced.
    pub fn traced(&self, tenant: TenantId, user: i64) -> bool {
        let (Some(t), Ok(u)) = (tenant.0.checked_sub(1), u64::try_from(user - 1)) else {
            return false;
        };
        t < self.tenants && u.saturating_mul(self.tenants).saturating_add(t) < self.traced
    }

    /// One line about a user, if traced.
    pub fn user(&self, tenant: TenantId, user: i64, text: impl Display) {
        if self.traced(tenant, user) {
            self.say(format_args!("tenant {tenant} user {user} {text}"));
        }
    }

    /// Several lines about a user, kept together.
    pub fn user_lines(&self, tenant: TenantId, user: i64, lines: &[String]) {
        let mut out = std::io::stdout().lock();
        for line in lines {
            // A closed pipe (`diana-bus demo | head`) ends the trace, not
            // the demo.
            let _ = writeln!(out, "tenant {tenant} user {user} {line}");
        }
    }

    /// A line for everyone.
    pub fn say(&self, text: impl Display) {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
}
