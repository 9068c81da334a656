//! When to try the home relay again: pure policy, clock and randomness passed in.
//!
//! NetBird's relay guard (shared/relay/client/guard.go) retries a lost home relay once after a
//! short settle window on the same server, then picks among all servers on an exponential ticker:
//! 2 s, ×2, ±50 % jitter, capped at 60 s. A failed start-up goes straight to the ticker. We add one
//! rule of our own: an event that can change the outcome (a new token, new servers, a network
//! change) retries at once, but keeps the failure count, so a stream of such events cannot turn
//! into a connection storm.

use std::time::Duration;

use crate::clock::Instant;

/// The schedule. `Default` is NetBird's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// After losing a working connection: the first retry, to the same server.
    pub settle: Duration,
    /// After the first failed attempt.
    pub initial: Duration,
    pub multiplier: u32,
    pub max: Duration,
    /// Each delay is scaled by a factor drawn from `1 ± jitter`.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            // NetBird's `verdictSettleWindow`: the disconnect often precedes the OS noticing.
            settle: Duration::from_millis(200),
            // NetBird's `exponentTicker`: InitialInterval 2 s, Multiplier 2.
            initial: Duration::from_secs(2),
            multiplier: 2,
            // NetBird's `defaultMaxBackoffInterval`.
            max: Duration::from_secs(60),
            // cenkalti/backoff's DefaultRandomizationFactor, which NetBird's ticker uses.
            jitter: 0.5,
        }
    }
}

/// Which servers the next attempt tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// Only the server we just lost (NetBird's quick reconnect keeps the advertised URL stable).
    Previous,
    /// Every configured server; the first to answer becomes home.
    All,
}

/// Reconnection state of the home relay.
#[derive(Debug, Clone)]
pub struct Reconnect {
    policy: BackoffPolicy,
    /// Failed attempts since the last success.
    failures: u32,
    next: Option<(Instant, Targets)>,
}

