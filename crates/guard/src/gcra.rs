//! The generic cell rate algorithm: each key remembers one time, its theoretical arrival time
//! (TAT). A request is allowed when the TAT it would push forward stays within one period of
//! now; the limit is `limit` requests per `period` with a burst of `limit`.

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

    /// Milliseconds between requests at the steady rate.
    pub fn emission_ms(&self) -> u64 {
        let period = u64::try_from(self.period.as_millis()).unwrap_or(u64::MAX);
        (period / u64::from(self.limit.max(1))).max(1)
    }

    /// The tolerance: how far ahead of now the TAT may run (one period).
    pub fn tolerance_ms(&self) -> u64 {
        u64::try_from(self.period.as_millis()).unwrap_or(u64::MAX)
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

/// One GCRA step at `now_ms` for a key whose stored TAT is `tat_ms` (none: never seen).
/// Returns the decision and the TAT to store (unchanged when refused).
pub fn step(rate: Rate, tat_ms: Option<u64>, now_ms: u64) -> (Decision, u64) {
    let t = rate.emission_ms();
    let tau = rate.tolerance_ms();
    let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
    let new_tat = tat + t;
    let ahead = new_tat - now_ms;
    if ahead > tau {
        let decision = Decision {
            allowed: false,
            limit: rate.limit,
            remaining: 0,
            reset_ms: tat - now_ms,
            retry_after_ms: ahead - tau,
        };
        return (decision, tat);
    }
    let remaining = u32::try_from((tau - ahead) / t)
        .unwrap_or(u32::MAX)
        .min(rate.limit);
    (
        Decision {
            allowed: true,
            limit: rate.limit,
            remaining,
            reset_ms: ahead,
            retry_after_ms: 0,
        },
        new_tat,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_limit_then_refusal_then_recovery_at_the_steady_rate() {
        let rate = Rate::per_minute(6); // one every 10 s, burst 6
        let mut tat = None;
        let now = 1_000_000;
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
        let (d, _) = step(rate, tat, now + 9_999);
        assert!(!d.allowed);
        let (d, t) = step(rate, tat, now + 10_000);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // After a full quiet period the whole burst is back.
        let (d, _) = step(rate, Some(t), now + 10_000 + 60_000);
        assert!(d.allowed);
        assert_eq!(d.remaining, 5);
    }
}
