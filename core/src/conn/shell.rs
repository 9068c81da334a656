//! The thin async shell around the pure per-peer [`Conn`]s: one task per engine turns signal
//! messages, ICE and relay callbacks, the platform's network reports and the data plane's
//! observations into `handle_*` calls, and carries out the actions the connections poll. It
//! keeps the handles (ICE workers, relay paths, path objects waiting to be attached) by path
//! id and decides nothing itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::{OsRng, StdRng};
use rand::SeedableRng;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;

use super::peer::{Action, Conn, ConnConfig, IceStart, PathIds};
use super::plane::{DataPlane, PlaneEvent};
use super::{ControlStatus, VERSION};
use crate::clock::Instant;
use crate::events::Event;
use crate::ice::{IceConfig, IceEvent, IceSession, IceSocket, IceWorker, PathBinding};
use crate::keys::PublicKey;
use crate::path::{Inbound, Path, PathId};
use crate::relay::{RelayManager, RelayPath};
use crate::signal::{HandshakeEvent, Handshaker, Incoming, SignalHandle, SignalMessage, SignalState};

/// Queue of signal messages waiting to be sent. A burst is an offer and a handful of
/// candidates per peer; 1024 covers a hundred peers reconnecting at once.
const OUTBOX_CAPACITY: usize = 1024;
/// ICE events of all peers, funnelled into the loop (each worker has its own bounded queue
/// before this one).
const ICE_EVENTS_CAPACITY: usize = 256;
/// Results of spawned work (relay opens and closes, ICE starts).
const DONE_CAPACITY: usize = 256;
/// Remote candidates held while an ICE agent starts: a session's worth.
const STARTING_CANDIDATES: usize = 64;
/// The data plane is observed this often while a peer's active path carries traffic: the
/// watcher's suspicion comes after 1 s, so a quarter of it keeps verdicts on time.
const BUSY_OBSERVE: Duration = Duration::from_millis(250);
/// …and this often when every peer is quiet: the data plane reports the first packet after a
/// quiet spell itself (`PlaneEvent::Activity`), so this only refreshes status and the
/// handshake floor (3 min 30 s) while an idle engine sleeps.
const QUIET_OBSERVE: Duration = Duration::from_secs(30);

/// What the control plane runs on, handed over by the engine.
pub(crate) struct ControlPlane {
    pub plane: Arc<dyn DataPlane>,
    pub own: PublicKey,
    pub wg_listen_port: u16,
    pub ids: PathIds,
    pub inbound: mpsc::Sender<Inbound>,
    pub events: broadcast::Sender<Event>,
    /// The configured peers' keys, and whether each is always-on.
    pub peers: watch::Receiver<Vec<(PublicKey, bool)>>,
    /// Lazy connections' inactivity threshold; `None`: off.
    pub lazy: Option<Duration>,
    pub online: watch::Receiver<bool>,
    pub status: Arc<Mutex<ControlStatus>>,
    pub plane_events: mpsc::Receiver<PlaneEvent>,
    pub ice: Option<IceConfig>,
    pub relay: Option<Arc<RelayManager>>,
    /// Signal and what it receives; `None` runs direct paths only.
    pub signal: Option<(SignalHandle, mpsc::Receiver<Incoming>)>,
    /// New STUN/TURN servers and credentials (from management), for the next ICE sessions.
    pub ice_updates: watch::Receiver<Option<IceConfig>>,
    /// The engine's UDP socket for ICE (DESIGN 2): every session runs on it.
    pub ice_socket: Option<IceSocket>,
}

/// Results of work the loop spawned.
enum Done {
    RelayOpened {
        peer: PublicKey,
        id: PathId,
        result: Result<Arc<RelayPath>, String>,
    },
    RelayClosed {
        peer: PublicKey,
        id: PathId,
    },
    IceStarted {
        peer: PublicKey,
        id: PathId,
        result: Result<Arc<IceWorker>, String>,
    },
}

enum IceRun {
    Starting { id: PathId, candidates: Vec<String> },
    Running { id: PathId, worker: Arc<IceWorker> },
}

