//! The watcher of one path (DESIGN 3): is WireGuard alive on it? Pure: it reads the data
//! plane's observations of the path at `now` and answers with a probe to send or a verdict.
//!
//! Proof of life is an authenticated WireGuard packet received on the path; STUN consent is
//! not. Traffic out with nothing authenticated back for a while makes the path suspect; the
//! watcher then probes it with WireGuard handshake initiations, and a path that answers none of
//! them is stale. A path that answers probes but returns no data while data goes out is stale
//! too (a middlebox that passes 148-byte handshakes and drops the rest).

use std::fmt;
use std::time::Duration;

use crate::clock::Instant;
use crate::path::PathObservations;

/// DESIGN 3: suspicion never comes sooner than this after the first unanswered send (a phone's
/// radio wakes in about 100–300 ms; one second covers it and a lost packet or two).
const MIN_SUSPICION: Duration = Duration::from_secs(1);
/// DESIGN 3: suspicion after 3 RTTs of silence, when that is longer than a second.
const SUSPICION_RTTS: u32 = 3;
/// DESIGN 3: a probe's answer is due within 4 RTTs…
const PROBE_DEADLINE_RTTS: u32 = 4;
/// …but never sooner than 500 ms (a handshake costs the peer two X25519 operations and a
/// scheduler turn)…
const MIN_PROBE_DEADLINE: Duration = Duration::from_millis(500);
/// …nor later than 2 s (the whole verdict stays inside the 5 s target of DESIGN 9).
const MAX_PROBE_DEADLINE: Duration = Duration::from_secs(2);
/// Before any RTT is measured: a LAN or a continent answers within a second.
const UNKNOWN_RTT_DEADLINE: Duration = Duration::from_secs(1);
/// DESIGN 3: three probes before the verdict, so that loss alone (5 % → 1.25e-4 for three in a
/// row) does not condemn a path.
pub(super) const PROBES: u8 = 3;
/// DESIGN 3: after a probe that was answered while the silence persists (a one-way flow), the
/// next probe on that path waits 10 s…
const QUIET_FIRST: Duration = Duration::from_secs(10);
/// …doubling up to 60 s.
const QUIET_MAX: Duration = Duration::from_secs(60);
/// A path that went this long without becoming suspect has its probe backoff reset: the
/// one-way flow that earned it is over.
const QUIET_RESET: Duration = Duration::from_secs(120);
/// DESIGN 3, data-level proof: WireGuard's KEEPALIVE_TIMEOUT (10 s: a peer that receives data
/// and sends nothing answers with a keepalive by then), plus one more keepalive period because a
/// probe's handshake answer counts as a send on the peer and restarts that timer once.
const DATA_DEADLINE: Duration = Duration::from_secs(20);
/// Data counts as "still going out" when the last send is at most this old.
const SENDING_WINDOW: Duration = Duration::from_secs(1);

/// How one path is doing, for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Nothing says otherwise: proof of life, or no traffic to judge by.
    Alive,
    /// Probes out, no answer yet.
    Probing { sent: u8 },
    /// Condemned for this session: never chosen again until replaced.
    Stale(StaleReason),
}

/// Why a path was condemned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// No answer to `probes` handshake probes sent over `waited`.
    NoAnswer { probes: u8, waited: Duration },
    /// Data went out for `waited` and no data came back, though handshakes did.
    NoData { waited: Duration },
    /// NetBird's floor: the last handshake is `age` old while the path carries traffic.
    HandshakeTooOld { age: Duration },
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::NoAnswer { probes, waited } => {
                write!(f, "no answer to {probes} probes in {:.1} s", waited.as_secs_f64())
            }
            StaleReason::NoData { waited } => {
                write!(f, "no data back for {:.1} s", waited.as_secs_f64())
            }
            StaleReason::HandshakeTooOld { age } => {
                write!(f, "last handshake {:.0} s ago", age.as_secs_f64())
            }
        }
    }
}

/// What the watcher asks for after an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Send a WireGuard handshake initiation on this path.
    Probe,
    /// The path is stale.
    Verdict(StaleReason),
}

/// How the owner of the path wants it watched now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchContext {
    /// Whether the path carries the peer's traffic: only then does silence mean anything.
    pub active: bool,
    /// Whether probes may go out (false while offline).
    pub may_probe: bool,
    /// Added to the suspicion delay: the controlled side waits out the controller's probes, so
    /// that on a live path its own never cross them.
    pub defer: Duration,
}

