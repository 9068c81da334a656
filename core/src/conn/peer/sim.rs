//! Simulation of one `Conn` against a simulated peer and network: hours of network weather in
//! seconds, with the watcher's invariants checked at every step (DESIGN 3, issue 9's tests).
//!
//! The world: the peer answers offers, ICE connects a while after a session starts, the relay
//! opens on request. Traffic (when on) leaves on the active path every step; the peer answers
//! on the same path unless a fault drops it. Faults: WireGuard dropped on a path (all of it, or
//! data only, handshakes passing), random loss, the network going away, the peer restarting
//! its ICE session, the device sleeping (a clock jump).

// Built for the fuzz target too (`sim/fuzz.rs`), which drives the world without the tests;
// its panics are the assertions a harness makes.
#![cfg_attr(not(test), allow(dead_code))]
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::watcher::Health;
use super::*;
use crate::conn::plane::PathObservation;
use crate::keys::PrivateKey;
use crate::path::PathObservations;

// In the tests for its regression tests, which use only some of its inputs.
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
pub(crate) mod fuzz;

/// One simulation step: the data plane's busy observation tick.
const STEP: Duration = Duration::from_millis(250);
/// Round trip on every simulated path.
const RTT: Duration = Duration::from_millis(20);
/// The Conn's own bound on handshakes per path and minute, checked from outside: a path gets the
/// watcher's probes, proving rounds and a switch's handshake within it.
const MAX_PROBES_PER_MINUTE: usize = super::paths::HANDSHAKES_PER_MINUTE;
/// ICE connects this long after a session starts and the peer answered.
const ICE_CONNECT: Duration = Duration::from_millis(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// All WireGuard dropped (STUN passing): NetBird's issue 4769.
    DropAll,
    /// Data dropped, handshakes passing.
    DropData,
}

struct SimPath {
    kind: PathKind,
    obs: PathObservations,
    /// Whether this path ever had a fault or loss (only faultless paths must never be condemned).
    ever_faulted: bool,
}

struct World {
    rng: StdRng,
    now: Instant,
    conn: Conn,
    controlling: bool,
    online: bool,
    traffic: bool,
    loss: f64,
    ice_fault: Fault,
    relay_fault: Fault,
    remote_creds: IceCredentials,
    /// Started ICE sessions waiting to connect: id → when.
    ice_pending: Option<(PathId, Instant)>,
    relay_pending: Option<(PathId, Instant)>,
    attached: HashMap<PathId, SimPath>,
    active: Option<PathId>,
    last_handshake: Option<Instant>,
    /// Probes per path, with their times (for the rate bound).
    probes: HashMap<PathId, Vec<Instant>>,
    /// A fault on the active path under traffic: since when, and on which path.
    fault_watch: Option<(PathId, Instant)>,
    log: Vec<String>,
    worst_heal: Duration,
    heals: usize,
    verdicts_on_healthy: usize,
    /// Whether `check` holds the watcher to the weather's deadlines and verdicts; off when the
    /// fuzz target's arbitrary inputs (sleeps, relay and ICE events) make their bookkeeping
    /// of which path had a fault meaningless.
    judge_verdicts: bool,
    /// Probes allowed on one path in any minute: [`MAX_PROBES_PER_MINUTE`] in the simulation.
    probe_budget: usize,
}

