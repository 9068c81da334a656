//! The guard: when to (re)send an offer to a peer. Pure: it takes `now` and events and says when
//! to act; the connection shell owns the timer. Values from NetBird's guard (DESIGN 4).

use std::time::Duration;

use rand::Rng;

use crate::clock::Instant;

/// NetBird's guard: the first retry waits 3 s.
const FIRST_RETRY: Duration = Duration::from_secs(3);
/// NetBird's guard: retries after an event (path lost, signal back, network back) start at 800 ms.
const AFTER_EVENT: Duration = Duration::from_millis(800);
/// NetBird's guard: each retry doubles the wait.
const MULTIPLIER: f64 = 2.0;
/// NetBird's guard: ±10 % jitter, so that peers do not retry in lockstep.
const JITTER: f64 = 0.10;
/// NetBird's guard: the cap is drawn per peer between 30 and 45 s.
const CAP_RANGE: (u64, u64) = (30, 45);
/// NetBird's guard: with relay up and ICE down, at most three ICE retries…
const ICE_RETRIES_WITH_RELAY: u32 = 3;
/// …then one an hour.
const ICE_RETRY_WITH_RELAY_SLOW: Duration = Duration::from_secs(3600);

/// What the guard knows of one peer's connection.
#[derive(Debug, Clone)]
pub struct OfferGuard {
    cap: Duration,
    /// The first wait of the current run of retries: 3 s, or 800 ms after an event.
    first_wait: Duration,
    /// Retries in the current run.
    attempt: u32,
    /// When to offer next; `None` while nothing needs doing.
    due: Option<Instant>,
    /// ICE retries spent while the relay carried traffic.
    ice_retries: u32,
}

/// The state of the peer's paths, as the guard sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paths {
    pub relay_up: bool,
    pub ice_up: bool,
}

impl OfferGuard {
    /// A guard that wants an offer sent at once.
    pub fn new(now: Instant, rng: &mut impl Rng) -> Self {
        let cap = Duration::from_secs(rng.gen_range(CAP_RANGE.0..=CAP_RANGE.1));
        Self {
            cap,
            first_wait: FIRST_RETRY,
            attempt: 0,
            due: Some(now),
            ice_retries: 0,
        }
    }

