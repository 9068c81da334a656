//! The control plane: for every peer, exchange offers and answers through signal, open the
//! relay path and run ICE, and attach what connects to the engine's data plane.
//!
//! One task owns all of it ([`run`]); per-peer decisions live in [`peer::PeerConn`] and the
//! retry timing in the pure [`guard::OfferGuard`]. Slow work (opening a relay path, starting an
//! ICE agent) runs in spawned tasks that report back on a channel, so the loop never waits on
//! the network. Path priority is the data plane's: ICE P2P outranks the relay, which stays
//! attached as the warm standby (`wg::Peer::attach` / `detach`).

pub mod guard;
mod peer;
pub(crate) mod plane;
mod setup;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;

pub use setup::{signal_source as setup_signal, ConnSetup, SignalSource};

use crate::clock::Instant;
use crate::engine::{Event, Shared};
use crate::ice::{IceEvent, IceState, IceWorker};
use crate::keys::PublicKey;
use crate::path::PathId;
use crate::relay::{RelayEvent, RelayManager, RelayPath, RelayState};
use crate::signal::{HandshakeEvent, Handshaker, Incoming, SignalHandle, SignalMessage, SignalState};
use peer::PeerConn;

/// Queue of signal messages waiting to be sent. A burst is an offer and a handful of
/// candidates per peer; 1024 covers a hundred peers reconnecting at once.
const OUTBOX_CAPACITY: usize = 1024;
/// ICE events of all peers, funnelled into the loop (each worker has its own bounded queue
/// before this one).
const ICE_EVENTS_CAPACITY: usize = 256;
/// Results of spawned work (relay opens, ICE starts).
const DONE_CAPACITY: usize = 256;

/// The version string peers see in our offers (NetBird's `netBirdVersion`).
pub const VERSION: &str = concat!("peerlink-", env!("CARGO_PKG_VERSION"));

/// Results of work the loop spawned.
enum Done {
    RelayOpened {
        peer: PublicKey,
        id: PathId,
        result: Result<Arc<RelayPath>, String>,
    },
    IceStarted {
        peer: PublicKey,
        result: Result<Arc<IceWorker>, String>,
    },
}

struct Loop {
    shared: Arc<Shared>,
    signal: SignalHandle,
    relay: Option<Arc<RelayManager>>,
    setup: ConnSetup,
    handshaker: Handshaker,
    peers: HashMap<PublicKey, PeerConn>,
    outbox: mpsc::Sender<(PublicKey, SignalMessage)>,
    ice_events: mpsc::Sender<(PublicKey, IceEvent)>,
    done: mpsc::Sender<Done>,
    tasks: JoinSet<()>,
    /// The platform's word on the network; offline, the guard's offers wait.
    online: bool,
    /// Signal messages from keys that are not configured peers, ignored.
    unknown_senders: u64,
}

/// Runs the control plane until `shutdown`, then closes ICE agents, relays and signal.
pub(crate) async fn run(
    shared: Arc<Shared>,
    setup: ConnSetup,
    signal: SignalHandle,
    mut incoming: mpsc::Receiver<Incoming>,
    mut shutdown: watch::Receiver<bool>,
) {
    let relay = setup.relay.clone().map(|r| Arc::new(RelayManager::start(r)));
    let mut relay_events = relay.as_ref().map(|r| r.subscribe());
    let mut relay_state = relay.as_ref().map(|r| r.state());
    let mut signal_state = signal.state();
    let mut peers_changed = shared.peers_changed.subscribe();
    let mut online = shared.online.subscribe();
    let (outbox, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
    let (ice_events, mut ice_rx) = mpsc::channel(ICE_EVENTS_CAPACITY);
    let (done, mut done_rx) = mpsc::channel(DONE_CAPACITY);
    let mut tasks = JoinSet::new();
    tasks.spawn(send_loop(signal.clone(), outbox_rx));
    let mut l = Loop {
        shared,
        signal,
        relay,
        setup,
        handshaker: Handshaker::new(),
        peers: HashMap::new(),
        outbox,
        ice_events,
        done,
        tasks,
        online: *online.borrow_and_update(),
        unknown_senders: 0,
    };
    l.sync_peers(Instant::now());
    loop {
        l.flush();
        let deadline = l.next_deadline();
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = peers_changed.changed() => l.sync_peers(Instant::now()),
            Ok(()) = online.changed() => {
                let is_online = *online.borrow_and_update();
                l.on_network_changed(is_online, Instant::now()).await;
            }
            Some((from, msg)) = incoming.recv() => l.on_signal(from, msg, Instant::now()),
            Some((peer, event)) = ice_rx.recv() => l.on_ice(peer, event, Instant::now()),
            Some(done) = done_rx.recv() => l.on_done(done, Instant::now()),
            Ok(()) = signal_state.changed() => {
                let state = signal_state.borrow_and_update().clone();
                l.on_signal_state(state, Instant::now());
            }
            Some(event) = recv_relay(&mut relay_events) => l.on_relay(event, Instant::now()),
            Some(state) = changed(&mut relay_state) => l.on_relay_state(state, Instant::now()),
            _ = sleep_until(deadline) => l.on_timeout(Instant::now()),
        }
    }
    l.close().await;
}

