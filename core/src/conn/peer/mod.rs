//! One remote peer's connection, as a pure state machine (sans-IO, STYLE.md): which paths it
//! has, which one carries traffic, whether each is alive (the watcher), and when to offer again
//! (the guard). It owns no sockets, tasks or clocks: `handle_*` feed it inputs at `now`,
//! [`Conn::poll_action`] drains what it wants done and [`Conn::poll_timeout`] says when to call
//! [`Conn::handle_timeout`]. Its shell (`conn::shell`) turns I/O into inputs and actions into
//! I/O. One owner per decision: nothing else picks the active path.

mod decide;
pub mod guard;
pub mod lazy;
mod paths;
mod status;
pub mod watcher;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod sim;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lazy;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;

pub use status::{ConnStatus, PathHealthStatus, Switch, SwitchReason};

use self::guard::OfferGuard;
use self::lazy::{ActivityReason, Lazy};
use self::paths::{PathEntry, Paths};
use self::watcher::Watch;
use super::plane::PeerObservations;
use crate::clock::Instant;
use crate::ice::{IceCredentials, IceState};
use crate::keys::PublicKey;
use crate::path::{PathId, PathKind};
use crate::signal::{OfferAnswer, SessionId};

/// Remote candidates held while no ICE session runs: a session's worth (a few per interface
/// and server); more than that before the agent is up means something is wrong.
const PENDING_CANDIDATES: usize = 64;
/// Path switches kept for status: enough to read the last few minutes of a flapping network.
const HISTORY: usize = 16;
/// NetBird's WGWatcher floor (DESIGN 3): a handshake older than 3 min 30 s while the path is in
/// use is stale (WireGuard rekeys every 2 min under traffic).
const HANDSHAKE_FLOOR: Duration = Duration::from_secs(210);
/// A path "is in use" when something was sent on it this recently: WireGuard's keepalive
/// timeout, after which an idle peer's timers have nothing left to say.
const IN_USE: Duration = Duration::from_secs(10);
/// The controlled side waits out the controller's three probes (at most 3 × 2 s) plus a margin
/// before probing itself, so that on a live path its probes never cross the controller's.
const CONTROLLED_DEFER_PROBES: u32 = 3;
/// A new path that answered no round of probes is probed again after 2.5 s × 2 (so 5 s)…
const PROVING_PAUSE_FIRST: Duration = Duration::from_millis(2500);
/// …doubling to 30 s: about six probes a minute at most on a path that never answers, and a
/// cleared fault is noticed within half a minute.
const PROVING_PAUSE_MAX: Duration = Duration::from_secs(30);
/// An ICE path condemned again within this long of the previous verdict is flapping (a
/// middlebox that passes handshakes but drops data proves each new session and then fails it)…
const FLAP_WINDOW: Duration = Duration::from_secs(300);
/// …so the next session waits this long before taking traffic, doubling per verdict…
const FLAP_HOLD_FIRST: Duration = Duration::from_secs(10);
/// …up to five minutes.
const FLAP_HOLD_MAX: Duration = Duration::from_secs(300);
/// A relay path that failed to open or closed is reopened after this, doubling…
const RELAY_RETRY_FIRST: Duration = Duration::from_secs(1);
/// …up to NetBird's guard cap (DESIGN 4).
const RELAY_RETRY_MAX: Duration = Duration::from_secs(30);

/// Allocates path ids, engine-wide: shared with the data plane, which names the direct paths it
/// learns by roaming from the same counter.
#[derive(Debug, Clone, Default)]
pub struct PathIds(Arc<AtomicU64>);