impl World {
    fn new(seed: u64, controlling: bool) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let config = config_with_role(controlling, &mut rng);
        let now = Instant::from_epoch(Duration::from_secs(1000));
        let conn = Conn::new(
            config,
            now,
            StdRng::seed_from_u64(seed ^ 0x5eed),
            PathIds::default(),
        );
        let remote_creds = IceCredentials::generate_with(&mut rng);
        let mut w = Self {
            rng,
            now,
            conn,
            controlling,
            online: true,
            traffic: true,
            loss: 0.0,
            ice_fault: Fault::None,
            relay_fault: Fault::None,
            remote_creds,
            ice_pending: None,
            relay_pending: None,
            attached: HashMap::new(),
            active: None,
            last_handshake: None,
            probes: HashMap::new(),
            fault_watch: None,
            log: Vec::new(),
            worst_heal: Duration::ZERO,
            heals: 0,
            verdicts_on_healthy: 0,
            judge_verdicts: true,
            probe_budget: MAX_PROBES_PER_MINUTE,
        };
        w.conn.handle_home_relay(now, Some("rels://relay.sim/".into()));
        w.drain();
        w
    }

    fn remote_description(&self) -> OfferAnswer {
        OfferAnswer {
            ice: Some(self.remote_creds.clone()),
            wg_listen_port: 51820,
            version: "0.77.1".into(),
            relay_server_address: Some("rels://relay.sim/".into()),
            relay_server_ip: None,
            session_id: None,
        }
    }

    fn fault_of(&self, kind: PathKind) -> Fault {
        match kind {
            PathKind::IceP2p | PathKind::IceTurn => self.ice_fault,
            PathKind::Relay | PathKind::Direct => self.relay_fault,
        }
    }

    /// Executes the connection's actions against the simulated world, checking as it goes.
    fn drain(&mut self) {
        while let Some(action) = self.conn.poll_action() {
            match action {
                Action::SendOffer(_) | Action::SendAnswer(_) => {
                    assert!(self.online, "an offer went out while offline\n{}", self.trace());
                    if matches!(action, Action::SendOffer(_)) {
                        // The peer answers at once (it is a simulation of a quick signal).
                        let answer = self.remote_description();
                        self.conn.handle_remote_description(self.now, answer, false);
                    }
                }
                Action::StartIce(start) => {
                    assert!(self.online, "ICE started while offline\n{}", self.trace());
                    self.ice_pending = Some((start.id, self.now + ICE_CONNECT));
                }
                Action::AddRemoteCandidate { .. } | Action::ReconnectRelay => {}
                Action::SendGoIdle | Action::Idle(..) => {
                    panic!("lazy connections are off in this simulation\n{}", self.trace())
                }
                Action::CloseIce => self.ice_pending = None,
                Action::OpenRelay { id, .. } => {
                    assert!(self.online, "relay opened while offline\n{}", self.trace());
                    self.relay_pending = Some((id, self.now + Duration::from_millis(100)));
                }
                Action::CloseRelay { id } => {
                    if self.relay_pending.is_some_and(|(p, _)| p == id) {
                        self.relay_pending = None;
                    }
                }
                Action::Attach(id) => {
                    let kind = self
                        .conn
                        .paths
                        .get(id)
                        .map(|p| p.kind)
                        .expect("attached paths are the connection's");
                    let mut obs = PathObservations::default();
                    if !self.controlling && self.online && self.fault_of(kind) == Fault::None {
                        // The peer controls: it proves the new path with a handshake on it.
                        obs.last_rx = Some(self.now + RTT);
                        obs.last_handshake_rx = obs.last_rx;
                    }
                    self.attached.insert(
                        id,
                        SimPath {
                            kind,
                            obs,
                            ever_faulted: self.loss > 0.0 || self.fault_of(kind) != Fault::None,
                        },
                    );
                }
                Action::Detach(id) => {
                    self.attached.remove(&id);
                    if self.active == Some(id) {
                        self.active = None;
                    }
                }
                Action::Activate(id) => {
                    assert!(
                        id.is_none_or(|id| self.attached.contains_key(&id)),
                        "activated an unattached path"
                    );
                    self.active = id;
                }
                Action::SendHandshake(id) => {
                    assert!(self.online, "a probe went out while offline\n{}", self.trace());
                    let times = self.probes.entry(id).or_default();
                    times.push(self.now);
                    let minute_ago = self.now.checked_sub(Duration::from_secs(60));
                    times.retain(|t| Some(*t) > minute_ago);
                    assert!(
                        times.len() <= self.probe_budget,
                        "{} probes on one path within a minute\n{}",
                        times.len(),
                        self.trace()
                    );
                    self.send_on(id, true);
                }
                Action::Switched(s) => {
                    if let SwitchReason::Stale(_) = s.reason {
                        let healthy = self.active_before_switch(&s).is_some_and(|p| !p.ever_faulted);
                        if healthy {
                            self.verdicts_on_healthy += 1;
                        }
                    }
                    self.log.push(format!("{:>9.2}s {s}", self.secs()));
                }
            }
        }
    }

    fn active_before_switch(&self, s: &Switch) -> Option<&SimPath> {
        let from = s.from?;
        self.attached.values().find(|p| p.kind == from)
    }

    /// One datagram out on `id`; the peer answers on the same path unless the path drops it.
    fn send_on(&mut self, id: PathId, handshake: bool) {
        let now = self.now;
        let lost = self.loss > 0.0 && self.rng.gen_bool(self.loss);
        let Some(p) = self.attached.get_mut(&id) else {
            return;
        };
        p.obs.last_tx = Some(now);
        p.obs.tx_unanswered_since.get_or_insert(now);
        let fault = match p.kind {
            PathKind::IceP2p | PathKind::IceTurn => self.ice_fault,
            PathKind::Relay | PathKind::Direct => self.relay_fault,
        };
        let passes = match fault {
            Fault::None => true,
            Fault::DropAll => false,
            Fault::DropData => handshake,
        };
        if fault != Fault::None || self.loss > 0.0 {
            p.ever_faulted = true;
        }
        if !self.online || lost || !passes {
            return;
        }
        let back = now + RTT;
        p.obs.last_rx = Some(back);
        p.obs.tx_unanswered_since = None;
        if handshake {
            p.obs.last_handshake_rx = Some(back);
            p.obs.rtt = Some(RTT);
            self.last_handshake = Some(back);
        } else {
            p.obs.last_data_rx = Some(back);
        }
    }

    fn observations(&self) -> PeerObservations {
        PeerObservations {
            paths: self
                .attached
                .iter()
                .map(|(id, p)| PathObservation {
                    id: *id,
                    kind: p.kind,
                    observations: p.obs,
                })
                .collect(),
            since_handshake: self.last_handshake.map(|t| self.now.saturating_duration_since(t)),
            no_path_drops: 0,
            tx_packets: 0,
            rx_packets: 0,
        }
    }

    fn step(&mut self) {
        self.now = self.now + STEP;
        if let Some((id, _)) = self.ice_pending.filter(|(_, at)| self.now >= *at) {
            self.ice_pending = None;
            self.conn.handle_ice_connected(self.now, id, PathKind::IceP2p);
            self.drain();
        }
        if let Some((id, _)) = self.relay_pending.filter(|(_, at)| self.now >= *at) {
            self.relay_pending = None;
            self.conn.handle_relay_opened(self.now, id);
            self.drain();
        }
        if self.traffic {
            if let Some(id) = self.active {
                self.send_on(id, false);
                // WireGuard rekeys every 2 min under traffic.
                if self
                    .last_handshake
                    .is_none_or(|t| self.now - t > Duration::from_secs(120))
                {
                    self.send_on(id, true);
                }
            }
        }
        let obs = self.observations();
        self.conn.handle_observations(self.now, &obs);
        self.conn.handle_timeout(self.now);
        self.drain();
        self.check();
    }

    fn check(&mut self) {
        let status = self.conn.status(self.now);
        // A lower path never carries traffic while a higher one has current proof of life.
        let active_kind = status
            .active
            .and_then(|id| status.paths.iter().find(|p| p.id == id))
            .map(|p| p.kind);
        for p in &status.paths {
            let current = p.last_proof.is_some_and(|age| age <= STEP * 2);
            let usable = p.usable && !matches!(p.health, Health::Stale(_));
            if current && usable && Some(p.id) != status.active {
                if let Some(active) = active_kind {
                    assert!(
                        p.kind <= active,
                        "{} carries traffic while {} has current proof\n{}",
                        active,
                        p.kind,
                        self.trace()
                    );
                }
            }
        }
        if !self.judge_verdicts {
            return;
        }
        // A path silent under traffic is condemned (traffic moves) within its deadline.
        let bound = if self.controlling {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(9)
        };
        if let Some((id, since)) = self.fault_watch {
            if self.active != Some(id) {
                self.worst_heal = self.worst_heal.max(self.now - since);
                self.heals += 1;
                self.fault_watch = None;
            } else {
                assert!(
                    self.now - since <= bound,
                    "the active path stayed silent for {:?} without a verdict\n{}",
                    self.now - since,
                    self.trace()
                );
            }
        }
        assert_eq!(
            self.verdicts_on_healthy,
            0,
            "a path that answers was condemned\n{}",
            self.trace()
        );
    }

    /// A random change of the weather.
    fn weather(&mut self) {
        let roll: u32 = self.rng.gen_range(0..100);
        self.weather_roll(roll);
    }

    /// The change of weather that `roll` (0..100) picks.
    fn weather_roll(&mut self, roll: u32) {
        self.fault_watch = None;
        match roll {
            0..=24 => {
                self.ice_fault = if self.ice_fault == Fault::None {
                    Fault::DropAll
                } else {
                    Fault::None
                };
                self.watch_fault();
            }
            25..=34 => {
                self.ice_fault = if self.ice_fault == Fault::None {
                    Fault::DropData
                } else {
                    Fault::None
                };
            }
            35..=44 => {
                self.relay_fault = if self.relay_fault == Fault::None {
                    Fault::DropAll
                } else {
                    Fault::None
                };
                self.watch_fault();
            }
            45..=59 => self.loss = if self.loss > 0.0 { 0.0 } else { 0.05 },
            60..=69 => {
                // Offline for a while, then back on a new network.
                self.online = false;
                self.conn.handle_network(self.now, false);
                self.drain();
                let offline = Duration::from_secs(self.rng.gen_range(1..30));
                self.run_for(offline);
                self.online = true;
                self.conn.handle_network(self.now, true);
            }
            70..=79 => {
                // The peer restarts ICE (a new offer with new credentials).
                self.remote_creds = IceCredentials::generate_with(&mut self.rng);
                if self.online {
                    let offer = self.remote_description();
                    self.conn.handle_remote_description(self.now, offer, true);
                }
            }
            80..=89 => {
                // Quiet for a while.
                self.traffic = false;
                let quiet = Duration::from_secs(self.rng.gen_range(1..300));
                self.run_for(quiet);
                self.traffic = true;
            }
            _ => {
                // The device sleeps: time jumps, nothing was observed meanwhile.
                self.now = self.now + Duration::from_secs(self.rng.gen_range(60..3600));
            }
        }
        self.drain();
    }

    /// Starts the deadline check when the active path just lost all WireGuard under traffic
    /// and another healthy path is there to take over.
    fn watch_fault(&mut self) {
        let Some(id) = self.active else { return };
        let Some(kind) = self.attached.get(&id).map(|p| p.kind) else {
            return;
        };
        let other_healthy = self
            .attached
            .iter()
            .any(|(o, p)| *o != id && self.fault_of(p.kind) == Fault::None);
        let proven = self.conn.paths.get(id).is_some_and(|p| p.proven);
        if self.fault_of(kind) == Fault::DropAll
            && self.traffic
            && self.online
            && self.loss == 0.0
            && other_healthy
            && proven
        {
            self.fault_watch = Some((id, self.now));
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.step();
        }
    }

    fn secs(&self) -> f64 {
        (self.now - Instant::from_epoch(Duration::from_secs(1000))).as_secs_f64()
    }

    fn trace(&self) -> String {
        let tail: Vec<&String> = self.log.iter().rev().take(12).collect();
        format!(
            "at {:.2}s: controlling={} online={} traffic={} loss={} ice={:?} relay={:?} active={:?}\nstatus: {:?}\nswitches (newest first): {:#?}",
            self.secs(),
            self.controlling,
            self.online,
            self.traffic,
            self.loss,
            self.ice_fault,
            self.relay_fault,
            self.active,
            self.conn.status(self.now),
            tail
        )
    }
}

