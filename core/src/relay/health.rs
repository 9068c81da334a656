//! Is the relay connection alive? Pure policy: the shell reports what it hears and asks at `now`.
//!
//! NetBird's relay server sends a HealthCheck every 25 s (`defaultHealthCheckInterval`) and its
//! client gives up after 35 s without one (`defaultHeartbeatTimeout` = interval + 10 s). We count
//! any message as a sign of life, since a server that forwards our traffic is alive, and declare
//! the connection dead after 35 s of silence.

use std::time::Duration;

use crate::clock::Instant;

/// NetBird's `defaultHeartbeatTimeout` (healthcheck/receiver.go): its 25 s interval plus 10 s.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(35);

#[derive(Debug, Clone, Copy)]
pub struct HealthWatch {
    last_heard: Instant,
    timeout: Duration,
}

impl HealthWatch {
    /// A connection that was just established at `now`.
    pub fn new(now: Instant, timeout: Duration) -> Self {
        Self {
            last_heard: now,
            timeout,
        }
    }

    /// Something arrived from the server.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    /// When the connection will be dead if nothing arrives before.
    pub fn deadline(&self) -> Instant {
        self.last_heard + self.timeout
    }

    pub fn is_dead(&self, now: Instant) -> bool {
        now >= self.deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Instant {
        Instant::from_epoch(Duration::from_secs(s))
    }

    #[test]
    fn silence_for_the_timeout_is_death() {
        let h = HealthWatch::new(t(100), HEALTH_TIMEOUT);
        assert!(!h.is_dead(t(134)));
        assert!(h.is_dead(t(135)));
    }

    #[test]
    fn each_message_restarts_the_count() {
        let mut h = HealthWatch::new(t(0), HEALTH_TIMEOUT);
        for s in (25..=250).step_by(25) {
            assert!(!h.is_dead(t(s)));
            h.heard(t(s));
        }
        assert_eq!(h.deadline(), t(285));
    }

    #[test]
    fn a_late_report_does_not_move_the_clock_back() {
        let mut h = HealthWatch::new(t(50), HEALTH_TIMEOUT);
        h.heard(t(10));
        assert_eq!(h.deadline(), t(85));
    }

    #[test]
    fn a_night_asleep_counts_as_silence() {
        // The clock counts suspend, so a phone that slept an hour finds its connection dead.
        let h = HealthWatch::new(t(0), HEALTH_TIMEOUT);
        assert!(h.is_dead(t(3600)));
    }
}