impl Loop {
    /// Adds peers that appeared (they get an offer at once) and drops those that left.
    fn sync_peers(&mut self, now: Instant) {
        let table = self.shared.table.load();
        let own = self.shared.public_key();
        // Peers that left the configuration: their agent and relay path close, and the
        // handshaker forgets what it held for them.
        let gone: Vec<PublicKey> = self
            .peers
            .keys()
            .filter(|k| !table.by_key.contains_key(*k))
            .copied()
            .collect();
        for key in gone {
            if let Some(mut conn) = self.peers.remove(&key) {
                conn.close_in_background();
            }
            self.handshaker.remove_peer(&key);
        }
        for key in table.by_key.keys() {
            self.peers
                .entry(*key)
                .or_insert_with(|| PeerConn::new(own, *key, now));
        }
    }

    fn on_signal(&mut self, from: PublicKey, msg: SignalMessage, now: Instant) {
        if !self.peers.contains_key(&from) {
            self.unknown_senders += 1;
            // Logged at 1, 2, 4, 8, … so that a flood costs a handful of lines.
            if self.unknown_senders.is_power_of_two() {
                tracing::debug!(peer = %from, kind = msg.kind(), total = self.unknown_senders,
                    "signal from an unconfigured peer ignored");
            }
            return;
        }
        self.handshaker.handle_message(from, msg);
        while let Some(event) = self.handshaker.poll_event() {
            match event {
                HandshakeEvent::OfferPending { peer } => {
                    let Some(offer) = self.handshaker.take_offer(&peer) else {
                        continue;
                    };
                    self.on_remote_description(peer, offer, now);
                    let local = self.local_description(&peer);
                    if let Some(local) = local {
                        self.handshaker.answer(peer, local);
                    }
                }
                HandshakeEvent::Answer { peer, answer } => self.on_remote_description(peer, answer, now),
                HandshakeEvent::Candidate { peer, candidate } => {
                    if let Some(conn) = self.peers.get_mut(&peer) {
                        conn.add_remote_candidate(candidate);
                    }
                }
            }
        }
    }

    /// An offer or answer from `peer`: open the relay path and start or restart ICE.
    fn on_remote_description(&mut self, peer: PublicKey, desc: crate::signal::OfferAnswer, now: Instant) {
        let Some(conn) = self.peers.get_mut(&peer) else {
            return;
        };
        conn.on_remote_description(desc.clone(), now);
        self.open_relay(peer);
        let Some(conn) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(ice_config) = self.setup.ice.clone() else {
            return;
        };
        let relay_usable = self.relay.as_ref().is_some_and(|r| r.instance_url().is_some())
            && desc.relay_server_address.is_some();
        let shared = self.shared.clone();
        let Some(session) = conn.ice_session(
            relay_usable,
            || shared.next_path_id(),
            self.shared.inbound.clone(),
        ) else {
            return;
        };
        match conn.ice_worker() {
            Some(worker) => {
                self.tasks.spawn(async move {
                    if let Err(e) = worker.restart(session).await {
                        tracing::debug!(%peer, error = %e, "ICE restart refused");
                    }
                });
            }
            None if conn.ice_starting() => {}
            None => {
                conn.ice_start_requested();
                let (events, mut rx) = mpsc::channel(crate::ice::ICE_EVENT_CAPACITY);
                let funnel = self.ice_events.clone();
                self.tasks.spawn(async move {
                    while let Some(e) = rx.recv().await {
                        if funnel.send((peer, e)).await.is_err() {
                            return;
                        }
                    }
                });
                let done = self.done.clone();
                self.tasks.spawn(async move {
                    let result = IceWorker::start(ice_config, session, events)
                        .await
                        .map(Arc::new)
                        .map_err(|e| e.to_string());
                    let _ = done.send(Done::IceStarted { peer, result }).await;
                });
            }
        }
    }

