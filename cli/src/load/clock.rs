//! The run clock: nanoseconds since a process-wide base instant, so a
//! publish time fits in a [`super::Message`] and any thread can subtract it
//! from its own reading.

use std::sync::OnceLock;
use std::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the base instant, plus one: never 0, which
/// [`super::Message::stamp`] keeps for "not sampled".
#[inline]
pub fn now() -> u64 {
    let base = BASE.get_or_init(Instant::now);
    base.elapsed().as_nanos() as u64 + 1
}

/// Nanoseconds from `stamp` (an earlier [`now`]) until now.
#[inline]
pub fn since(stamp: u64) -> u64 {
    now().saturating_sub(stamp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps_are_never_zero_and_move_forward() {
        let first = super::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(first > 0);
        assert!(super::since(first) >= 2_000_000);
    }
}