impl PathIds {
    pub fn next(&self) -> PathId {
        PathId(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// What the engine's configuration says about this peer's connection.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    pub own: PublicKey,
    pub peer: PublicKey,
    /// ICE is configured.
    pub ice: bool,
    /// NetBird's relay is configured.
    pub relay: bool,
    /// The WireGuard port our offers carry.
    pub wg_listen_port: u16,
    /// The version string our offers carry.
    pub version: String,
    /// Close the connection after this long without data (lazy connections); `None`: never
    /// (lazy mode off, or the peer is always-on).
    pub lazy: Option<Duration>,
}

/// What the connection wants done, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SendOffer(OfferAnswer),
    SendAnswer(OfferAnswer),
    /// Close any ICE agent of this peer and start a new one for this session.
    StartIce(IceStart),
    /// Give a remote candidate to the agent of session `session`.
    AddRemoteCandidate {
        session: PathId,
        candidate: String,
    },
    /// Close the ICE agent (its path is already detached or about to be).
    CloseIce,
    /// Open a relay path under `id`: through our home relay (`server: None`) or the peer's.
    OpenRelay {
        id: PathId,
        server: Option<String>,
    },
    CloseRelay {
        id: PathId,
    },
    /// The relay path was condemned: reconnect the relay connection under it.
    ReconnectRelay,
    /// Attach the path object the shell holds under `id` to the data plane.
    Attach(PathId),
    Detach(PathId),
    /// Make `id` the path that carries traffic (`None`: no path).
    Activate(Option<PathId>),
    /// Send a WireGuard handshake initiation on this path alone.
    SendHandshake(PathId),
    /// The active path changed: for events, logs and status.
    Switched(Switch),
    /// Tell the peer through signal that we closed the connection for inactivity.
    SendGoIdle,
    /// The connection went idle (`true`) or woke: for events, logs and status.
    Idle(bool, ActivityReason),
}

/// One ICE session to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceStart {
    /// The path id the session's pair is attached under once connected.
    pub id: PathId,
    pub local: IceCredentials,
    pub remote: IceCredentials,
    pub controlling: bool,
    /// Gather TURN candidates (NetBird's relay is not usable between the two).
    pub use_turn: bool,
}