impl Reconnect {
    /// A first attempt is due at `now`.
    pub fn new(policy: BackoffPolicy, now: Instant) -> Self {
        Self {
            policy,
            failures: 0,
            next: Some((now, Targets::All)),
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the next attempt is due; `None` while connected or while an attempt runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next.map(|(at, _)| at)
    }

    /// Takes the attempt due at `now`, if any. Until its outcome is reported, nothing else is due.
    pub fn take_due(&mut self, now: Instant) -> Option<Targets> {
        match self.next {
            Some((at, targets)) if at <= now => {
                self.next = None;
                Some(targets)
            }
            Some(_) | None => None,
        }
    }

    pub fn on_connected(&mut self) {
        self.failures = 0;
        self.next = None;
    }

    /// A working connection was lost at `now`.
    pub fn on_lost(&mut self, now: Instant) {
        self.failures = 0;
        self.next = Some((now + self.policy.settle, Targets::Previous));
    }

    /// An attempt failed at `now`; `unit` is a random number in `[0, 1)` for the jitter.
    pub fn on_failed(&mut self, now: Instant, unit: f64) {
        self.failures = self.failures.saturating_add(1);
        let delay = self.delay(self.failures, unit);
        self.next = Some((now + delay, Targets::All));
    }

    /// Something changed that may let the next attempt succeed: try at `now` (unless connected
    /// or an attempt is running), keeping the failure count.
    pub fn kick(&mut self, now: Instant) {
        if let Some((at, _)) = &mut self.next {
            *at = (*at).min(now);
        }
    }

    /// The attempt under way was abandoned (it dials servers no longer wanted): the next one is
    /// due at `now`, on every server, keeping the failure count.
    pub fn restart(&mut self, now: Instant) {
        self.next = Some((now, Targets::All));
    }

    /// The delay after `failures` failed attempts, before jitter: initial × multiplier^(n-1),
    /// capped; then scaled by `1 + jitter × (2 × unit − 1)` and capped again.
    fn delay(&self, failures: u32, unit: f64) -> Duration {
        let p = &self.policy;
        let schedule = crate::backoff::Exponential {
            initial: p.initial,
            multiplier: f64::from(p.multiplier),
            jitter: p.jitter,
            max: p.max,
        };
        schedule.delay(failures.saturating_sub(1), unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_epoch(Duration::from_millis(ms))
    }

    const MID: f64 = 0.5;

    #[test]
    fn first_attempt_is_due_at_once() {
        let mut r = Reconnect::new(BackoffPolicy::default(), t(0));
        assert_eq!(r.take_due(t(0)), Some(Targets::All));
        assert_eq!(
            r.take_due(t(0)),
            None,
            "nothing else is due while the attempt runs"
        );
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn failures_back_off_exponentially_to_the_cap() {
        let mut r = Reconnect::new(BackoffPolicy::default(), t(0));
        let mut now = t(0);
        let mut delays = Vec::new();
        for _ in 0..8 {
            assert!(r.take_due(now).is_some());
            r.on_failed(now, MID);
            let next = r.poll_timeout().unwrap();
            delays.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn jitter_stays_within_half_either_way() {
        let r = Reconnect::new(BackoffPolicy::default(), t(0));
        assert_eq!(r.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(r.delay(1, 0.999_999).as_millis(), 2999);
        assert_eq!(
            r.delay(7, 0.999_999),
            Duration::from_secs(60),
            "the cap holds after jitter"
        );
    }

    #[test]
    fn a_lost_connection_retries_the_same_server_after_settling() {
        let mut r = Reconnect::new(BackoffPolicy::default(), t(0));
        r.take_due(t(0));
        r.on_connected();
        assert_eq!(r.poll_timeout(), None);
        r.on_lost(t(10_000));
        assert_eq!(r.take_due(t(10_199)), None);
        assert_eq!(r.take_due(t(10_200)), Some(Targets::Previous));
        r.on_failed(t(10_300), MID);
        assert_eq!(r.take_due(t(12_300)), Some(Targets::All));
    }

    #[test]
    fn kick_retries_now_but_keeps_the_failure_count() {
        let mut r = Reconnect::new(BackoffPolicy::default(), t(0));
        let mut now = t(0);
        for _ in 0..4 {
            r.take_due(now);
            r.on_failed(now, MID);
            now = r.poll_timeout().unwrap();
        }
        r.kick(t(100));
        assert_eq!(r.take_due(t(100)), Some(Targets::All));
        r.on_failed(t(100), MID);
        assert_eq!(
            r.poll_timeout(),
            Some(t(100) + Duration::from_secs(32)),
            "fifth failure: 32 s"
        );
    }

    #[test]
    fn kick_does_nothing_while_connected_or_attempting() {
        let mut r = Reconnect::new(BackoffPolicy::default(), t(0));
        r.take_due(t(0));
        r.kick(t(5));
        assert_eq!(r.poll_timeout(), None);
        r.on_connected();
        r.kick(t(6));
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn an_abandoned_attempt_is_followed_by_one_on_every_server_at_once() {
        let mut r = Reconnect::new(BackoffPolicy::default(), t(0));
        r.take_due(t(0));
        r.on_failed(t(1), 0.5);
        assert!(r.take_due(t(600_000)).is_some(), "the retry is due");
        assert_eq!(r.poll_timeout(), None, "attempting");
        r.restart(t(600_001));
        assert_eq!(r.take_due(t(600_001)), Some(Targets::All));
        assert_eq!(r.failures(), 1, "the failure count is kept");
    }

    #[test]
    fn an_hour_of_rejections_costs_a_bounded_number_of_attempts() {
        // A relay that refuses our token forever: no storm, about one attempt a minute.
        let mut r = Reconnect::new(BackoffPolicy::default(), t(0));
        let mut now = t(0);
        let mut attempts = 0;
        let end = t(3_600_000);
        while now < end {
            if r.take_due(now).is_some() {
                attempts += 1;
                r.on_failed(now, (attempts % 10) as f64 / 10.0);
            }
            now = r.poll_timeout().unwrap();
        }
        assert!((55..=90).contains(&attempts), "{attempts} attempts in an hour");
    }
}