    /// Opens the relay path to `peer` unless it is open or opening: through our home relay when
    /// we control, else through the relay the peer advertised last.
    fn open_relay(&mut self, peer: PublicKey) {
        let (Some(relay), Some(conn)) = (&self.relay, self.peers.get_mut(&peer)) else {
            return;
        };
        if !conn.wants_relay() {
            return;
        }
        let server = if conn.controlling {
            None
        } else {
            conn.remote_relay()
        };
        let id = self.shared.next_path_id();
        conn.relay_opening(id);
        let (relay, inbound, done) = (relay.clone(), self.shared.inbound.clone(), self.done.clone());
        self.tasks.spawn(async move {
            let result = relay
                .open_peer(server.as_deref(), peer, inbound, id)
                .await
                .map_err(|e| e.to_string());
            let _ = done.send(Done::RelayOpened { peer, id, result }).await;
        });
    }

    fn on_ice(&mut self, peer: PublicKey, event: IceEvent, now: Instant) {
        let Some(conn) = self.peers.get_mut(&peer) else {
            return;
        };
        match event {
            IceEvent::LocalCandidate(c) => self.handshaker.candidate(peer, c),
            IceEvent::GatheringComplete => {}
            IceEvent::Connected { path, info } => {
                let Some(id) = conn.ice_path_id() else { return };
                tracing::info!(%peer, local = %info.local, remote = %info.remote,
                    ms = info.time_to_connect.as_millis() as u64, "ICE connected");
                if let Some(old) = conn.ice_connected(id) {
                    self.shared.detach_path(&peer, old);
                }
                if let Err(e) = self.shared.attach_path(&peer, id, path) {
                    tracing::debug!(%peer, error = %e, "ICE path not attached");
                }
                conn.guard.on_connected();
            }
            IceEvent::State(state) => {
                let _ = self.shared.events.send(Event::IceStateChanged { peer, state });
                match state {
                    IceState::Disconnected | IceState::Closed => {
                        if let Some(id) = conn.ice_lost() {
                            tracing::info!(%peer, ?state, "ICE path lost; traffic falls back");
                            self.shared.detach_path(&peer, id);
                        }
                    }
                    IceState::Failed => {
                        if let Some(id) = conn.ice_failed() {
                            tracing::info!(%peer, "ICE failed; traffic falls back, ICE restarts");
                            self.shared.detach_path(&peer, id);
                        }
                        conn.guard.on_event(now);
                    }
                    IceState::Connected => {
                        // Back from Disconnected on the same pair: the path serves again.
                        let worker_path = conn.ice_worker().and_then(|w| w.path());
                        if let (None, Some(path), Some(id)) =
                            (conn.ice_path(), worker_path, conn.ice_path_id())
                        {
                            conn.ice_connected(id);
                            if let Err(e) = self.shared.attach_path(&peer, id, path) {
                                tracing::debug!(%peer, error = %e, "ICE path not re-attached");
                            }
                        }
                    }
                    IceState::Checking => {}
                }
            }
        }
    }

    fn on_done(&mut self, done: Done, now: Instant) {
        match done {
            Done::RelayOpened { peer, id, result } => {
                let Some(conn) = self.peers.get_mut(&peer) else {
                    return;
                };
                match result {
                    Ok(path) => {
                        conn.relay_opened(id, path.clone());
                        if let Err(e) = self.shared.attach_path(&peer, id, path) {
                            tracing::debug!(%peer, error = %e, "relay path not attached");
                        }
                    }
                    Err(error) => {
                        tracing::info!(%peer, %error, "relay path not opened; will retry");
                        conn.relay_failed(id);
                        conn.guard.on_event(now);
                    }
                }
            }
            Done::IceStarted { peer, result } => {
                let Some(conn) = self.peers.get_mut(&peer) else {
                    if let Ok(w) = result {
                        tokio::spawn(async move { w.close().await });
                    }
                    return;
                };
                match result {
                    Ok(worker) => conn.ice_started(worker),
                    Err(error) => {
                        tracing::info!(%peer, %error, "ICE did not start; will retry");
                        conn.ice_start_failed();
                        conn.guard.on_event(now);
                    }
                }
            }
        }
    }

    fn on_signal_state(&mut self, state: SignalState, now: Instant) {
        tracing::info!(?state, "signal state");
        self.shared.control.lock().signal = Some(state.clone());
        let _ = self.shared.events.send(Event::SignalStateChanged(state.clone()));
        if state == SignalState::Connected {
            // Offers sent while the server was away were lost: offer again soon.
            for conn in self.peers.values_mut() {
                if !conn.is_connected() {
                    conn.guard.on_event(now);
                }
            }
        }
    }

