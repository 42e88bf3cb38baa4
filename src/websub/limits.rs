//! Request rates (S3, S4, G7): a keyed token bucket per client address, callback host and
//! topic, so nobody can make the hub flood a callback with verification GETs or fetch a
//! topic in a loop. One node's memory; idle keys are forgotten by the sweep.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct RateLimits {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl RateLimits {
    /// `per_second` requests per key, in bursts of as many; 0 turns limiting off.
    pub fn new(per_second: u32) -> Self {
        RateLimits {
            limiter: NonZeroU32::new(per_second).map(|n| RateLimiter::keyed(Quota::per_second(n))),
        }
    }

    /// Counts one request against every key; on refusal, the whole seconds to wait.
    pub fn check(&self, keys: &[String]) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        for key in keys {
            if let Err(not_until) = limiter.check_key(key) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(wait.as_secs() + 1);
            }
        }
        Ok(())
    }

    /// Drops the state of keys that are back to a full bucket.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_rate_is_refused_and_others_are_not() {
        let limits = RateLimits::new(3);
        let a = ["ip:1".to_string()];
        for _ in 0..3 {
            assert_eq!(limits.check(&a), Ok(()));
        }
        assert!(matches!(limits.check(&a), Err(s) if s >= 1));
        assert_eq!(limits.check(&["ip:2".to_string()]), Ok(()));
        // A request is refused when any of its keys is over.
        assert!(limits.check(&["ip:3".to_string(), "ip:1".to_string()]).is_err());
        let off = RateLimits::new(0);
        for _ in 0..1000 {
            assert_eq!(off.check(&a), Ok(()));
        }
    }
}