    /// When the shell should call [`OfferGuard::poll_offer`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due
    }

    /// True when an offer is due at `now`; schedules the retry that follows unless something
    /// (an answer, a path) cancels it first.
    pub fn poll_offer(&mut self, now: Instant, paths: Paths, rng: &mut impl Rng) -> bool {
        let Some(due) = self.due else { return false };
        if now < due {
            return false;
        }
        if paths.ice_up {
            self.due = None;
            return false;
        }
        let wait = if paths.relay_up {
            self.ice_retries += 1;
            if self.ice_retries > ICE_RETRIES_WITH_RELAY {
                ICE_RETRY_WITH_RELAY_SLOW
            } else {
                self.backoff(rng)
            }
        } else {
            self.backoff(rng)
        };
        self.due = Some(now + wait);
        true
    }

    /// The best path is up: nothing to retry.
    pub fn on_connected(&mut self) {
        self.due = None;
        self.first_wait = FIRST_RETRY;
        self.attempt = 0;
        self.ice_retries = 0;
    }

    /// Something changed (a path was lost, signal or the network came back): try again soon.
    pub fn on_event(&mut self, now: Instant) {
        self.first_wait = AFTER_EVENT;
        self.attempt = 0;
        let soon = now + AFTER_EVENT;
        self.due = Some(self.due.map_or(soon, |d| d.min(soon)));
    }

    /// The network changed, or an idle peer woke: offer at once, and retry from 800 ms after
    /// that.
    pub fn offer_now(&mut self, now: Instant) {
        self.first_wait = AFTER_EVENT;
        self.attempt = 0;
        self.due = Some(now);
    }

    /// The peer went idle: nothing to offer until it wakes.
    pub fn pause(&mut self) {
        self.due = None;
        self.attempt = 0;
        self.ice_retries = 0;
    }

    fn backoff(&mut self, rng: &mut impl Rng) -> Duration {
        let schedule = crate::backoff::Exponential {
            initial: self.first_wait,
            multiplier: MULTIPLIER,
            jitter: JITTER,
            max: self.cap,
        };
        let wait = schedule.delay(self.attempt, rng.gen());
        self.attempt = self.attempt.saturating_add(1);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const DOWN: Paths = Paths {
        relay_up: false,
        ice_up: false,
    };

    fn t(secs: f64) -> Instant {
        Instant::from_epoch(Duration::from_secs_f64(secs))
    }

    /// Drives the guard through `hours` of a peer that never answers; returns the gaps.
    fn gaps(paths: Paths, hours: u64) -> Vec<Duration> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut g = OfferGuard::new(t(0.0), &mut rng);
        let mut last = None;
        let mut out = Vec::new();
        while let Some(due) = g.poll_timeout() {
            if due > t((hours * 3600) as f64) {
                break;
            }
            assert!(g.poll_offer(due, paths, &mut rng));
            if let Some(l) = last {
                out.push(due - l);
            }
            last = Some(due);
        }
        out
    }

    #[test]
    fn retries_back_off_from_3s_doubling_to_a_30_to_45s_cap() {
        let g = gaps(DOWN, 1);
        let first = g[0].as_secs_f64();
        assert!((2.7..=3.3).contains(&first), "{first}");
        assert!((5.4..=6.6).contains(&g[1].as_secs_f64()));
        let cap = g.last().unwrap().as_secs_f64();
        assert!((27.0..=49.5).contains(&cap), "{cap}");
        assert!(
            g.iter().all(|d| d.as_secs_f64() <= 49.5),
            "never beyond cap + jitter"
        );
        // An hour of retries at the cap is about a hundred offers, not thousands.
        assert!((70..=140).contains(&g.len()), "{}", g.len());
    }

    #[test]
    fn with_relay_up_ice_is_retried_three_times_then_hourly() {
        let g = gaps(
            Paths {
                relay_up: true,
                ice_up: false,
            },
            5,
        );
        assert!(g[..3].iter().all(|d| *d < Duration::from_secs(60)));
        assert!(g[3..].iter().all(|d| *d == ICE_RETRY_WITH_RELAY_SLOW), "{g:?}");
    }

    #[test]
    fn an_event_brings_the_next_offer_forward_to_800ms() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut g = OfferGuard::new(t(0.0), &mut rng);
        for _ in 0..6 {
            let due = g.poll_timeout().unwrap();
            g.poll_offer(due, DOWN, &mut rng);
        }
        let now = t(100.0);
        g.on_event(now);
        assert_eq!(g.poll_timeout(), Some(now + AFTER_EVENT));
        assert!(g.poll_offer(now + AFTER_EVENT, DOWN, &mut rng));
        let next = g.poll_timeout().unwrap() - (now + AFTER_EVENT);
        assert!(
            next <= Duration::from_millis(880),
            "restarted from 800 ms: {next:?}"
        );
    }

    #[test]
    fn a_network_change_offers_at_once_then_backs_off_from_800ms() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut g = OfferGuard::new(t(0.0), &mut rng);
        g.on_connected();
        g.offer_now(t(50.0));
        assert!(g.poll_offer(t(50.0), DOWN, &mut rng));
        let next = g.poll_timeout().unwrap() - t(50.0);
        assert!(
            next >= Duration::from_millis(720) && next <= Duration::from_millis(880),
            "{next:?}"
        );
    }

    #[test]
    fn connected_peers_are_left_alone() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut g = OfferGuard::new(t(0.0), &mut rng);
        g.on_connected();
        assert_eq!(g.poll_timeout(), None);
        assert!(!g.poll_offer(t(1000.0), DOWN, &mut rng));
        let mut g = OfferGuard::new(t(0.0), &mut rng);
        assert!(!g.poll_offer(
            t(0.0),
            Paths {
                relay_up: true,
                ice_up: true
            },
            &mut rng
        ));
        assert_eq!(g.poll_timeout(), None);
    }

    #[test]
    fn nothing_fires_early() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut g = OfferGuard::new(t(10.0), &mut rng);
        assert!(!g.poll_offer(t(9.9), DOWN, &mut rng));
        assert!(g.poll_offer(t(10.0), DOWN, &mut rng));
    }
}