/// A configuration with ICE and relay whose own key controls (or not).
pub(super) fn config_with_role(controlling: bool, rng: &mut StdRng) -> ConnConfig {
    let (own, peer) = loop {
        let a = PrivateKey::from_bytes(rng.gen()).public_key();
        let b = PrivateKey::from_bytes(rng.gen()).public_key();
        if crate::ice::is_controlling(&a, &b) == controlling {
            break (a, b);
        }
    };
    ConnConfig {
        own,
        peer,
        ice: true,
        relay: true,
        wg_listen_port: 51820,
        version: "test".into(),
        lazy: None,
    }
}

/// Runs `minutes` of weather changing every 10–60 s.
fn run(seed: u64, controlling: bool, minutes: u64) -> World {
    let mut w = World::new(seed, controlling);
    let end = w.now + Duration::from_secs(minutes * 60);
    while w.now < end {
        let calm = Duration::from_secs(w.rng.gen_range(10..60));
        w.run_for(calm);
        w.weather();
    }
    w
}

#[test]
fn hours_of_weather_keep_the_watcher_invariants_in_both_roles() {
    for controlling in [true, false] {
        let (mut worst, mut heals) = (Duration::ZERO, 0);
        for seed in 0..16 {
            let w = run(seed, controlling, 60);
            worst = worst.max(w.worst_heal);
            heals += w.heals;
        }
        println!("controlling={controlling}: {heals} faults on the active path healed, worst {worst:?}");
        assert!(
            heals >= 10,
            "only {heals} faults were healed: the simulation tested too little"
        );
    }
}

