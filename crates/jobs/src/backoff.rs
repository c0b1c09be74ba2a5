//! How long a failed job waits before its next attempt: exponential backoff with full jitter.
//! Attempt `n` waits a uniformly random time in `[0, min(cap, base · 2^(n−1))]`, so retries of
//! many jobs that failed together (an SMTP outage) spread out instead of arriving together.

use std::time::Duration;

/// The retry policy's two numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling after the first failed attempt.
    pub base: Duration,
    /// The largest ceiling, whatever the attempt.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(60 * 60),
        }
    }
}

impl Backoff {
    /// The longest wait after failed attempt `attempt` (from 1): `base · 2^(attempt−1)`, at
    /// most `cap`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let base = u64::try_from(self.base.as_millis()).unwrap_or(u64::MAX);
        let cap = u64::try_from(self.cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(base.saturating_mul(factor).min(cap))
    }

    /// The wait after failed attempt `attempt` for a draw `unit` in `[0, 1]` (clamped): that
    /// fraction of [`Backoff::ceiling`], rounded up to the millisecond (so only a draw of
    /// exactly 0 retries at once).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let ceiling = self.ceiling(attempt).as_millis() as f64;
        Duration::from_millis((ceiling * unit).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    impl Backoff {
        /// The wait after failed attempt `attempt`, drawn from `rng`.
        fn delay_from(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
            self.delay(attempt, rng.random_range(0.0..=1.0))
        }
    }

    fn policy() -> Backoff {
        Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_ceiling_doubles_per_attempt_up_to_the_cap() {
        let b = policy();
        let ceilings: Vec<u64> = (1..=11).map(|a| b.ceiling(a).as_secs()).collect();
        assert_eq!(
            ceilings,
            vec![10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        // No overflow however many attempts.
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(3600));
        assert_eq!(b.ceiling(0), Duration::from_secs(10));
    }

    #[test]
    fn a_draw_picks_its_fraction_of_the_ceiling() {
        let b = policy();
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(40));
        assert_eq!(b.delay(3, 0.25), Duration::from_secs(10));
        assert_eq!(b.delay(20, 0.5), Duration::from_secs(1800));
        // Out-of-range draws are clamped, never a longer wait than the ceiling.
        assert_eq!(b.delay(3, 7.0), Duration::from_secs(40));
        assert_eq!(b.delay(3, -1.0), Duration::ZERO);
        assert_eq!(b.delay(3, f64::NAN), Duration::ZERO);
    }

    /// Full jitter: with a seeded generator, every wait lies within `[0, ceiling]`, the waits
    /// of one attempt differ (they spread over the whole range), and the range grows.
    #[test]
    fn waits_are_jittered_within_bounds_that_grow() {
        let b = policy();
        let mut rng = rand::rngs::StdRng::seed_from_u64(33);
        let mut previous_max = Duration::ZERO;
        for attempt in 1..=8 {
            let ceiling = b.ceiling(attempt);
            let draws: Vec<Duration> = (0..500).map(|_| b.delay_from(attempt, &mut rng)).collect();
            assert!(draws.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            let (min, max) = (
                draws.iter().min().copied().unwrap_or_default(),
                draws.iter().max().copied().unwrap_or_default(),
            );
            assert!(min < ceiling / 4, "attempt {attempt}: spread low ({min:?})");
            assert!(
                max > ceiling * 3 / 4,
                "attempt {attempt}: spread high ({max:?})"
            );
            assert!(max > previous_max, "attempt {attempt}: the range grows");
            previous_max = max;
        }
    }
}
