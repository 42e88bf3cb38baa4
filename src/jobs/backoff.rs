//! The one retry rule: exponential from a base, capped, with random jitter so retries of
//! many jobs that failed together spread out. Pure: the randomness is an argument.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry (attempt 1), before jitter.
    pub base: Duration,
    /// No delay is longer than this.
    pub cap: Duration,
    /// The share of each delay that is random, in percent (0: exact, 50: from half to all).
    pub jitter_percent: u8,
}

impl Backoff {
    /// The delay before retry `attempt` (1 is the first retry; 0 is no retry: no delay).
    /// `random` is any uniformly random number (see [`jitter_from`]).
    pub fn delay(&self, attempt: u32, random: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let base = self.base.as_micros().min(u64::MAX as u128) as u64;
        let cap = self.cap.as_micros().min(u64::MAX as u128) as u64;
        let exp = base.saturating_mul(1u64 << (attempt - 1).min(40)).min(cap);
        let spread = exp / 100 * u64::from(self.jitter_percent.min(100));
        let jitter = if spread == 0 {
            0
        } else {
            u64::from(random) % (spread + 1)
        };
        Duration::from_micros(exp - spread + jitter)
    }

    /// [`Backoff::delay`] with fresh randomness.
    pub fn delay_now(&self, attempt: u32) -> Duration {
        self.delay(attempt, jitter_from())
    }
}

/// A random number for [`Backoff::delay`] (0 if the system has no randomness to give).
pub fn jitter_from() -> u32 {
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    u32::from_le_bytes(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXACT: Backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(10),
        jitter_percent: 0,
    };

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        assert_eq!(EXACT.delay(0, 7), Duration::ZERO);
        assert_eq!(EXACT.delay(1, 7), Duration::from_millis(100));
        assert_eq!(EXACT.delay(2, 7), Duration::from_millis(200));
        assert_eq!(EXACT.delay(5, 7), Duration::from_millis(1600));
        assert_eq!(EXACT.delay(8, 7), Duration::from_secs(10));
        assert_eq!(EXACT.delay(u32::MAX, 7), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_its_share() {
        let b = Backoff {
            jitter_percent: 50,
            ..EXACT
        };
        for random in [0, 1, 12345, u32::MAX / 2, u32::MAX] {
            let d = b.delay(3, random);
            assert!(
                d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
                "{d:?}"
            );
        }
        assert_eq!(b.delay(3, 0), Duration::from_millis(200));
        assert_ne!(b.delay(3, 0), b.delay(3, 99_999), "the random part varies the delay");
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let b = Backoff {
            base: Duration::from_secs(u64::MAX / 4),
            cap: Duration::MAX,
            jitter_percent: 100,
        };
        assert!(b.delay(64, u32::MAX) <= Duration::from_micros(u64::MAX));
    }
}