impl IceRun {
    fn id(&self) -> PathId {
        match self {
            IceRun::Starting { id, .. } | IceRun::Running { id, .. } => *id,
        }
    }
}

/// One peer: its pure connection and the handles its actions refer to.
struct PeerShell {
    conn: Conn,
    ice: Option<IceRun>,
    /// Path objects waiting for `Attach`.
    held: HashMap<PathId, Arc<dyn Path>>,
    relays: HashMap<PathId, Arc<RelayPath>>,
}

struct Shell {
    plane: Arc<dyn DataPlane>,
    own: PublicKey,
    wg_listen_port: u16,
    ids: PathIds,
    inbound: mpsc::Sender<Inbound>,
    events: broadcast::Sender<Event>,
    status: Arc<Mutex<ControlStatus>>,
    ice: Option<IceConfig>,
    ice_socket: Option<IceSocket>,
    relay: Option<Arc<RelayManager>>,
    signal: Option<SignalHandle>,
    handshaker: Handshaker,
    peers: HashMap<PublicKey, PeerShell>,
    outbox: mpsc::Sender<(PublicKey, SignalMessage)>,
    ice_events: mpsc::Sender<(PublicKey, PathId, IceEvent)>,
    done: mpsc::Sender<Done>,
    tasks: JoinSet<()>,
    online: bool,
    /// Signal messages from keys that are not configured peers, ignored.
    unknown_senders: u64,
    next_observe: Instant,
    lazy: Option<Duration>,
    /// Relay peer ids of the configured peers, to find who sent a packet we had no path for.
    relay_ids: HashMap<crate::relay::messages::PeerId, PublicKey>,
}

/// Runs the control plane until `shutdown`, then closes ICE agents, relays and signal.
pub(crate) async fn run(cp: ControlPlane, mut shutdown: watch::Receiver<bool>) {
    let ControlPlane {
        plane,
        own,
        wg_listen_port,
        ids,
        inbound,
        events,
        mut peers,
        mut online,
        status,
        mut plane_events,
        lazy,
        ice,
        relay,
        signal,
        mut ice_updates,
        ice_socket,
    } = cp;
    let mut relay_state = relay.as_ref().map(|r| r.state());
    let mut relay_events = relay.as_ref().map(|r| r.subscribe());
    let (signal, mut incoming) = match signal {
        Some((handle, incoming)) => (Some(handle), Some(incoming)),
        None => (None, None),
    };
    let mut signal_state = signal.as_ref().map(|s| s.state());
    let (outbox, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
    let (ice_events, mut ice_rx) = mpsc::channel(ICE_EVENTS_CAPACITY);
    let (done, mut done_rx) = mpsc::channel(DONE_CAPACITY);
    let mut tasks = JoinSet::new();
    if let Some(signal) = &signal {
        tasks.spawn(send_loop(signal.clone(), outbox_rx));
    }
    let now = Instant::now();
    let mut s = Shell {
        plane,
        own,
        wg_listen_port,
        ids,
        inbound,
        events,
        status,
        ice,
        ice_socket,
        relay,
        signal,
        handshaker: Handshaker::new(),
        peers: HashMap::new(),
        outbox,
        ice_events,
        done,
        tasks,
        online: *online.borrow_and_update(),
        unknown_senders: 0,
        next_observe: now,
        relay_ids: HashMap::new(),
        lazy,
    };
    // A server state that changed between the engine's first reading and these receivers
    // would never be seen as a change: take the current ones now.
    if let Some(state) = signal_state.as_mut().map(|rx| rx.borrow_and_update().clone()) {
        if s.status.lock().signal.as_ref() != Some(&state) {
            s.on_signal_state(state, now);
        }
    }
    if let Some(state) = relay_state.as_mut().map(|rx| rx.borrow_and_update().clone()) {
        if s.status.lock().relay.as_ref() != Some(&state) {
            s.on_relay_state(state, now);
        }
    }
    let keys = peers.borrow_and_update().clone();
    s.sync_peers(&keys, now);
    loop {
        s.flush();
        let deadline = s.next_deadline();
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Ok(()) = peers.changed() => {
                let keys = peers.borrow_and_update().clone();
                s.sync_peers(&keys, Instant::now());
            }
            Ok(()) = online.changed() => {
                let is_online = *online.borrow_and_update();
                s.on_network(is_online, Instant::now()).await;
            }
            Some((from, msg)) = recv(&mut incoming) => s.on_signal(from, msg, Instant::now()),
            Some((peer, id, event)) = ice_rx.recv() => s.on_ice(peer, id, event, Instant::now()),
            Some(done) = done_rx.recv() => s.on_done(done, Instant::now()),
            Some(event) = plane_events.recv() => s.on_plane(event, Instant::now()),
            Some(state) = changed(&mut signal_state) => s.on_signal_state(state, Instant::now()),
            Some(state) = changed(&mut relay_state) => s.on_relay_state(state, Instant::now()),
            Ok(()) = ice_updates.changed() => {
                // Sessions running keep their servers; the next ones use these. ICE is never
                // turned off or on mid-run (connections were set up with or without it).
                if let (Some(_), Some(config)) = (&s.ice, ice_updates.borrow_and_update().clone()) {
                    s.ice = Some(config);
                }
            }
            Some(event) = relay_event(&mut relay_events) => s.on_relay_event(event, Instant::now()),
            _ = sleep_until(deadline) => s.on_timeout(Instant::now()),
        }
    }
    s.close().await;
}

