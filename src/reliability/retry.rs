//! [`RetryPolicy`]: how often, and after what pause, a failed handler run
//! is tried again.

use std::time::Duration;

use crate::event::mix64;

/// How a subscription's failed runs are retried.
///
/// `max_attempts` counts every run, the first included: 5 means the first
/// try and up to 4 retries. Transient errors and panics are retried;
/// permanent errors ([`crate::HandlerError::permanent`]) never are. A run
/// that fails for the last time goes to the dead letters.
///
/// # Examples
///
/// ```
/// use diana_bus::RetryPolicy;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::exponential(5, Duration::from_millis(10)).cap(Duration::from_millis(50));
/// assert_eq!(policy.max_attempts(), 5);
/// assert_eq!(policy.delay_before(2), Duration::from_millis(10));
/// assert_eq!(policy.delay_before(3), Duration::from_millis(20));
/// assert_eq!(policy.delay_before(5), Duration::from_millis(50)); // capped
/// assert_eq!(RetryPolicy::default(), RetryPolicy::none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    backoff: Backoff,
    cap: Duration,
    jitter: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backoff {
    Fixed(Duration),
    Exponential(Duration),
}

/// The default cap on an exponential delay.
const DEFAULT_CAP: Duration = Duration::from_secs(30);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::none()
    }
}

impl RetryPolicy {
    /// No retries: a failed run goes straight to the dead letters.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            backoff: Backoff::Fixed(Duration::ZERO),
            cap: DEFAULT_CAP,
            jitter: false,
        }
    }

    /// Up to `max_attempts` runs in all, `delay` apart. 0 counts as 1.
    pub fn fixed(max_attempts: u32, delay: Duration) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            backoff: Backoff::Fixed(delay),
            cap: delay,
            jitter: false,
        }
    }

    /// Up to `max_attempts` runs in all; the first retry waits `base`, each
    /// later one twice the one before, up to the cap (30 s unless set with
    /// [`RetryPolicy::cap`]). 0 attempts counts as 1.
    pub fn exponential(max_attempts: u32, base: Duration) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            backoff: Backoff::Exponential(base),
            cap: DEFAULT_CAP,
            jitter: false,
        }
    }

    /// No delay longer than `cap`.
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// With jitter, each delay is drawn from its upper half (between half
    /// the delay and the whole), so that retries of many events failing
    /// together spread out.
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Runs in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether a run that was attempt number `attempt` may be followed by
    /// another.
    pub(crate) fn allows_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The pause before attempt number `attempt` (2 for the first retry),
    /// without jitter.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let delay = match self.backoff {
            Backoff::Fixed(delay) => delay,
            Backoff::Exponential(base) => {
                let doublings = attempt.saturating_sub(2).min(31);
                base.saturating_mul(1 << doublings)
            }
        };
        delay.min(self.cap)
    }

    /// [`RetryPolicy::delay_before`], with jitter if asked for; `seed`
    /// picks the jitter (the event id, so one event's retries are
    /// reproducible).
    pub(crate) fn pause_before(&self, attempt: u32, seed: u64) -> Duration {
        let delay = self.delay_before(attempt);
        if !self.jitter || delay.is_zero() {
            return delay;
        }
        let half = delay / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(mix64(seed ^ u64::from(attempt)) % nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn fixed_delays_are_constant_and_attempts_count_the_first_run() {
        let policy = RetryPolicy::fixed(3, 5 * MS);
        assert!(policy.allows_after(1) && policy.allows_after(2) && !policy.allows_after(3));
        assert_eq!(policy.delay_before(2), 5 * MS);
        assert_eq!(policy.delay_before(3), 5 * MS);
        assert_eq!(RetryPolicy::fixed(0, MS).max_attempts(), 1);
        assert!(!RetryPolicy::none().allows_after(1));
    }

    #[test]
    fn exponential_delays_double_up_to_the_cap() {
        let policy = RetryPolicy::exponential(10, 10 * MS).cap(100 * MS);
        let delays: Vec<_> = (2..=7).map(|a| policy.delay_before(a)).collect();
        assert_eq!(
            delays,
            [10 * MS, 20 * MS, 40 * MS, 80 * MS, 100 * MS, 100 * MS]
        );
        // no overflow however many attempts
        assert_eq!(
            RetryPolicy::exponential(u32::MAX, MS).delay_before(u32::MAX),
            DEFAULT_CAP
        );
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_varies() {
        let policy = RetryPolicy::fixed(5, 100 * MS).jitter(true);
        let pauses: Vec<_> = (0..50).map(|seed| policy.pause_before(2, seed)).collect();
        assert!(pauses.iter().all(|p| (50 * MS..=100 * MS).contains(p)));
        assert!(pauses.iter().any(|p| *p != pauses[0]));
        assert_eq!(RetryPolicy::fixed(5, 100 * MS).pause_before(2, 7), 100 * MS);
    }
}
