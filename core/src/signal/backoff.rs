//! When to try the signal server again: NetBird's signal client `defaultBackoff`
//! (shared/signal/client/grpc.go), as a pure policy. Time and randomness come in from outside.

use std::time::Duration;

use rand::Rng;

use crate::clock::Instant;

/// NetBird's `InitialInterval` for the signal stream.
pub const INITIAL_INTERVAL: Duration = Duration::from_millis(800);
/// NetBird's `Multiplier`.
pub const MULTIPLIER: f64 = 1.7;
/// NetBird's `RandomizationFactor`: a delay falls anywhere in `interval × [1 − f, 1 + f]`.
pub const RANDOMIZATION: f64 = 1.0;
/// NetBird's `MaxInterval`; peerlink also caps the randomized delay with it (NetBird's can
/// reach twice this), so a phone never waits more than 10 s for signal after the network
/// returns.
pub const MAX_INTERVAL: Duration = Duration::from_secs(10);

/// Exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
}

/// NetBird's signal schedule.
const SCHEDULE: crate::backoff::Exponential = crate::backoff::Exponential {
    initial: INITIAL_INTERVAL,
    multiplier: MULTIPLIER,
    jitter: RANDOMIZATION,
    max: MAX_INTERVAL,
};

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self { failures: 0 }
    }

    /// Records a failed attempt at `now` and says when to try again.
    pub fn next_retry(&mut self, now: Instant, rng: &mut impl Rng) -> Instant {
        now + self.next_delay(rng)
    }

    /// Records a failed attempt and returns the delay before the next one.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let delay = SCHEDULE.delay(self.failures, rng.gen());
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Failed attempts since the last reset.
    /// The interval the next delay is drawn around (before jitter).
    pub fn interval(&self) -> Duration {
        SCHEDULE.delay(self.failures, 0.5)
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts over after a success (NetBird resets after every connected stream).
    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn t0() -> Instant {
        Instant::from_epoch(Duration::from_secs(1000))
    }

    #[test]
    fn intervals_grow_by_1_7_up_to_10_s() {
        let mut b = Backoff::new();
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = vec![];
        for _ in 0..8 {
            seen.push(b.interval().as_millis());
            b.next_delay(&mut rng);
        }
        assert_eq!(seen, [800, 1360, 2312, 3930, 6681, 10000, 10000, 10000]);
        assert_eq!(b.failures(), 8);
    }

    #[test]
    fn every_delay_is_within_jitter_bounds_and_never_above_max() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let mut b = Backoff::new();
            for _ in 0..20 {
                let interval = b.interval();
                let d = b.next_delay(&mut rng);
                assert!(
                    d <= interval * 2 + Duration::from_nanos(1),
                    "{d:?} > 2 × {interval:?}"
                );
                assert!(d <= MAX_INTERVAL);
            }
        }
    }

    #[test]
    fn jitter_spreads_delays_around_the_interval() {
        // Full jitter: the mean of the first delay is the initial interval; clients that failed
        // together do not come back together.
        let mut rng = StdRng::seed_from_u64(3);
        let delays: Vec<Duration> = (0..2000).map(|_| Backoff::new().next_delay(&mut rng)).collect();
        let mean = delays.iter().sum::<Duration>() / 2000;
        assert!(
            mean > Duration::from_millis(740) && mean < Duration::from_millis(860),
            "mean {mean:?}"
        );
        assert!(delays.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(1400)));
    }

    #[test]
    fn retry_time_is_now_plus_delay_and_reset_starts_over() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut b = Backoff::new();
        for _ in 0..6 {
            let at = b.next_retry(t0(), &mut rng);
            assert!(at >= t0() && at <= t0() + MAX_INTERVAL);
        }
        b.reset();
        assert_eq!((b.interval(), b.failures()), (INITIAL_INTERVAL, 0));
    }
}