impl Shell {
    fn sync_peers(&mut self, peers: &[(PublicKey, bool)], now: Instant) {
        let keys: Vec<PublicKey> = peers.iter().map(|(k, _)| *k).collect();
        let gone: Vec<PublicKey> = self.peers.keys().filter(|k| !keys.contains(k)).copied().collect();
        for key in gone {
            if let Some(mut p) = self.peers.remove(&key) {
                p.conn.close();
                self.execute(key, &mut p, now);
                if let Some(IceRun::Running { worker, .. }) = p.ice.take() {
                    self.tasks.spawn(async move { worker.close().await });
                }
            }
            self.handshaker.remove_peer(&key);
            self.status.lock().peers.remove(&key);
            self.relay_ids.remove(&crate::relay::messages::PeerId::of(&key));
        }
        for (key, always_on) in peers {
            let lazy = self.lazy.filter(|_| !always_on);
            if let Some(p) = self.peers.get_mut(key) {
                p.conn.set_lazy(now, lazy);
                continue;
            }
            let config = ConnConfig {
                own: self.own,
                peer: *key,
                ice: self.ice.is_some(),
                relay: self.relay.is_some(),
                wg_listen_port: self.wg_listen_port,
                version: VERSION.to_owned(),
                lazy,
            };
            self.relay_ids
                .insert(crate::relay::messages::PeerId::of(key), *key);
            let rng = StdRng::from_rng(OsRng).unwrap_or_else(|_| StdRng::from_entropy());
            let mut conn = Conn::new(config, now, rng, self.ids.clone());
            if !self.online {
                conn.handle_network(now, false);
            }
            if let Some(url) = self.relay.as_ref().and_then(|r| r.instance_url()) {
                conn.handle_home_relay(now, Some(url));
            }
            let mut p = PeerShell {
                conn,
                ice: None,
                held: HashMap::new(),
                relays: HashMap::new(),
            };
            // A configured endpoint's path is already attached: let the connection see it.
            if let Some(obs) = self.plane.observe(key) {
                p.conn.handle_observations(now, &obs);
            }
            self.execute(*key, &mut p, now);
            self.peers.insert(*key, p);
        }
        self.next_observe = now;
    }

