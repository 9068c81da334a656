//! The set of one peer's paths, their watchers and the priority that picks the active one.

use std::collections::VecDeque;
use std::time::Duration;

use super::watcher::{Health, Watcher};
use crate::clock::Instant;
use crate::path::{PathId, PathKind, PathObservations};

/// One path of the peer, as the connection sees it.
#[derive(Debug, Clone)]
pub struct PathEntry {
    pub id: PathId,
    pub kind: PathKind,
    /// False while ICE reports the pair disconnected: not usable until it reconnects.
    pub up: bool,
    /// Authenticated traffic arrived on it since it was attached (or since it came back up).
    pub proven: bool,
    pub watcher: Watcher,
    /// The newest observations of the data plane.
    pub observed: PathObservations,
    /// Probes sent to prove a path that does not carry traffic yet.
    pub proving: Option<Proving>,
    /// When the path was attached or came back up: proof must be newer.
    pub since: Instant,
    /// Proof or not, the path takes no traffic before this (a hold-down against flapping).
    pub held_until: Option<Instant>,
    /// When handshakes went out on this path in the last minute (at most
    /// [`HANDSHAKES_PER_MINUTE`]): the watcher's probes, proving rounds and a switch's handshake
    /// share one bound.
    handshakes: VecDeque<Instant>,
}

/// DESIGN 3: probes are rate-limited. At most this many handshakes on one path in any minute,
/// whoever asks: three watcher rounds of three plus a proving round and a switch's handshake fit,
/// and a path that flips between active and standby cannot turn them into a storm (found by
/// the `conn_peer` fuzz target).
pub const HANDSHAKES_PER_MINUTE: usize = 15;
/// The window of that bound.
const HANDSHAKE_WINDOW: Duration = Duration::from_secs(60);

impl PathEntry {
    pub fn new(id: PathId, kind: PathKind, now: Instant) -> Self {
        Self {
            id,
            kind,
            up: true,
            proven: false,
            watcher: Watcher::new(),
            observed: PathObservations::default(),
            proving: None,
            since: now,
            held_until: None,
            handshakes: VecDeque::with_capacity(HANDSHAKES_PER_MINUTE),
        }
    }

    /// Whether a handshake may go out on this path at `now`; if so, it is counted.
    pub fn take_handshake(&mut self, now: Instant) -> bool {
        while self
            .handshakes
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= HANDSHAKE_WINDOW)
        {
            self.handshakes.pop_front();
        }
        if self.handshakes.len() >= HANDSHAKES_PER_MINUTE {
            return false;
        }
        self.handshakes.push_back(now);
        true
    }

    pub fn is_stale(&self) -> bool {
        matches!(self.watcher.health(), Health::Stale(_))
    }

    /// Up and not condemned.
    pub fn usable(&self) -> bool {
        self.up && !self.is_stale()
    }

    /// Held down at `now`: it may not take traffic over on the strength of its proof.
    pub fn is_held(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|h| now < h)
    }

    /// Age of the newest proof of life at `now`.
    pub fn proof_age(&self, now: Instant) -> Option<Duration> {
        self.observed.last_rx.map(|t| now.saturating_duration_since(t))
    }
}

/// Rounds of probes that prove a new path before it takes traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proving {
    /// Probes sent in this round.
    pub sent: u8,
    /// The current probe's answer is due, or (after a round without answer) the next round
    /// starts.
    pub due: Instant,
    /// Rounds that went unanswered.
    pub failed_rounds: u32,
}

/// The peer's paths, in attach order.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    all: Vec<PathEntry>,
}

impl Paths {
    pub fn get(&self, id: PathId) -> Option<&PathEntry> {
        self.all.iter().find(|p| p.id == id)
    }

    pub fn get_mut(&mut self, id: PathId) -> Option<&mut PathEntry> {
        self.all.iter_mut().find(|p| p.id == id)
    }

    pub fn insert(&mut self, entry: PathEntry) {
        self.all.retain(|p| p.id != entry.id);
        self.all.push(entry);
    }

    pub fn remove(&mut self, id: PathId) -> Option<PathEntry> {
        let at = self.all.iter().position(|p| p.id == id)?;
        Some(self.all.remove(at))
    }