#[derive(Debug, Clone)]
struct IceSession {
    id: PathId,
    local: IceCredentials,
    remote: IceCredentials,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelaySlot {
    Idle,
    Opening(PathId),
    Open(PathId),
}

pub struct Conn {
    config: ConnConfig,
    /// Greater base64 key: ICE controlling agent, picks its own relay server, WireGuard
    /// initiator and first prober.
    controlling: bool,
    rng: StdRng,
    ids: PathIds,
    guard: OfferGuard,
    online: bool,
    local: IceCredentials,
    session_id: SessionId,
    remote_ice: Option<IceCredentials>,
    /// The relay instance the peer advertised last; the relay path waits for it.
    remote_relay: Option<String>,
    /// Our home relay's instance URL, as our offers carry it.
    home_relay: Option<String>,
    /// What our last offer or answer carried (relay URL, ICE credentials): a change goes out
    /// in a fresh offer.
    sent: Option<(Option<String>, Option<IceCredentials>)>,
    heard_from: bool,
    ice: Option<IceSession>,
    /// The ICE session's path once its pair is selected.
    ice_path: Option<PathId>,
    pending_candidates: Vec<String>,
    relay: RelaySlot,
    /// ICE verdicts in a row (each within `FLAP_WINDOW` of the one before) and the last one.
    ice_verdicts: (u32, Option<Instant>),
    relay_retry: Option<Instant>,
    relay_failures: u32,
    paths: Paths,
    active: Option<PathId>,
    /// Time since the last handshake as the data plane reported it, and when.
    handshake: Option<(Instant, Option<Duration>)>,
    /// The data plane's count of datagrams dropped for want of a path, last seen.
    no_path_drops: u64,
    /// WireGuard tried to send with no path: data is waiting for a session.
    waiting: bool,
    actions: VecDeque<Action>,
    history: VecDeque<Switch>,
    lazy: Lazy,
}

impl Conn {
    /// A connection that offers at once. `rng` is its only source of randomness (credentials,
    /// session ids, jitter); `ids` names its ICE and relay paths.
    pub fn new(config: ConnConfig, now: Instant, mut rng: StdRng, ids: PathIds) -> Self {
        let controlling = crate::ice::is_controlling(&config.own, &config.peer);
        let guard = OfferGuard::new(now, &mut rng);
        let local = IceCredentials::generate_with(&mut rng);
        let session_id = SessionId::generate(&mut rng);
        let lazy = Lazy::new(config.lazy, now);
        Self {
            config,
            controlling,
            rng,
            ids,
            guard,
            online: true,
            local,
            session_id,
            remote_ice: None,
            remote_relay: None,
            home_relay: None,
            sent: None,
            heard_from: false,
            ice: None,
            ice_path: None,
            pending_candidates: Vec::new(),
            relay: RelaySlot::Idle,
            ice_verdicts: (0, None),
            relay_retry: None,
            relay_failures: 0,
            paths: Paths::default(),
            active: None,
            handshake: None,
            no_path_drops: 0,
            waiting: false,
            actions: VecDeque::new(),
            history: VecDeque::new(),
            lazy,
        }
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Conn::handle_timeout`] (after fresh observations) should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut earliest = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if self.online && !self.lazy.is_idle() {
            earliest(self.guard.poll_timeout());
            earliest(self.relay_retry);
        }
        earliest(self.lazy.poll_timeout());
        for p in self.paths.iter() {
            earliest(
                p.watcher
                    .poll_timeout(&p.observed, self.watch_context(p.id, &p.watcher)),
            );
            // Only the proving rounds `proving_timeouts` runs: the active path's (its watcher
            // probes it) or a proven or down one's would be a deadline nothing moves, and the
            // shell would wake for it at once, again and again.
            if !p.proven && p.up && self.active != Some(p.id) {
                earliest(p.proving.map(|pr| pr.due));
            }
        }
        next
    }

    /// Whether data moved (keepalives aside) within WireGuard's keepalive timeout: the shell
    /// then observes often, otherwise rarely (the data plane reports the first packet after a
    /// quiet spell).
    pub fn is_busy(&self, now: Instant) -> bool {
        self.lazy.busy(now, IN_USE)
    }

    /// Our offer or answer as it stands.
    pub fn local_description(&self) -> OfferAnswer {
        OfferAnswer {
            ice: self.config.ice.then(|| self.local.clone()),
            wg_listen_port: self.config.wg_listen_port,
            version: self.config.version.clone(),
            relay_server_address: self.home_relay.clone(),
            relay_server_ip: None,
            session_id: Some(self.session_id),
        }
    }

    /// An offer (`is_offer`) or answer from the peer.
    pub fn handle_remote_description(&mut self, now: Instant, desc: OfferAnswer, is_offer: bool) {
        self.heard_from = true;
        self.lazy.remote_version(&desc.version);
        // The peer wants the connection: an idle one opens (NetBird: any message but GO_IDLE).
        self.wake(now, ActivityReason::Signal, false);
        if let Some(relay) = desc.relay_server_address {
            if self.remote_relay.as_ref() != Some(&relay) {
                let moved = self.remote_relay.is_some();
                self.remote_relay = Some(relay);
                if moved && !self.controlling {
                    // We open through the peer's relay: it moved, so our path follows.
                    self.drop_relay(now, SwitchReason::RemoteRestarted);
                }
            }
        }
        if let Some(remote) = desc.ice.filter(|c| c.is_valid()) {
            let restarted = self.ice.as_ref().is_some_and(|s| s.remote != remote);
            if restarted {
                // The peer restarted ICE: our session is over (its pair too) and traffic falls
                // back now, not when the new session connects; fresh credentials answer it.
                self.end_ice(now, SwitchReason::RemoteRestarted);
            }
            self.remote_ice = Some(remote);
        }
        if is_offer {
            let answer = self.local_description();
            self.sent = Some((answer.relay_server_address.clone(), answer.ice.clone()));
            self.actions.push_back(Action::SendAnswer(answer));
        }
        self.maybe_start_ice();
        self.maybe_open_relay(now);
    }

    pub fn handle_remote_candidate(&mut self, now: Instant, candidate: String) {
        self.wake(now, ActivityReason::Signal, true);
        match &self.ice {
            Some(session) => self.actions.push_back(Action::AddRemoteCandidate {
                session: session.id,
                candidate,
            }),
            None if self.pending_candidates.len() < PENDING_CANDIDATES => {
                self.pending_candidates.push(candidate)
            }
            None => {}
        }
    }

    /// The agent of session `id` could not start.
    pub fn handle_ice_start_failed(&mut self, now: Instant, id: PathId) {
        if self.ice.as_ref().is_some_and(|s| s.id == id) {
            self.ice = None;
            self.guard.on_event(now);
        }
    }

    /// ICE of session `id` selected a pair of `kind`: the shell holds its path under `id`.
    pub fn handle_ice_connected(&mut self, now: Instant, id: PathId, kind: PathKind) {
        if self.ice.as_ref().is_none_or(|s| s.id != id) {
            // A session we already left: its path must not serve.
            return;
        }
        self.ice_path = Some(id);
        let mut entry = PathEntry::new(id, kind, now);
        entry.held_until = self.ice_hold(now);
        self.paths.insert(entry);
        self.actions.push_back(Action::Attach(id));
        self.start_proving(now, id);
        self.reselect(now, SwitchReason::Better);
    }

    pub fn handle_ice_state(&mut self, now: Instant, id: PathId, state: IceState) {
        if self.ice.as_ref().is_none_or(|s| s.id != id) {
            return;
        }
        match state {
            IceState::Checking => {}
            IceState::Connected => {
                // Back from Disconnected on the same pair: usable again once it proves itself.
                if let Some(p) = self.paths.get_mut(id).filter(|p| !p.up) {
                    p.up = true;
                    p.proven = false;
                    p.since = now;
                    self.start_proving(now, id);
                }
            }
            IceState::Disconnected => {
                if let Some(p) = self.paths.get_mut(id) {
                    p.up = false;
                    p.proving = None;
                }
                self.reselect(now, SwitchReason::Lost("ICE disconnected"));
            }
            IceState::Failed | IceState::Closed => {
                self.end_ice(now, SwitchReason::Lost("ICE failed"));
                self.guard.on_event(now);
            }
        }
    }

    pub fn handle_relay_opened(&mut self, now: Instant, id: PathId) {
        if self.relay != RelaySlot::Opening(id) {
            self.actions.push_back(Action::CloseRelay { id });
            return;
        }
        self.relay = RelaySlot::Open(id);
        self.paths.insert(PathEntry::new(id, PathKind::Relay, now));
        self.actions.push_back(Action::Attach(id));
        self.start_proving(now, id);
        self.reselect(now, SwitchReason::Better);
    }

    pub fn handle_relay_failed(&mut self, now: Instant, id: PathId) {
        if self.relay == RelaySlot::Opening(id) {
            self.relay = RelaySlot::Idle;
            self.schedule_relay_retry(now);
        }
    }

    pub fn handle_relay_closed(&mut self, now: Instant, id: PathId) {
        if self.relay != RelaySlot::Open(id) {
            return;
        }
        self.relay = RelaySlot::Idle;
        self.remove_path(now, id, SwitchReason::Lost("relay path closed"));
        self.schedule_relay_retry(now);
    }

    /// Our home relay's instance URL (`None`: not connected). Peers learn a change from a fresh
    /// offer, and relay paths wait for a connection.
    /// Also called when the home relay (re)connects under the same URL: a relay path waiting
    /// for its retry opens at once.
    pub fn handle_home_relay(&mut self, now: Instant, url: Option<String>) {
        let changed = self.home_relay != url;
        self.home_relay = url;
        if self.home_relay.is_some() && self.relay == RelaySlot::Idle {
            self.relay_retry = None;
            self.maybe_open_relay(now);
        }
        if changed {
            self.offer_if_changed();
        }
    }

    pub fn handle_signal_connected(&mut self, now: Instant) {
        // Offers sent while the server was away were lost.
        if !self.ice_carries_traffic() && !self.lazy.is_idle() {
            self.guard.on_event(now);
        }
    }

    /// The platform's word on the network. Back online after a change, ICE gathers anew (its
    /// candidates belong to the old network) while the relay carries traffic.
    pub fn handle_network(&mut self, now: Instant, online: bool) {
        self.online = online;
        if !online || self.lazy.is_idle() {
            return;
        }
        self.end_ice(now, SwitchReason::NetworkChanged);
        self.guard.offer_now(now);
    }

    /// The data plane's newest observations of this peer.
    pub fn handle_observations(&mut self, now: Instant, obs: &PeerObservations) {
        self.handshake = Some((now, obs.since_handshake));
        if let Some(moved) = self.lazy.packets(now, obs.tx_packets, obs.rx_packets) {
            // Data needs the peer: an idle connection opens, and offers at once.
            self.wake(now, moved, true);
        }
        if obs.no_path_drops > self.no_path_drops {
            self.no_path_drops = obs.no_path_drops;
            self.waiting = obs.since_handshake.is_none();
        }
        // Paths the data plane no longer has (the app detached them) are gone.
        let vanished: Vec<PathId> = self
            .paths
            .iter()
            .map(|p| p.id)
            .filter(|id| obs.paths.iter().all(|s| s.id != *id))
            .collect();
        for id in vanished {
            if self.ice_path == Some(id) {
                self.ice_path = None;
            }
            self.remove_path(now, id, SwitchReason::Lost("path detached"));
        }
        for seen in &obs.paths {
            if self.paths.get(seen.id).is_none() {
                // A path the data plane made (a direct endpoint learned by roaming) or the app
                // attached: already attached, judged like any other.
                self.paths.insert(PathEntry::new(seen.id, seen.kind, now));
            }
        }
        let mut verdicts = Vec::new();
        let mut probes = Vec::new();
        let ids = self.paths.ids();
        for id in ids {
            let Some(seen) = obs.paths.iter().find(|s| s.id == id) else {
                continue;
            };
            let ctx = {
                let Some(p) = self.paths.get(id) else { continue };
                self.watch_context(id, &p.watcher)
            };
            let Some(p) = self.paths.get_mut(id) else { continue };
            p.observed = seen.observations;
            if p.observed.last_rx.is_some_and(|t| t >= p.since) && !p.proven {
                p.proven = true;
                p.proving = None;
                if p.kind == PathKind::Relay {
                    self.relay_failures = 0;
                }
            }
            if p.kind == PathKind::Direct && p.is_stale() && p.observed.last_rx.is_some_and(|t| t > p.since) {
                // A direct endpoint has no session to replace: fresh proof restores it.
                p.watcher = watcher::Watcher::new();
                p.since = now;
            }
            match p.watcher.update(now, &p.observed, ctx) {
                Some(Watch::Probe) => probes.push(id),
                Some(Watch::Verdict(reason)) => verdicts.push((id, reason)),
                None => {}
            }
        }
        if let (true, None, Some(id), true) = (self.waiting, obs.since_handshake, self.active, self.online) {
            // Data waited while there was no path; the handshake WireGuard tried then was lost.
            self.waiting = false;
            probes.push(id);
        }
        self.floor_check(now, obs.since_handshake, &mut verdicts);
        for id in probes {
            self.send_handshake(now, id);
        }
        for (id, reason) in verdicts {
            self.on_stale(now, id, reason);
        }
        self.reselect(now, SwitchReason::Better);
        if self.ice_carries_traffic() {
            self.guard.on_connected();
        }
        if self
            .active
            .is_some_and(|id| self.paths.get(id).is_some_and(|p| p.proven))
        {
            self.lazy.connected();
        }
    }

    /// The peer sent `GO_IDLE`: it closed its side, so we close ours (without answering).
    pub fn handle_remote_go_idle(&mut self, now: Instant) {
        if self.lazy.go_idle(ActivityReason::RemoteIdle) {
            self.close_for_idle(now, ActivityReason::RemoteIdle, false);
        }
    }

    /// The relay brought a packet from the peer while we had no relay path to it: it wants the
    /// connection.
    pub fn handle_relay_traffic(&mut self, now: Instant) {
        self.wake(now, ActivityReason::RelayTraffic, true);
    }

    /// Deadlines: the guard's offers, the relay's retry, probes that prove new paths.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.lazy.inactive(now) {
            let reason = self.lazy.inactive_reason();
            if self.lazy.go_idle(reason) {
                self.close_for_idle(now, reason, true);
            }
        }
        if !self.online || self.lazy.is_idle() {
            return;
        }
        if self.relay_retry.is_some_and(|t| now >= t) {
            self.relay_retry = None;
            self.maybe_open_relay(now);
        }
        self.proving_timeouts(now);
        let mut released = false;
        for p in self.paths.iter_mut() {
            if p.held_until.is_some_and(|h| now >= h) {
                p.held_until = None;
                released = true;
            }
        }
        if released {
            self.reselect(now, SwitchReason::Better);
        }
        let paths = self.guard_paths();
        if self.guard.poll_offer(now, paths, &mut self.rng) {
            self.send_offer();
        }
    }

    /// The peer leaves: close everything.
    pub fn close(&mut self) {
        if self.ice.take().is_some() {
            self.actions.push_back(Action::CloseIce);
        }
        if let RelaySlot::Opening(id) | RelaySlot::Open(id) = self.relay {
            self.actions.push_back(Action::CloseRelay { id });
        }
        self.relay = RelaySlot::Idle;
        for id in self.paths.ids() {
            self.actions.push_back(Action::Detach(id));
        }
        self.paths = Paths::default();
        self.active = None;
    }

    /// The app changed whether the peer may go idle (`None`: always-on). An idle peer that may
    /// no longer be idle wakes.
    pub fn set_lazy(&mut self, now: Instant, threshold: Option<Duration>) {
        if self.lazy.set_threshold(threshold) && self.lazy.is_idle() {
            // Outbound: it is wanted open, so it offers.
            self.wake(now, ActivityReason::Outbound, true);
        }
    }

    pub fn status(&self, now: Instant) -> ConnStatus {
        status::build(self, now)
    }
}
