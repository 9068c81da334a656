//! Lazy connections (NetBird's `lazyconn`): a peer that moved no data for a while is closed (its
//! ICE agent and relay path torn down, `GO_IDLE` sent) and opened again by the first packet or
//! signal message that needs it. Pure: `Conn` feeds it the data plane's packet counts and the
//! time, and it says when the peer goes idle and why it woke.

use std::fmt;
use std::time::Duration;

use crate::clock::Instant;

/// NetBird's `DefaultInactivityThreshold` (client/internal/lazyconn/inactivity/manager.go).
pub const DEFAULT_THRESHOLD: Duration = Duration::from_secs(15 * 60);
/// NetBird's `MinimumInactivityThreshold`: a shorter one is raised to it.
pub const MIN_THRESHOLD: Duration = Duration::from_secs(60);
/// NetBird's lazy-connection minimum (`minVersion` in client/internal/lazyconn/support.go): an
/// older peer does not understand `GO_IDLE` and would keep its side open.
const MIN_VERSION: (u64, u64, u64) = (0, 45, 0);
/// Version prefixes NetBird treats as development builds, always supported
/// (`IsDevelopmentVersion` in version/version.go); ours is the last.
const DEV_PREFIXES: [&str; 4] = ["development", "ci-", "dev-", "peerlink-"];

/// Whether the peer's connection is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activity {
    /// Open: paths are kept and watched.
    #[default]
    Active,
    /// Closed for inactivity: no ICE agent, no relay path, no offers.
    Idle,
    /// Woken from idle: open again, and no path has carried traffic yet.
    Waking,
}

/// Why the peer last changed between idle and open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityReason {
    /// No data moved for the threshold.
    Inactive(Duration),
    /// The peer sent `GO_IDLE`.
    RemoteIdle,
    /// A packet from the tun needs the peer.
    Outbound,
    /// Data arrived from the peer on a path that stayed (a direct endpoint).
    Inbound,
    /// The peer sent an offer, answer or candidate.
    Signal,
    /// The relay brought a packet from the peer.
    RelayTraffic,
    /// A path carries traffic again after waking.
    Connected,
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activity::Active => "active",
            Activity::Idle => "idle",
            Activity::Waking => "waking",
        })
    }
}

impl fmt::Display for ActivityReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivityReason::Inactive(t) => write!(f, "no data for {} s", t.as_secs()),
            ActivityReason::RemoteIdle => f.write_str("peer went idle"),
            ActivityReason::Outbound => f.write_str("outbound packet"),
            ActivityReason::Inbound => f.write_str("inbound packet"),
            ActivityReason::Signal => f.write_str("signal message from the peer"),
            ActivityReason::RelayTraffic => f.write_str("relay traffic from the peer"),
            ActivityReason::Connected => f.write_str("path up"),
        }
    }
}

/// The inactivity policy of one peer.
#[derive(Debug, Clone)]
pub struct Lazy {
    /// `None`: never idle (lazy mode off for the engine, or the peer is always-on).
    threshold: Option<Duration>,
    /// The peer's advertised version allows idling (unknown until it offers or answers: a peer
    /// never heard from has no connection to close, and it wakes us when it offers).
    remote_supported: bool,
    state: Activity,
    reason: Option<ActivityReason>,
    last_activity: Instant,
    /// Data packets the data plane counted for the peer (to and from the tun), last seen.
    packets: (u64, u64),
}

impl Lazy {
    /// `threshold: None` never idles; a shorter one than NetBird's minimum is raised to it.
    pub fn new(threshold: Option<Duration>, now: Instant) -> Self {
        Self {
            threshold: threshold.map(|t| t.max(MIN_THRESHOLD)),
            remote_supported: true,
            state: Activity::Active,
            reason: None,
            last_activity: now,
            packets: (0, 0),
        }
    }

    /// Changes the threshold (`None`: never idle). True when the peer may no longer idle.
    pub fn set_threshold(&mut self, threshold: Option<Duration>) -> bool {
        self.threshold = threshold.map(|t| t.max(MIN_THRESHOLD));
        self.threshold.is_none()
    }

    /// Data moved within `window` of `now` (or the peer was created or woke then).
    pub fn busy(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.last_activity) < window
    }

    pub fn state(&self) -> Activity {
        self.state
    }

    pub fn reason(&self) -> Option<ActivityReason> {
        self.reason
    }

    pub fn is_idle(&self) -> bool {
        self.state == Activity::Idle
    }

    /// The version string of the peer's offer or answer.
    pub fn remote_version(&mut self, version: &str) {
        self.remote_supported = version_supports_lazy(version);
    }

    /// May this peer be made idle at all.
    fn may_idle(&self) -> bool {
        self.threshold.is_some() && self.remote_supported
    }

    /// The data plane's data packet counts for the peer (keepalives are not counted there).
    /// Returns which way data moved since the last look, if it did.
    pub fn packets(&mut self, now: Instant, tx: u64, rx: u64) -> Option<ActivityReason> {
        let (old_tx, old_rx) = std::mem::replace(&mut self.packets, (tx, rx));
        let moved = if tx != old_tx {
            ActivityReason::Outbound
        } else if rx != old_rx {
            ActivityReason::Inbound
        } else {
            return None;
        };
        self.last_activity = now;
        Some(moved)
    }

    /// When the peer goes idle if nothing moves.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.state, self.may_idle(), self.threshold) {
            (Activity::Idle, ..) | (_, false, _) | (_, _, None) => None,
            (_, true, Some(t)) => Some(self.last_activity + t),
        }
    }

    /// True when the peer should go idle now for inactivity.
    pub fn inactive(&self, now: Instant) -> bool {
        self.poll_timeout().is_some_and(|t| now >= t)
    }

    /// The reason to give when [`Lazy::inactive`] says so.
    pub fn inactive_reason(&self) -> ActivityReason {
        ActivityReason::Inactive(self.threshold.unwrap_or_default())
    }

    /// The peer goes idle. False (and nothing changes) when it may not, or already is.
    pub fn go_idle(&mut self, reason: ActivityReason) -> bool {
        if self.state == Activity::Idle || !self.may_idle() {
            return false;
        }
        self.state = Activity::Idle;
        self.reason = Some(reason);
        true
    }

    /// Something needs the peer. True when it was idle and wakes now.
    pub fn wake(&mut self, now: Instant, reason: ActivityReason) -> bool {
        self.last_activity = now;
        if self.state != Activity::Idle {
            return false;
        }
        self.state = Activity::Waking;
        self.reason = Some(reason);
        true
    }

    /// A path carries traffic: a waking peer is open again.
    pub fn connected(&mut self) {
        if self.state == Activity::Waking {
            self.state = Activity::Active;
            self.reason = Some(ActivityReason::Connected);
        }
    }
}