    pub fn iter(&self) -> impl Iterator<Item = &PathEntry> {
        self.all.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut PathEntry> {
        self.all.iter_mut()
    }

    pub fn ids(&self) -> Vec<PathId> {
        self.all.iter().map(|p| p.id).collect()
    }

    /// The path that should carry traffic, given the one that does now (DESIGN 2–3):
    /// - the best usable path with proof of life, unless the active one is proven and at least
    ///   as good (a lower path never carries traffic while a higher one has proof; a new path
    ///   takes over only once it has shown proof of life);
    /// - without proof anywhere, the active path while usable, else the best usable one;
    /// - with nothing usable, the active path as a last resort (a lone direct endpoint that
    ///   failed its probes is still better than dropping everything).
    ///
    /// A held-down path counts as unproven.
    pub fn select(&self, active: Option<PathId>, now: Instant) -> Option<PathId> {
        let current = active.and_then(|id| self.get(id));
        let best_proven = self
            .all
            .iter()
            .filter(|p| p.usable() && p.proven && !p.is_held(now))
            .max_by_key(|p| p.kind);
        if let Some(best) = best_proven {
            return match current {
                Some(c) if c.usable() && c.proven && !c.is_held(now) && c.kind >= best.kind => Some(c.id),
                _ => Some(best.id),
            };
        }
        if let Some(c) = current.filter(|c| c.usable()) {
            return Some(c.id);
        }
        if let Some(best) = self.all.iter().filter(|p| p.usable()).max_by_key(|p| p.kind) {
            return Some(best.id);
        }
        current.map(|c| c.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::peer::watcher::StaleReason;

    #[test]
    fn a_path_sends_at_most_its_bound_of_handshakes_in_any_minute() {
        let mut p = PathEntry::new(PathId(1), PathKind::IceP2p, t(0));
        let sent = (0..20).filter(|i| p.take_handshake(t(100 + i))).count();
        assert_eq!(sent, HANDSHAKES_PER_MINUTE);
        assert!(!p.take_handshake(t(159)), "still within the minute of the first");
        assert!(p.take_handshake(t(160)), "the first one's minute is over");
    }

    fn t(s: u64) -> Instant {
        Instant::from_epoch(Duration::from_secs(s))
    }

    fn entry(id: u64, kind: PathKind, proven: bool) -> PathEntry {
        let mut e = PathEntry::new(PathId(id), kind, t(0));
        e.proven = proven;
        e
    }

    #[test]
    fn a_new_better_path_takes_over_only_with_proof() {
        let mut paths = Paths::default();
        paths.insert(entry(1, PathKind::Relay, true));
        paths.insert(entry(2, PathKind::IceP2p, false));
        assert_eq!(paths.select(Some(PathId(1)), t(0)), Some(PathId(1)));
        if let Some(ice) = paths.get_mut(PathId(2)) {
            ice.proven = true;
        }
        assert_eq!(paths.select(Some(PathId(1)), t(0)), Some(PathId(2)));
    }

    #[test]
    fn a_stale_path_hands_over_to_the_best_remaining_and_is_not_chosen_again() {
        let mut paths = Paths::default();
        paths.insert(entry(1, PathKind::Relay, true));
        paths.insert(entry(2, PathKind::IceP2p, true));
        if let Some(ice) = paths.get_mut(PathId(2)) {
            ice.watcher.condemn(StaleReason::NoData {
                waited: Duration::from_secs(20),
            });
        }
        assert_eq!(paths.select(Some(PathId(2)), t(0)), Some(PathId(1)));
        assert_eq!(paths.select(None, t(0)), Some(PathId(1)));
    }

    #[test]
    fn without_any_proof_the_best_usable_path_carries_the_first_handshake() {
        let mut paths = Paths::default();
        paths.insert(entry(1, PathKind::Relay, false));
        paths.insert(entry(2, PathKind::IceTurn, false));
        assert_eq!(paths.select(None, t(0)), Some(PathId(2)));
        assert_eq!(paths.select(Some(PathId(1)), t(0)), Some(PathId(1)));
    }

    #[test]
    fn a_lone_condemned_path_stays_as_the_last_resort() {
        let mut paths = Paths::default();
        paths.insert(entry(1, PathKind::Direct, true));
        if let Some(d) = paths.get_mut(PathId(1)) {
            d.watcher.condemn(StaleReason::NoData {
                waited: Duration::from_secs(20),
            });
        }
        assert_eq!(paths.select(Some(PathId(1)), t(0)), Some(PathId(1)));
    }
}
