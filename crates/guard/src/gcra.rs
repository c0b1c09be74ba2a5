//! The generic cell rate algorithm: each key remembers one time, its theoretical arrival time
//! (TAT), in microseconds. A request is allowed when the TAT it would push forward stays within
//! one period of now; the limit is `limit` requests per `period` with a burst of `limit`.

use std::time::Duration;

/// `limit` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period (also the burst).
    pub limit: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// `limit` per minute.
    pub const fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            period: Duration::from_secs(60),
        }
    }

    /// Microseconds between requests at the steady rate (microseconds, so that limits above a
    /// thousand a second stay exact).
    pub fn emission_us(&self) -> u64 {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        (period / u64::from(self.limit.max(1))).max(1)
    }

    /// The tolerance: how far ahead of now the TAT may run (one period), in microseconds.
    pub fn tolerance_us(&self) -> u64 {
        u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX)
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The limit (for `RateLimit-Limit`).
    pub limit: u32,
    /// Requests left in the current burst (for `RateLimit-Remaining`).
    pub remaining: u32,
    /// Milliseconds until the burst is whole again (for `RateLimit-Reset`).
    pub reset_ms: u64,
    /// Milliseconds to wait before retrying, when refused (for `Retry-After`).
    pub retry_after_ms: u64,
}

/// One GCRA step at `now_us` for a key whose stored TAT is `tat_us` (none: never seen).
/// Returns the decision and the TAT to store (unchanged when refused).
pub fn step(rate: Rate, tat_us: Option<u64>, now_us: u64) -> (Decision, u64) {
    let t = rate.emission_us();
    let tau = rate.tolerance_us();
    let tat = tat_us.unwrap_or(now_us).max(now_us);
    let new_tat = tat + t;
    let ahead = new_tat - now_us;
    if ahead > tau {
        let decision = Decision {
            allowed: false,
            limit: rate.limit,
            remaining: 0,
            reset_ms: (tat - now_us).div_ceil(1000),
            retry_after_ms: (ahead - tau).div_ceil(1000),
        };
        return (decision, tat);
    }
    let remaining = u32::try_from((tau - ahead) / t)
        .unwrap_or(u32::MAX)
        .min(rate.limit);
    let decision = Decision {
        allowed: true,
        limit: rate.limit,
        remaining,
        reset_ms: ahead.div_ceil(1000),
        retry_after_ms: 0,
    };
    (decision, new_tat)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    #[test]
    fn a_burst_of_limit_then_refusal_then_recovery_at_the_steady_rate() {
        let rate = Rate::per_minute(6); // one every 10 s, burst 6
        let mut tat = None;
        let now = 1_000 * SECOND;
        for i in 0..6 {
            let (d, t) = step(rate, tat, now);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 5 - i);
            tat = Some(t);
        }
        let (d, t) = step(rate, tat, now);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ms, 10_000);
        assert_eq!(t, tat.unwrap(), "a refusal does not consume");
        let (d, _) = step(rate, tat, now + 10 * SECOND - 1);
        assert!(!d.allowed);
        let (d, t) = step(rate, tat, now + 10 * SECOND);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // After a full quiet period the whole burst is back.
        let (d, _) = step(rate, Some(t), now + 70 * SECOND);
        assert!(d.allowed);
        assert_eq!(d.remaining, 5);
    }

    #[test]
    fn limits_above_a_thousand_a_second_are_exact() {
        let rate = Rate {
            limit: 5_000,
            period: Duration::from_secs(1),
        };
        let (mut tat, now) = (None, 1_000 * SECOND);
        let mut allowed = 0;
        for _ in 0..6_000 {
            let (d, t) = step(rate, tat, now);
            allowed += u32::from(d.allowed);
            tat = Some(t);
        }
        assert_eq!(
            allowed, 5_000,
            "the whole burst, and no more, within one instant"
        );
        // A steady 5,000 a second keeps passing: one every 200 µs.
        let (d, _) = step(rate, tat, now + 200);
        assert!(d.allowed);
    }
}