    fn on_relay(&mut self, event: RelayEvent, now: Instant) {
        match event {
            RelayEvent::PathClosed { peer, id, reason, .. } => {
                tracing::info!(%peer, ?reason, "relay path closed");
                self.shared.detach_path(&peer, id);
                if let Some(conn) = self.peers.get_mut(&peer) {
                    conn.relay_closed(id);
                    conn.guard.on_event(now);
                }
                // The standby comes back even while ICE carries the traffic (the guard only
                // offers while ICE is down).
                self.open_relay(peer);
            }
            RelayEvent::Connected { .. } => {
                // Our instance URL is new or back: peers must learn it from a fresh offer, and
                // relay paths that closed with the old connection open again.
                for conn in self.peers.values_mut() {
                    conn.guard.on_event(now);
                }
                let peers: Vec<PublicKey> = self.peers.keys().copied().collect();
                for peer in peers {
                    self.open_relay(peer);
                }
            }
            RelayEvent::Disconnected { .. } | RelayEvent::PeerOffline { .. } => {}
        }
    }

    fn on_relay_state(&mut self, state: RelayState, _now: Instant) {
        self.shared.control.lock().relay = Some(state.clone());
        let _ = self.shared.events.send(Event::RelayStateChanged(state));
    }

    /// The platform's network changed (DESIGN 5): reconnect what talks to servers and offer
    /// again, so ICE gathers on the new network while the relay carries traffic.
    async fn on_network_changed(&mut self, online: bool, now: Instant) {
        self.online = online;
        if !online {
            return;
        }
        self.signal.reconnect();
        if let Some(relay) = &self.relay {
            relay.network_changed().await;
        }
        for (peer, conn) in self.peers.iter_mut() {
            // The old candidates belong to the old network: a new ICE session gathers anew.
            if let Some(id) = conn.ice_failed() {
                self.shared.detach_path(peer, id);
            }
            conn.guard.on_network_change(now);
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        if !self.online {
            // No network: nothing is sent; the next `network_changed(true)` re-offers.
            return;
        }
        let mut rng = rand::thread_rng();
        let ice_enabled = self.setup.ice.is_some();
        let due: Vec<PublicKey> = self
            .peers
            .iter_mut()
            .filter_map(|(key, conn)| {
                let paths = conn.guard_paths(ice_enabled);
                conn.guard.poll_offer(now, paths, &mut rng).then_some(*key)
            })
            .collect();
        for key in due {
            if let Some(local) = self.local_description(&key) {
                tracing::debug!(peer = %key, "sending offer");
                self.handshaker.offer(key, local);
            }
        }
    }

    fn local_description(&self, peer: &PublicKey) -> Option<crate::signal::OfferAnswer> {
        let conn = self.peers.get(peer)?;
        let relay_address = self.relay.as_ref().and_then(|r| r.instance_url());
        Some(conn.local_description(
            self.setup.ice.is_some(),
            self.shared.listen_addr.port(),
            relay_address,
        ))
    }

    fn next_deadline(&self) -> Option<Instant> {
        if !self.online {
            return None;
        }
        self.peers.values().filter_map(|c| c.guard.poll_timeout()).min()
    }

    /// Hands the handshaker's messages to the sender task.
    fn flush(&mut self) {
        while let Some(m) = self.handshaker.poll_transmit() {
            if self.outbox.try_send(m).is_err() {
                tracing::debug!("signal outbox full; message dropped (the guard will offer again)");
            }
        }
    }

    async fn close(mut self) {
        // Concurrently: each ICE agent may take its gather drain plus close timeout.
        futures_util::future::join_all(self.peers.drain().map(|(_, conn)| conn.close())).await;
        self.tasks.shutdown().await;
        if let Some(relay) = self.relay.take() {
            if let Ok(relay) = Arc::try_unwrap(relay) {
                relay.stop().await;
            }
        }
        self.signal.close().await;
    }
}

async fn send_loop(signal: SignalHandle, mut outbox: mpsc::Receiver<(PublicKey, SignalMessage)>) {
    while let Some((to, msg)) = outbox.recv().await {
        let kind = msg.kind();
        if let Err(e) = signal.send(to, msg).await {
            tracing::debug!(peer = %to, kind, error = %e, "signal send failed");
        }
    }
}

async fn recv_relay(events: &mut Option<broadcast::Receiver<RelayEvent>>) -> Option<RelayEvent> {
    let Some(rx) = events else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(e) => return Some(e),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "relay events lagged");
            }
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
async fn sleep_until(deadline: Option<Instant>) {
    let Some(deadline) = deadline else {
        return std::future::pending().await;
    };
    let wait = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
}
