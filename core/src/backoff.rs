//! Exponential backoff with jitter and a cap, as a pure function of the attempt number. Every
//! retry loop here (signal reconnects, the relay's home reconnects, the guard's offers) has this
//! shape; each keeps its own schedule and counts its own attempts.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exponential {
    /// The wait before the first retry, before jitter.
    pub initial: Duration,
    /// Each retry waits this many times longer than the one before.
    pub multiplier: f64,
    /// Each wait is scaled by a factor drawn from `1 ± jitter` (0 to 1).
    pub jitter: f64,
    /// No wait is longer, jitter included.
    pub max: Duration,
}

impl Exponential {
    /// The wait before retry number `attempt` (0 for the first), `unit` being a random draw
    /// from `[0, 1)`: `initial × multiplier^attempt`, capped, scaled by the jitter, capped again.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = i32::try_from(attempt.min(64)).unwrap_or(64);
        let growth = if self.multiplier.is_finite() {
            self.multiplier.max(1.0)
        } else {
            1.0
        };
        let base = self.initial.as_secs_f64() * growth.powi(exponent);
        let base = base.min(self.max.as_secs_f64());
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let scaled = base * (1.0 + jitter * (2.0 * unit - 1.0));
        Duration::from_secs_f64(scaled.clamp(0.0, self.max.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: Exponential = Exponential {
        initial: Duration::from_secs(2),
        multiplier: 2.0,
        jitter: 0.5,
        max: Duration::from_secs(60),
    };

    #[test]
    fn grows_by_the_multiplier_up_to_the_cap() {
        let mid: Vec<u64> = (0..8).map(|a| E.delay(a, 0.5).as_secs()).collect();
        assert_eq!(mid, [2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn jitter_spans_its_range_and_never_passes_the_cap() {
        assert_eq!(E.delay(0, 0.0), Duration::from_secs(1));
        assert_eq!(E.delay(0, 1.0), Duration::from_secs(3));
        assert_eq!(E.delay(10, 1.0), Duration::from_secs(60));
        assert_eq!(E.delay(u32::MAX, f64::NAN), Duration::from_secs(60));
    }
}