#[test]
fn a_dropped_ice_path_hands_traffic_to_the_relay_within_five_seconds() {
    let mut w = World::new(42, true);
    for _ in 0..40 {
        w.step();
    }
    let ice = w.conn.ice_path.expect("ICE connected");
    assert_eq!(w.active, Some(ice), "ICE carries traffic\n{}", w.trace());
    w.ice_fault = Fault::DropAll;
    let fault_at = w.now;
    while w.active == Some(ice) {
        w.step();
        assert!(w.now - fault_at <= Duration::from_secs(5), "{}", w.trace());
    }
    let relay = w.active.and_then(|id| w.attached.get(&id)).map(|p| p.kind);
    assert_eq!(relay, Some(PathKind::Relay), "{}", w.trace());
    let last = w.conn.status(w.now).switches.last().map(|s| s.to_string());
    assert!(
        last.as_deref()
            .is_some_and(|s| s.starts_with("ice-p2p → relay: no answer to 3 probes")),
        "{last:?}"
    );
    // The fault clears: a new ICE session connects, proves itself and takes over again.
    w.ice_fault = Fault::None;
    for _ in 0..40 {
        w.step();
    }
    let back = w.active.and_then(|id| w.attached.get(&id)).map(|p| p.kind);
    assert_eq!(back, Some(PathKind::IceP2p), "{}", w.trace());
}

#[test]
fn five_percent_loss_for_an_hour_condemns_nothing() {
    let mut w = World::new(7, true);
    w.loss = 0.05;
    for _ in 0..(3600 * 4) {
        w.step();
    }
    let stale = w
        .conn
        .status(w.now)
        .switches
        .iter()
        .filter(|s| matches!(s.reason, SwitchReason::Stale(_)))
        .count();
    assert_eq!(stale, 0, "{}", w.trace());
}