    fn on_signal(&mut self, from: PublicKey, msg: SignalMessage, now: Instant) {
        if !self.peers.contains_key(&from) {
            self.unknown_senders += 1;
            self.status.lock().signal_unknown_senders = self.unknown_senders;
            // Logged at 1, 2, 4, 8, … so that a flood costs a handful of lines.
            if self.unknown_senders.is_power_of_two() {
                tracing::debug!(peer = %from, kind = msg.kind(), total = self.unknown_senders,
                    "signal from an unconfigured peer ignored");
            }
            return;
        }
        self.handshaker.handle_message(from, msg);
        while let Some(event) = self.handshaker.poll_event() {
            let (peer, input) = match event {
                HandshakeEvent::OfferPending { peer } => {
                    let Some(offer) = self.handshaker.take_offer(&peer) else {
                        continue;
                    };
                    (peer, Input::Description(offer, true))
                }
                HandshakeEvent::Answer { peer, answer } => (peer, Input::Description(answer, false)),
                HandshakeEvent::Candidate { peer, candidate } => (peer, Input::Candidate(candidate)),
                HandshakeEvent::GoIdle { peer } => (peer, Input::GoIdle),
            };
            self.with_peer(peer, now, |conn| match input {
                Input::Description(desc, is_offer) => conn.handle_remote_description(now, desc, is_offer),
                Input::Candidate(c) => conn.handle_remote_candidate(now, c),
                Input::GoIdle => conn.handle_remote_go_idle(now),
            });
        }
    }

    fn on_ice(&mut self, peer: PublicKey, id: PathId, event: IceEvent, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.ice.as_ref().is_none_or(|r| r.id() != id) {
            // An event of a session already left behind.
            return;
        }
        match event {
            IceEvent::LocalCandidate(c) => self.handshaker.candidate(peer, c),
            IceEvent::GatheringComplete => {}
            IceEvent::Connected { path, info } => {
                tracing::info!(%peer, local = %info.local, remote = %info.remote,
                    ms = info.time_to_connect.as_millis() as u64, "ICE connected");
                let path = path.path();
                let kind = path.kind();
                p.held.insert(id, path);
                self.with_peer(peer, now, |conn| conn.handle_ice_connected(now, id, kind));
            }
            IceEvent::State(state) => {
                let _ = self.events.send(Event::IceStateChanged { peer, state });
                self.with_peer(peer, now, |conn| conn.handle_ice_state(now, id, state));
            }
        }
    }