#[derive(Debug, Clone)]
pub struct Watcher {
    health: Health,
    /// `last_rx` at the previous update: a newer one is fresh proof of life.
    seen_rx: Option<Instant>,
    seen_data_rx: Option<Instant>,
    /// When the first probe of the current round went out.
    round_started: Option<Instant>,
    /// When the newest probe's answer is due.
    probe_due: Option<Instant>,
    /// No new round of probes before this (after an answered probe in a one-way flow).
    quiet_until: Option<Instant>,
    quiet: Duration,
    last_suspicion: Option<Instant>,
    /// Since when data has gone out with no data back (the data-level check).
    sending_since: Option<Instant>,
    rtt: Option<Duration>,
    /// Probes sent on this path, for the rate bound.
    pub probes_sent: u64,
}

impl Watcher {
    pub fn new() -> Self {
        Self {
            health: Health::Alive,
            seen_rx: None,
            seen_data_rx: None,
            round_started: None,
            probe_due: None,
            quiet_until: None,
            quiet: Duration::ZERO,
            last_suspicion: None,
            sending_since: None,
            rtt: None,
            probes_sent: 0,
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Reads the newest observations of the path at `now`.
    pub fn update(&mut self, now: Instant, obs: &PathObservations, ctx: WatchContext) -> Option<Watch> {
        if matches!(self.health, Health::Stale(_)) {
            return None;
        }
        if obs.rtt.is_some() {
            self.rtt = obs.rtt;
        }
        if obs.last_rx > self.seen_rx {
            self.seen_rx = obs.last_rx;
            self.on_proof(now);
        }
        if obs.last_data_rx > self.seen_data_rx {
            self.seen_data_rx = obs.last_data_rx;
            self.sending_since = None;
        }
        if !ctx.active {
            // A standby carries nothing, so its silence proves nothing; its round (if any)
            // ends here and starts afresh if it carries traffic again, after the same backoff
            // as an answered round: a path that flips between active and standby must not
            // start a round at every flip (a probe storm; found by the `conn_peer` fuzz target).
            if self.round_started.is_some() {
                self.back_off(now);
            }
            self.round_started = None;
            self.probe_due = None;
            self.sending_since = None;
            self.health = Health::Alive;
            return None;
        }
        if let Some(verdict) = self.data_check(now, obs) {
            return Some(verdict);
        }
        self.silence_check(now, obs, ctx)
    }

    /// When the watcher wants to look again, given what it saw last.
    pub fn poll_timeout(&self, obs: &PathObservations, ctx: WatchContext) -> Option<Instant> {
        if !ctx.active || matches!(self.health, Health::Stale(_)) {
            return None;
        }
        let mut next = self.probe_due;
        if let (Some(since), Health::Alive) = (obs.tx_unanswered_since, self.health) {
            let at = (since + self.suspicion() + ctx.defer).max(self.quiet_until.unwrap_or(since));
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if let Some(since) = self.sending_since {
            let at = since + DATA_DEADLINE;
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        next
    }

    /// Condemns the path from outside (NetBird's handshake-age floor).
    pub fn condemn(&mut self, reason: StaleReason) {
        self.health = Health::Stale(reason);
    }

    fn on_proof(&mut self, now: Instant) {
        if self.round_started.is_some() {
            // A probe was answered while silence persisted: a one-way flow, not a dead path.
            // Back off before the next round.
            self.back_off(now);
        }
        self.round_started = None;
        self.probe_due = None;
        self.health = Health::Alive;
    }

    /// No new round before `quiet` has passed, doubling from [`QUIET_FIRST`] to [`QUIET_MAX`].
    fn back_off(&mut self, now: Instant) {
        self.quiet = if self.quiet.is_zero() {
            QUIET_FIRST
        } else {
            (self.quiet * 2).min(QUIET_MAX)
        };
        self.quiet_until = Some(now + self.quiet);
    }

    fn data_check(&mut self, now: Instant, obs: &PathObservations) -> Option<Watch> {
        let sending = obs
            .last_tx
            .is_some_and(|t| now.saturating_duration_since(t) <= SENDING_WINDOW);
        if !sending {
            self.sending_since = None;
            return None;
        }
        let since = *self.sending_since.get_or_insert(now);
        let waited = now.saturating_duration_since(since);
        if waited < DATA_DEADLINE {
            return None;
        }
        let reason = StaleReason::NoData { waited };
        self.health = Health::Stale(reason);
        Some(Watch::Verdict(reason))
    }

    fn silence_check(&mut self, now: Instant, obs: &PathObservations, ctx: WatchContext) -> Option<Watch> {
        if let (Some(due), Some(started)) = (self.probe_due, self.round_started) {
            if now < due {
                return None;
            }
            let Health::Probing { sent } = self.health else {
                return None;
            };
            if sent >= PROBES {
                let reason = StaleReason::NoAnswer {
                    probes: sent,
                    waited: now.saturating_duration_since(started),
                };
                self.health = Health::Stale(reason);
                return Some(Watch::Verdict(reason));
            }
            if !ctx.may_probe {
                return None;
            }
            return Some(self.probe(now, sent + 1));
        }
        let since = obs.tx_unanswered_since?;
        if now < since + self.suspicion() + ctx.defer {
            return None;
        }
        if let Some(last) = self.last_suspicion {
            if now.saturating_duration_since(last) >= QUIET_RESET {
                self.quiet = Duration::ZERO;
                self.quiet_until = None;
            }
        }
        self.last_suspicion = Some(now);
        if self.quiet_until.is_some_and(|q| now < q) || !ctx.may_probe {
            return None;
        }
        self.round_started = Some(now);
        Some(self.probe(now, 1))
    }

    fn probe(&mut self, now: Instant, sent: u8) -> Watch {
        self.health = Health::Probing { sent };
        self.probe_due = Some(now + self.probe_deadline());
        self.probes_sent += 1;
        Watch::Probe
    }

    fn suspicion(&self) -> Duration {
        self.rtt
            .map_or(MIN_SUSPICION, |rtt| (rtt * SUSPICION_RTTS).max(MIN_SUSPICION))
    }

    /// How long to wait for one probe's answer.
    pub fn probe_deadline(&self) -> Duration {
        self.rtt.map_or(UNKNOWN_RTT_DEADLINE, |rtt| {
            (rtt * PROBE_DEADLINE_RTTS).clamp(MIN_PROBE_DEADLINE, MAX_PROBE_DEADLINE)
        })
    }
}

impl Default for Watcher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIVE: WatchContext = WatchContext {
        active: true,
        may_probe: true,
        defer: Duration::ZERO,
    };

    fn t(ms: u64) -> Instant {
        Instant::from_epoch(Duration::from_millis(ms))
    }

    /// Traffic out since `since`, nothing back.
    fn silent(since: u64, now: u64) -> PathObservations {
        PathObservations {
            last_tx: Some(t(now)),
            tx_unanswered_since: Some(t(since)),
            rtt: Some(Duration::from_millis(10)),
            ..Default::default()
        }
    }

    #[test]
    fn a_path_silent_under_traffic_is_probed_three_times_then_condemned() {
        let mut w = Watcher::new();
        assert_eq!(w.update(t(900), &silent(0, 900), ACTIVE), None);
        assert_eq!(w.update(t(1000), &silent(0, 1000), ACTIVE), Some(Watch::Probe));
        assert_eq!(w.update(t(1400), &silent(0, 1400), ACTIVE), None);
        assert_eq!(w.update(t(1500), &silent(0, 1500), ACTIVE), Some(Watch::Probe));
        assert_eq!(w.update(t(2000), &silent(0, 2000), ACTIVE), Some(Watch::Probe));
        let verdict = w.update(t(2500), &silent(0, 2500), ACTIVE);
        assert_eq!(
            verdict,
            Some(Watch::Verdict(StaleReason::NoAnswer {
                probes: 3,
                waited: Duration::from_millis(1500)
            }))
        );
        assert_eq!(
            format!(
                "{}",
                StaleReason::NoAnswer {
                    probes: 3,
                    waited: Duration::from_millis(1500)
                }
            ),
            "no answer to 3 probes in 1.5 s"
        );
    }

    #[test]
    fn a_path_flipping_between_active_and_standby_is_not_probed_at_every_flip() {
        let standby = WatchContext {
            active: false,
            ..ACTIVE
        };
        let mut w = Watcher::default();
        // Every half second: active and silent (a round starts), then standby (it ends).
        let mut at = 1000;
        for _ in 0..120 {
            w.update(t(at), &silent(0, at), ACTIVE);
            w.update(t(at + 250), &silent(0, at + 250), standby);
            at += 500;
        }
        assert!(
            w.probes_sent <= 6,
            "{} probes in a minute of flips: rounds back off 10, 20, 40 s",
            w.probes_sent
        );
        // A path that stays active and silent after that is still probed and condemned.
        let mut verdict = None;
        for step in 0..400 {
            let now = at + step * 250;
            if let Some(Watch::Verdict(r)) = w.update(t(now), &silent(0, now), ACTIVE) {
                verdict = Some(r);
                break;
            }
        }
        assert!(
            matches!(verdict, Some(StaleReason::NoAnswer { .. })),
            "{verdict:?}"
        );
    }

    #[test]
    fn an_answered_probe_clears_suspicion_and_backs_off_the_next_round() {
        let mut w = Watcher::new();
        assert_eq!(w.update(t(1000), &silent(0, 1000), ACTIVE), Some(Watch::Probe));
        let mut answered = silent(1100, 1100);
        answered.last_rx = Some(t(1050));
        answered.last_handshake_rx = Some(t(1050));
        assert_eq!(w.update(t(1100), &answered, ACTIVE), None);
        assert_eq!(w.health(), Health::Alive);
        // The one-way flow goes on: no new round for 10 s…
        answered.tx_unanswered_since = Some(t(1100));
        assert_eq!(w.update(t(2200), &answered, ACTIVE), None);
        assert_eq!(w.update(t(11_000), &answered, ACTIVE), None);
        assert_eq!(w.update(t(11_100), &answered, ACTIVE), Some(Watch::Probe));
        // …and after the next answer, 20 s.
        answered.last_rx = Some(t(11_150));
        assert_eq!(w.update(t(11_200), &answered, ACTIVE), None);
        answered.tx_unanswered_since = Some(t(11_200));
        assert_eq!(w.update(t(31_100), &answered, ACTIVE), None);
        assert_eq!(w.update(t(31_200), &answered, ACTIVE), Some(Watch::Probe));
    }

    #[test]
    fn handshakes_without_data_condemn_the_path_after_the_data_deadline() {
        let mut w = Watcher::new();
        let mut obs = silent(0, 0);
        let mut now = 0;
        let mut verdict = None;
        while now <= 30_000 && verdict.is_none() {
            obs.last_tx = Some(t(now));
            // Every probe is answered at once, data never is.
            obs.last_rx = Some(t(now));
            obs.tx_unanswered_since = Some(t(now));
            verdict = w.update(t(now), &obs, ACTIVE);
            now += 250;
        }
        assert!(
            matches!(verdict, Some(Watch::Verdict(StaleReason::NoData { waited })) if waited >= DATA_DEADLINE),
            "{verdict:?} at {now} ms"
        );
    }

    #[test]
    fn a_standby_is_never_judged_by_its_silence() {
        let mut w = Watcher::new();
        let standby = WatchContext {
            active: false,
            ..ACTIVE
        };
        for now in (0..60_000).step_by(250) {
            assert_eq!(w.update(t(now), &silent(0, now), standby), None);
        }
        assert_eq!(w.poll_timeout(&silent(0, 0), standby), None);
    }

    #[test]
    fn offline_no_probe_goes_out_and_no_verdict_without_probes() {
        let mut w = Watcher::new();
        let offline = WatchContext {
            may_probe: false,
            ..ACTIVE
        };
        for now in (0..10_000).step_by(250) {
            assert_eq!(w.update(t(now), &silent(0, now), offline), None);
        }
        assert_eq!(w.probes_sent, 0);
    }

    #[test]
    fn the_deadlines_scale_with_rtt_within_their_clamps() {
        let mut w = Watcher::new();
        assert_eq!(w.probe_deadline(), UNKNOWN_RTT_DEADLINE);
        w.rtt = Some(Duration::from_millis(1));
        assert_eq!(
            (w.suspicion(), w.probe_deadline()),
            (MIN_SUSPICION, MIN_PROBE_DEADLINE)
        );
        w.rtt = Some(Duration::from_millis(400));
        assert_eq!(w.suspicion(), Duration::from_millis(1200));
        assert_eq!(w.probe_deadline(), Duration::from_millis(1600));
        w.rtt = Some(Duration::from_secs(3));
        assert_eq!(w.probe_deadline(), MAX_PROBE_DEADLINE);
    }
}