/// NetBird's `IsSupported`: development builds yes; a version without a dot (a commit hash) no;
/// otherwise `major.minor.patch` (after a leading `v` or `a`) at least 0.45.0.
pub fn version_supports_lazy(version: &str) -> bool {
    if DEV_PREFIXES.iter().any(|p| version.starts_with(p)) {
        return true;
    }
    if !version.contains('.') {
        return false;
    }
    let v = version.trim_start_matches(['v', 'a']);
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let mut parts = core.split('.').map(|p| p.parse::<u64>());
    let (Some(Ok(major)), minor, patch) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(minor), Ok(patch)) = (minor.unwrap_or(Ok(0)), patch.unwrap_or(Ok(0))) else {
        return false;
    };
    parts.next().is_none() && (major, minor, patch) >= MIN_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::from_epoch(Duration::from_secs(100))
    }

    #[test]
    fn versions_as_netbird_reads_them() {
        for (v, ok) in [
            ("0.45.0", true),
            ("v0.45.0", true),
            ("0.45.1-SNAPSHOT-559e6731", true),
            ("v0.45.1-dev", true),
            ("0.77.1", true),
            ("1.0", true),
            ("0.44.9", false),
            ("0.28.0", false),
            ("a6c5960", false),
            ("development", true),
            ("peerlink-0.1.0", true),
            ("", false),
            ("x.y.z", false),
            ("0.45.0.1", false),
        ] {
            assert_eq!(version_supports_lazy(v), ok, "{v}");
        }
    }

    #[test]
    fn idles_after_the_threshold_without_data_and_not_before() {
        let mut lazy = Lazy::new(Some(Duration::from_secs(120)), t0());
        assert_eq!(lazy.poll_timeout(), Some(t0() + Duration::from_secs(120)));
        let moved = lazy.packets(t0() + Duration::from_secs(60), 0, 5);
        assert_eq!(moved, Some(ActivityReason::Inbound));
        assert!(!lazy.inactive(t0() + Duration::from_secs(150)));
        assert_eq!(
            lazy.packets(t0() + Duration::from_secs(170), 0, 5),
            None,
            "nothing new"
        );
        assert!(lazy.inactive(t0() + Duration::from_secs(180)));
        assert!(lazy.go_idle(ActivityReason::Inactive(Duration::from_secs(120))));
        assert_eq!((lazy.state(), lazy.poll_timeout()), (Activity::Idle, None));
        assert!(!lazy.go_idle(ActivityReason::RemoteIdle), "already idle");
    }

    #[test]
    fn a_short_threshold_is_raised_to_netbirds_minimum() {
        let lazy = Lazy::new(Some(Duration::from_secs(5)), t0());
        assert_eq!(lazy.poll_timeout(), Some(t0() + MIN_THRESHOLD));
    }

    #[test]
    fn never_idle_when_off_or_for_an_old_peer() {
        let mut off = Lazy::new(None, t0());
        assert_eq!(off.poll_timeout(), None);
        assert!(!off.go_idle(ActivityReason::RemoteIdle));
        let mut old = Lazy::new(Some(MIN_THRESHOLD), t0());
        old.remote_version("0.40.0");
        assert_eq!(old.poll_timeout(), None);
        assert!(!old.go_idle(ActivityReason::RemoteIdle));
        old.remote_version("0.77.1");
        assert!(old.go_idle(ActivityReason::RemoteIdle), "upgraded peer");
    }

    #[test]
    fn waking_then_connected_restarts_the_clock() {
        let mut lazy = Lazy::new(Some(MIN_THRESHOLD), t0());
        assert!(lazy.go_idle(ActivityReason::RemoteIdle));
        let later = t0() + Duration::from_secs(3600);
        assert!(lazy.wake(later, ActivityReason::Outbound));
        assert!(!lazy.wake(later, ActivityReason::Signal), "already awake");
        assert_eq!(lazy.state(), Activity::Waking);
        assert_eq!(lazy.poll_timeout(), Some(later + MIN_THRESHOLD));
        lazy.connected();
        assert_eq!(
            (lazy.state(), lazy.reason()),
            (Activity::Active, Some(ActivityReason::Connected))
        );
    }
}