    fn on_done(&mut self, done: Done, now: Instant) {
        match done {
            Done::RelayOpened { peer, id, result } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    if let Ok(path) = result {
                        path.close();
                    }
                    return;
                };
                match result {
                    Ok(path) => {
                        p.relays.insert(id, path.clone());
                        p.held.insert(id, path.clone());
                        // Closure arrives on our own channel, never lost to a lagging broadcast.
                        let done = self.done.clone();
                        self.tasks.spawn(async move {
                            path.closed().await;
                            let _ = done.send(Done::RelayClosed { peer, id }).await;
                        });
                        self.with_peer(peer, now, |conn| conn.handle_relay_opened(now, id));
                    }
                    Err(error) => {
                        tracing::info!(%peer, %error, "relay path not opened; will retry");
                        self.with_peer(peer, now, |conn| conn.handle_relay_failed(now, id));
                    }
                }
            }
            Done::RelayClosed { peer, id } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.relays.remove(&id);
                }
                self.with_peer(peer, now, |conn| conn.handle_relay_closed(now, id));
            }
            Done::IceStarted { peer, id, result } => {
                let current = self
                    .peers
                    .get_mut(&peer)
                    .filter(|p| p.ice.as_ref().is_some_and(|r| r.id() == id));
                let Some(p) = current else {
                    if let Ok(worker) = result {
                        self.tasks.spawn(async move { worker.close().await });
                    }
                    return;
                };
                match result {
                    Ok(worker) => {
                        if let Some(IceRun::Starting { candidates, .. }) = p.ice.take() {
                            for c in candidates {
                                // Bad candidates are counted and logged by the worker.
                                let _ = worker.add_remote_candidate(&c);
                            }
                        }
                        p.ice = Some(IceRun::Running { id, worker });
                    }
                    Err(error) => {
                        tracing::info!(%peer, %error, "ICE did not start; will retry");
                        p.ice = None;
                        self.with_peer(peer, now, |conn| conn.handle_ice_start_failed(now, id));
                    }
                }
            }
        }
    }

    fn on_plane(&mut self, event: PlaneEvent, now: Instant) {
        match event {
            PlaneEvent::PathAdded { peer, .. }
            | PlaneEvent::NoPath { peer }
            | PlaneEvent::FirstProof { peer, .. }
            | PlaneEvent::Activity { peer } => {
                let Some(obs) = self.plane.observe(&peer) else {
                    return;
                };
                self.with_peer(peer, now, |conn| conn.handle_observations(now, &obs));
                if self.peers.get(&peer).is_some_and(|p| p.conn.is_busy(now)) {
                    // Traffic after a quiet spell: the watcher needs its busy cadence now.
                    self.next_observe = self.next_observe.min(now + BUSY_OBSERVE);
                }
            }
        }
    }

    /// A relay event: only a packet from a peer we have no relay path to matters here (an
    /// idle connection wakes; NetBird's peer sends before it offers).
    fn on_relay_event(&mut self, event: crate::relay::RelayEvent, now: Instant) {
        if let crate::relay::RelayEvent::PeerWaiting { peer, .. } = event {
            if let Some(key) = self.relay_ids.get(&peer).copied() {
                self.with_peer(key, now, |conn| conn.handle_relay_traffic(now));
            }
        }
    }

    fn on_signal_state(&mut self, state: SignalState, now: Instant) {
        tracing::info!(?state, "signal state");
        self.status.lock().signal = Some(state.clone());
        let _ = self.events.send(Event::SignalStateChanged(state.clone()));
        if state == SignalState::Connected {
            self.each_peer(now, |conn| conn.handle_signal_connected(now));
        }
    }

    /// The home relay's state changed (a watch, so no change is ever lost). When connected, our
    /// instance URL may be new: peers learn it from a fresh offer, and relay paths that closed
    /// with the old connection open again.
    fn on_relay_state(&mut self, state: crate::relay::RelayState, now: Instant) {
        self.status.lock().relay = Some(state.clone());
        let _ = self.events.send(Event::RelayStateChanged(state.clone()));
        if let crate::relay::RelayState::Connected { instance_url, .. } = state {
            let url = Some(instance_url);
            self.each_peer(now, |conn| conn.handle_home_relay(now, url.clone()));
        }
    }

    /// The platform's network changed (DESIGN 5): reconnect what talks to servers, then let
    /// every connection start over on the new network while the relay carries traffic.
    async fn on_network(&mut self, online: bool, now: Instant) {
        self.online = online;
        if let Some(socket) = &self.ice_socket {
            socket.forget_mappings();
        }
        if online {
            if let Some(signal) = &self.signal {
                signal.reconnect();
            }
            if let Some(relay) = &self.relay {
                relay.network_changed().await;
            }
        }
        self.each_peer(now, |conn| conn.handle_network(now, online));
    }

    fn on_timeout(&mut self, now: Instant) {
        let observe_all = now >= self.next_observe;
        let keys: Vec<PublicKey> = self.peers.keys().copied().collect();
        let mut busy = false;
        for key in keys {
            let due = self
                .peers
                .get(&key)
                .and_then(|p| p.conn.poll_timeout())
                .is_some_and(|t| t <= now);
            if !(observe_all || due) {
                continue;
            }
            let obs = self.plane.observe(&key);
            self.with_peer(key, now, |conn| {
                if let Some(obs) = &obs {
                    conn.handle_observations(now, obs);
                }
                conn.handle_timeout(now);
            });
            busy |= self.peers.get(&key).is_some_and(|p| p.conn.is_busy(now));
        }
        if observe_all {
            self.next_observe = now + if busy { BUSY_OBSERVE } else { QUIET_OBSERVE };
        }
    }

    /// Feeds one input to a peer's connection and carries out what it asks.
    fn with_peer(&mut self, key: PublicKey, now: Instant, f: impl FnOnce(&mut Conn)) {
        let Some(mut p) = self.peers.remove(&key) else {
            return;
        };
        f(&mut p.conn);
        self.execute(key, &mut p, now);
        self.peers.insert(key, p);
    }

    fn each_peer(&mut self, now: Instant, mut f: impl FnMut(&mut Conn)) {
        let keys: Vec<PublicKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.with_peer(key, now, &mut f);
        }
    }

    /// Carries out a connection's actions, in order.
    fn execute(&mut self, peer: PublicKey, p: &mut PeerShell, now: Instant) {
        let mut switched = Vec::new();
        while let Some(action) = p.conn.poll_action() {
            match action {
                Action::SendOffer(offer) => {
                    tracing::debug!(%peer, "sending offer");
                    self.handshaker.offer(peer, offer);
                }
                Action::SendAnswer(answer) => {
                    self.handshaker.answer(peer, answer);
                }
                Action::StartIce(start) => self.start_ice(peer, p, start),
                Action::AddRemoteCandidate { session, candidate } => match &mut p.ice {
                    Some(IceRun::Running { id, worker }) if *id == session => {
                        let _ = worker.add_remote_candidate(&candidate);
                    }
                    Some(IceRun::Starting { id, candidates }) if *id == session => {
                        if candidates.len() < STARTING_CANDIDATES {
                            candidates.push(candidate);
                        }
                    }
                    Some(IceRun::Running { .. } | IceRun::Starting { .. }) | None => {}
                },
                Action::CloseIce => {
                    if let Some(IceRun::Running { worker, .. }) = p.ice.take() {
                        self.tasks.spawn(async move { worker.close().await });
                    }
                }
                Action::OpenRelay { id, server } => self.open_relay(peer, id, server),
                Action::CloseRelay { id } => {
                    p.held.remove(&id);
                    if let Some(path) = p.relays.remove(&id) {
                        path.close();
                    }
                }
                Action::ReconnectRelay => {
                    if let Some(relay) = self.relay.clone() {
                        self.tasks.spawn(async move { relay.network_changed().await });
                    }
                }
                Action::Attach(id) => {
                    let Some(path) = p.held.remove(&id) else { continue };
                    if !self.plane.attach(&peer, id, path) {
                        tracing::debug!(%peer, ?id, "path not attached: peer gone");
                    }
                }
                Action::Detach(id) => {
                    p.held.remove(&id);
                    self.plane.detach(&peer, id);
                }
                Action::Activate(id) => {
                    self.plane.activate(&peer, id);
                }
                Action::SendHandshake(id) => {
                    if !self.plane.send_handshake(&peer, id) {
                        tracing::debug!(%peer, ?id, "handshake not sent on the path");
                    }
                }
                Action::SendGoIdle => self.handshaker.go_idle(peer),
                Action::Idle(idle, reason) => {
                    let _ = self.events.send(Event::PeerActivity {
                        peer,
                        idle,
                        reason: reason.to_string(),
                    });
                }
                Action::Switched(switch) => {
                    tracing::info!(%peer, %switch, "path switched");
                    switched.push(Event::PathSwitched {
                        peer,
                        from: switch.from,
                        to: switch.to,
                        reason: switch.reason.to_string(),
                    });
                }
            }
        }
        // Status first, so that an app reading it on the event sees the switch.
        self.status.lock().peers.insert(peer, p.conn.status(now));
        for event in switched {
            let _ = self.events.send(event);
        }
    }

    fn start_ice(&mut self, peer: PublicKey, p: &mut PeerShell, start: IceStart) {
        let Some(mut config) = self.ice.clone() else {
            return;
        };
        config.socket.clone_from(&self.ice_socket);
        if let Some(IceRun::Running { worker, .. }) = p.ice.take() {
            self.tasks.spawn(async move { worker.close().await });
        }
        let IceStart {
            id,
            local,
            remote,
            controlling,
            use_turn,
        } = start;
        p.ice = Some(IceRun::Starting {
            id,
            candidates: Vec::new(),
        });
        let session = IceSession {
            local,
            remote,
            controlling,
            use_turn,
            path: PathBinding {
                peer,
                id,
                inbound: self.inbound.clone(),
            },
        };
        let (events, mut rx) = mpsc::channel(crate::ice::ICE_EVENT_CAPACITY);
        let funnel = self.ice_events.clone();
        self.tasks.spawn(async move {
            while let Some(e) = rx.recv().await {
                if funnel.send((peer, id, e)).await.is_err() {
                    return;
                }
            }
        });
        let done = self.done.clone();
        self.tasks.spawn(async move {
            let result = IceWorker::start(config, session, events)
                .await
                .map(Arc::new)
                .map_err(|e| e.to_string());
            let _ = done.send(Done::IceStarted { peer, id, result }).await;
        });
    }

    fn open_relay(&mut self, peer: PublicKey, id: PathId, server: Option<String>) {
        let Some(relay) = self.relay.clone() else { return };
        let (inbound, done) = (self.inbound.clone(), self.done.clone());
        self.tasks.spawn(async move {
            let result = relay
                .open_peer(server.as_deref(), peer, inbound, id)
                .await
                .map_err(|e| e.to_string());
            let _ = done.send(Done::RelayOpened { peer, id, result }).await;
        });
    }

    fn next_deadline(&self) -> Instant {
        self.peers
            .values()
            .filter_map(|p| p.conn.poll_timeout())
            .fold(self.next_observe, Instant::min)
    }

    /// Hands the handshaker's messages to the sender task.
    fn flush(&mut self) {
        while let Some(m) = self.handshaker.poll_transmit() {
            if self.signal.is_none() {
                continue;
            }
            if self.outbox.try_send(m).is_err() {
                tracing::debug!("signal outbox full; message dropped (the guard will offer again)");
            }
        }
    }

    async fn close(mut self) {
        let now = Instant::now();
        let mut workers = Vec::new();
        let keys: Vec<PublicKey> = self.peers.keys().copied().collect();
        for key in keys {
            let Some(mut p) = self.peers.remove(&key) else {
                continue;
            };
            p.conn.close();
            if let Some(IceRun::Running { worker, .. }) = p.ice.take() {
                workers.push(worker);
            }
            self.execute(key, &mut p, now);
        }
        // Concurrently: each ICE agent may take its gather drain plus close timeout.
        futures_util::future::join_all(workers.iter().map(|w| w.close())).await;
        self.tasks.shutdown().await;
        if let Some(relay) = self.relay.take() {
            if let Ok(relay) = Arc::try_unwrap(relay) {
                relay.stop().await;
            }
        }
        if let Some(signal) = self.signal.take() {
            signal.close().await;
        }
    }
}

enum Input {
    Description(crate::signal::OfferAnswer, bool),
    Candidate(String),
    GoIdle,
}

async fn send_loop(signal: SignalHandle, mut outbox: mpsc::Receiver<(PublicKey, SignalMessage)>) {
    while let Some((to, msg)) = outbox.recv().await {
        let kind = msg.kind();
        if let Err(e) = signal.send(to, msg).await {
            tracing::debug!(peer = %to, kind, error = %e, "signal send failed");
        }
    }
}

async fn recv<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn relay_event(
    events: &mut Option<broadcast::Receiver<crate::relay::RelayEvent>>,
) -> Option<crate::relay::RelayEvent> {
    let Some(rx) = events else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(event) => return Some(event),
            // Missed events are path and connection changes, which arrive on their own
            // channels too; a missed wake is repeated by the peer's next packet.
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

async fn changed<T: Clone>(state: &mut Option<watch::Receiver<T>>) -> Option<T> {
    let Some(rx) = state else {
        return std::future::pending().await;
    };
    match rx.changed().await {
        Ok(()) => Some(rx.borrow_and_update().clone()),
        Err(_) => std::future::pending().await,
    }
}

/// Sleeps until `deadline` on the sleep-counting clock (tokio's own timer stops during
/// suspend, so the wait is computed from our clock each time the loop turns).
async fn sleep_until(deadline: Instant) {
    let wait = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
}
