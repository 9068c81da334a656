//! The engine: owns the tun, the UDP socket and the peers, and runs the data plane tasks.

mod budget;
pub(crate) mod dataplane;
mod management;
mod plane;
mod status;
mod table;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::x25519;
use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

pub use crate::events::{Event, EVENT_CAPACITY};
pub use status::{EngineStatus, ManagementStatus, PathStatus, PeerStatus, SwitchRecord};

use crate::config::{EngineConfig, PeerConfig};
use crate::conn::plane::DataPlane;
use crate::conn::plane::{PlaneEvent, PLANE_EVENT_CAPACITY};
use crate::conn::{ConnSetup, ControlPlane, ControlStatus, PathIds, SignalSource};
use crate::filter::RuleSet;
use crate::ice::IceSocket;
use crate::keys::{PrivateKey, PublicKey};
use crate::path::{Inbound, Path, PathId, INBOUND_CAPACITY};
use crate::relay::RelayManager;
use crate::socket::{SocketError, SocketFactory};
use crate::tun::Tun;
use crate::wg::{DirectPath, EngineCounters};
use table::PeerTable;

/// How long `stop` waits for the tasks to finish before aborting them. They only need to leave
/// a `select!`; a task that takes longer is stuck and is aborted rather than waited for.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// The control plane closes ICE agents (gathering drained, then closed, each bounded: 5 s + 2 s
/// in `ice::config`), relays and signal; beyond that it is stuck.
/// The data plane's tasks: tun, UDP, inbound paths, timers.
const DATA_PLANE_TASKS: usize = 4;
const CONTROL_STOP_GRACE: Duration = Duration::from_secs(8);
/// Handshake messages per second before boringtun answers with cookies (its single-peer
/// default is 10, its device's 100). boringtun 0.7 counts responses too, so at 100 a phone
/// bringing up 200 peers at once left half of them to WireGuard's 5 s retry
/// (tests/bench/memory.sh); 1000 covers that and still bounds the work of an initiation flood
/// (two X25519 operations each, ≈ 0.1 ms).
const HANDSHAKE_RATE_LIMIT: u64 = 1000;
/// Room for a WireGuard handshake initiation (148 bytes).
const HANDSHAKE_BUFFER: usize = 256;
/// UDP socket buffers: 4 MiB holds ~3000 full datagrams, about 10 ms at 3 Gbit/s, so a burst
/// is not dropped while the receive loop is busy (the default ~200 KiB overflowed in
/// boringtun-cli's measurements). The kernel may cap it at net.core.rmem_max.
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// Everything besides the configuration that the platform decides.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Creates (and on Android protects) every socket the engine opens.
    pub sockets: SocketFactory,
    /// The address the WireGuard UDP socket binds; the port comes from the configuration.
    pub listen_ip: IpAddr,
    /// Signal to use instead of the configuration's server (the demo's in-process hub).
    pub signal: Option<SignalSource>,
    /// The tun interface's name, kept out of ICE's candidates.
    pub tun_name: Option<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            sockets: SocketFactory::default(),
            listen_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            signal: None,
            tun_name: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("opening the WireGuard socket: {0}")]
    Socket(#[from] SocketError),
    #[error("reading the WireGuard socket's address: {0}")]
    LocalAddr(std::io::Error),
    #[error("peer {0} is not configured")]
    UnknownPeer(PublicKey),
    #[error("signal: {0}")]
    Signal(#[from] crate::signal::SignalError),
    #[error(
        "ICE is configured but no signal server is: ICE credentials and candidates travel through signal"
    )]
    IceWithoutSignal,
}

/// A running engine. Dropping it without `stop` aborts its tasks.
pub struct Engine {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// State the data plane tasks share with the handle.
pub(crate) struct Shared {
    pub static_private: x25519::StaticSecret,
    pub static_public: x25519::PublicKey,
    pub private_key: PrivateKey,
    /// The tun; swapped whole by `set_tun` (the platform rebuilt the interface).
    pub tun: ArcSwap<Tun>,
    /// Bumped on every `set_tun`, so the tun reader moves to the new device.
    pub tun_changed: watch::Sender<u64>,
    pub udp: Arc<UdpSocket>,
    /// ICE on that same socket: the receive loop hands it every STUN message.
    pub ice: IceSocket,
    pub listen_addr: SocketAddr,
    pub table: ArcSwap<PeerTable>,
    /// Management's firewall rules; `None` (peers given by the app): no filter, everything
    /// passes. Read per packet without a lock, replaced whole by each network map.
    pub rules: ArcSwapOption<RuleSet>,
    /// Serialises peer updates; holds the last allocated peer index.
    pub update_lock: Mutex<u32>,
    pub rate_limiter: Arc<RateLimiter>,
    /// A second limiter, for handshake initiations on our socket before their sender is known
    /// (`dataplane`): a stranger's flood puts only this one under load, so the peers' own
    /// handshakes over relay and ICE (which come without an address, and so cannot be asked
    /// for a cookie) are not refused meanwhile.
    pub initiation_screen: RateLimiter,
    pub counters: EngineCounters,
    pub events: broadcast::Sender<Event>,
    /// Path ids, shared with the control plane.
    pub ids: PathIds,
    /// Where non-direct paths deliver what they receive.
    pub inbound: mpsc::Sender<Inbound>,
    /// The configured peers' keys (and whether each is always-on), so the control plane
    /// follows every update.
    pub peer_keys: watch::Sender<Vec<(PublicKey, bool)>>,
    /// The control plane's view of its servers and connections, for status.
    pub control: Arc<Mutex<ControlStatus>>,
    /// Whether the platform says a network is available; the control plane follows it.
    pub online: watch::Sender<bool>,
    /// The data plane's reports to the control plane (paths learned by roaming).
    plane_events: mpsc::Sender<PlaneEvent>,
    /// Wakes the timer task when data moves after a quiet spell.
    pub timer_wake: tokio::sync::Notify,
    /// Their receiving end when no control plane runs (tests of the data plane alone).
    plane_events_rx: Mutex<Option<mpsc::Receiver<PlaneEvent>>>,
}

impl Engine {
    /// Starts the engine on `tun`. Must be called inside a tokio runtime.
    pub fn start(config: EngineConfig, tun: Tun, options: EngineOptions) -> Result<Engine, EngineError> {
        Self::start_with(config, tun, options, true)
    }

    /// Starts the data plane alone, with no control plane to pick paths: for tests of the data
    /// plane's own primitives.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn start_data_plane(
        config: EngineConfig,
        tun: Tun,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        Self::start_with(config, tun, options, false)
    }

    fn start_with(
        config: EngineConfig,
        tun: Tun,
        options: EngineOptions,
        control: bool,
    ) -> Result<Engine, EngineError> {
        let udp = options
            .sockets
            .udp_bind(SocketAddr::new(options.listen_ip, config.listen_port))?;
        let listen_addr = udp.local_addr().map_err(EngineError::LocalAddr)?;
        let sock = socket2::SockRef::from(&udp);
        if let Err(e) = sock
            .set_recv_buffer_size(UDP_BUFFER_BYTES)
            .and(sock.set_send_buffer_size(UDP_BUFFER_BYTES))
        {
            tracing::debug!(error = %e, "could not enlarge the UDP socket buffers");
        }
        let static_private = config.private_key.to_x25519();
        let static_public = x25519::PublicKey::from(&static_private);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_CAPACITY);
        let (plane_events, plane_events_rx) = mpsc::channel(PLANE_EVENT_CAPACITY);
        let udp = Arc::new(udp);
        let ice = IceSocket::new(udp.clone()).map_err(EngineError::LocalAddr)?;
        let shared = Arc::new(Shared {
            rate_limiter: Arc::new(RateLimiter::new(&static_public, HANDSHAKE_RATE_LIMIT)),
            initiation_screen: RateLimiter::new(&static_public, HANDSHAKE_RATE_LIMIT),
            static_private,
            static_public,
            private_key: config.private_key.clone(),
            tun: ArcSwap::from_pointee(tun),
            tun_changed: watch::channel(0).0,
            udp,
            ice,
            listen_addr,
            table: ArcSwap::from_pointee(PeerTable::default()),
            rules: ArcSwapOption::empty(),
            update_lock: Mutex::new(0),
            counters: EngineCounters::default(),
            events,
            ids: PathIds::default(),
            inbound: inbound_tx,
            peer_keys: watch::channel(Vec::new()).0,
            control: Arc::new(Mutex::new(ControlStatus::default())),
            online: watch::channel(true).0,
            plane_events,
            timer_wake: tokio::sync::Notify::new(),
            plane_events_rx: Mutex::new(None),
        });
        let setup = ConnSetup::from_config(&config, &options.sockets, options.tun_name.as_deref());
        let signal = options
            .signal
            .clone()
            .or_else(|| crate::conn::setup_signal(&config, &options.sockets));
        shared.replace_peers(config.peers.clone());
        let (shutdown, _) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(dataplane::tun_loop(shared.clone(), shutdown.subscribe())),
            tokio::spawn(dataplane::udp_loop(shared.clone(), shutdown.subscribe())),
            tokio::spawn(dataplane::inbound_loop(
                shared.clone(),
                inbound_rx,
                shutdown.subscribe(),
            )),
            tokio::spawn(dataplane::timer_loop(shared.clone(), shutdown.subscribe())),
        ];
        if !control {
            *shared.plane_events_rx.lock() = Some(plane_events_rx);
        } else if let Some(spec) = config.management.clone() {
            let run = management::ManagementRun {
                shared: shared.clone(),
                spec,
                base: config,
                sockets: options.sockets.clone(),
                tun_name: options.tun_name.clone(),
                plane_events: plane_events_rx,
            };
            tasks.push(tokio::spawn(management::run(run, shutdown.subscribe())));
        } else {
            let (_, ice_updates) = watch::channel(None);
            let control = ControlInputs {
                setup,
                signal,
                plane_events: plane_events_rx,
                ice_updates,
            };
            let (task, _) = start_control(&shared, &config, control, shutdown.subscribe())?;
            tasks.push(task);
        }
        tracing::info!(key = %shared.public_key(), listen = %listen_addr, "engine started");
        Ok(Engine {
            shared,
            shutdown,
            tasks,
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.shared.public_key()
    }

    /// The WireGuard UDP socket's address (useful when the listen port was 0).
    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen_addr
    }

    /// Replaces the peer list. Peers whose key and session settings are unchanged keep their
    /// sessions and paths; their allowed IPs and endpoint are updated in place.
    pub fn update_peers(&self, peers: Vec<PeerConfig>) {
        self.shared.replace_peers(peers);
    }

    pub fn status(&self) -> EngineStatus {
        self.shared.status()
    }

    /// Replaces the inbound filter's rules; `None` turns the filter off (everything passes,
    /// the default when the app gives the peers). With management, each network map sets them.
    /// Flows already tracked survive the change.
    pub fn set_firewall_rules(&self, rules: Option<RuleSet>) {
        self.shared.rules.store(rules.map(Arc::new));
    }

    /// Replaces the tun (Android rebuilt the VPN interface, iOS handed a new utun). Peers,
    /// sessions and paths are untouched; the old tun is dropped (and closed, if owned) once
    /// the reader has moved to the new one.
    pub fn set_tun(&self, tun: Tun) {
        self.shared.tun.store(Arc::new(tun));
        self.shared.tun_changed.send_modify(|n| *n += 1);
        tracing::info!("tun replaced");
    }

    /// The platform's network changed. Online: reconnect signal and relay now, re-offer to
    /// every peer that is not connected and restart ICE gathering on the next offer. Offline:
    /// retry loops wait and nothing is offered until the network is back.
    pub fn network_changed(&self, online: bool) {
        tracing::info!(online, "network changed");
        self.shared.online.send_modify(|o| *o = online);
    }

    /// A handle that reads the status from elsewhere (a control socket) without keeping the
    /// engine's sockets alive after `stop`.
    pub fn status_source(&self) -> StatusSource {
        StatusSource(Arc::downgrade(&self.shared))
    }

    /// A receiver of the engine's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// A fresh path id. Allocate it before building a path (ICE, relay), so that the path can
    /// tag what it receives with it when it sends [`Inbound`] messages to [`Engine::inbound`].
    pub fn new_path_id(&self) -> PathId {
        self.shared.next_path_id()
    }

    /// Attaches a path to a peer under `id` (from [`Engine::new_path_id`]). The peer's
    /// connection weighs it like its own paths: it carries traffic when it is the best one.
    pub fn attach_path(&self, peer: &PublicKey, id: PathId, path: Arc<dyn Path>) -> Result<(), EngineError> {
        if !self.shared.attach(peer, id, path) {
            return Err(EngineError::UnknownPeer(*peer));
        }
        self.shared.report(PlaneEvent::PathAdded { peer: *peer, id });
        Ok(())
    }

    /// Detaches a path; the peer's connection moves traffic to the best remaining one.
    pub fn detach_path(&self, peer: &PublicKey, id: PathId) {
        self.shared.detach(peer, id);
        self.shared.report(PlaneEvent::PathAdded { peer: *peer, id });
    }

    /// Where non-direct paths deliver the datagrams they receive.
    pub fn inbound(&self) -> mpsc::Sender<Inbound> {
        self.shared.inbound.clone()
    }

    /// Stops every task and closes the tun (if owned) and every socket before returning.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for (n, task) in self.tasks.drain(..).enumerate() {
            let abort = task.abort_handle();
            // The data plane tasks come first; the control plane, when there is one, last.
            let grace = if n < DATA_PLANE_TASKS {
                STOP_GRACE
            } else {
                CONTROL_STOP_GRACE
            };
            if tokio::time::timeout(grace, task).await.is_err() {
                tracing::warn!("a data plane task did not stop in time; aborted");
                abort.abort();
            }
        }
        let _ = self.shared.events.send(Event::Stopped);
        tracing::info!(key = %self.shared.public_key(), "engine stopped");
    }
}

/// What a control plane is started with.
pub(crate) struct ControlInputs {
    pub setup: ConnSetup,
    pub signal: Option<SignalSource>,
    pub plane_events: mpsc::Receiver<PlaneEvent>,
    pub ice_updates: watch::Receiver<Option<crate::ice::IceConfig>>,
}

/// Connects signal, starts the relay manager and spawns the control plane on them; returns its
/// task and the relay manager (management updates its token and servers).
pub(crate) fn start_control(
    shared: &Arc<Shared>,
    config: &EngineConfig,
    inputs: ControlInputs,
    shutdown: watch::Receiver<bool>,
) -> Result<(JoinHandle<()>, Option<Arc<RelayManager>>), EngineError> {
    let signal = match inputs.signal {
        Some(SignalSource::Grpc(grpc)) => {
            Some(crate::signal::connect_grpc(config.private_key.clone(), grpc)?)
        }
        Some(SignalSource::Hub(hub)) => Some(hub.connect(config.private_key.clone())),
        None => None,
    };
    let relay = inputs.setup.relay.map(|r| Arc::new(RelayManager::start(r)));
    {
        let mut status = shared.control.lock();
        status.signal = signal.as_ref().map(|(h, _)| h.state().borrow().clone());
        status.relay = relay.as_ref().map(|r| r.state().borrow().clone());
        status.signal_counters = signal.as_ref().map(|(h, _)| h.counters_source());
    }
    let cp = ControlPlane {
        plane: shared.clone() as Arc<dyn DataPlane>,
        own: shared.public_key(),
        wg_listen_port: shared.listen_addr.port(),
        ids: shared.ids.clone(),
        inbound: shared.inbound.clone(),
        events: shared.events.clone(),
        peers: shared.peer_keys.subscribe(),
        online: shared.online.subscribe(),
        status: shared.control.clone(),
        plane_events: inputs.plane_events,
        lazy: config.lazy,
        ice: inputs.setup.ice,
        ice_socket: Some(shared.ice.clone()),
        relay: relay.clone(),
        signal,
        ice_updates: inputs.ice_updates,
    };
    Ok((tokio::spawn(crate::conn::run(cp, shutdown)), relay))
}

/// Reads an engine's status while it runs; `None` once it has stopped.
#[derive(Clone)]
pub struct StatusSource(std::sync::Weak<Shared>);

impl StatusSource {
    pub fn status(&self) -> Option<EngineStatus> {
        self.0.upgrade().map(|s| s.status())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Shared {
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_bytes(self.static_public.to_bytes())
    }

    pub fn next_path_id(&self) -> PathId {
        self.ids.next()
    }

    /// The data plane's reports when no control plane runs (`start_data_plane`): `Some` the
    /// first time only.
    #[cfg(test)]
    pub fn take_plane_events(&self) -> Option<mpsc::Receiver<PlaneEvent>> {
        self.plane_events_rx.lock().take()
    }

    /// Tells the control plane without waiting: when the channel is full the report is
    /// dropped, and the control plane finds the path in its next observation.
    pub(crate) fn report(&self, event: PlaneEvent) {
        if let Err(e) = self.plane_events.try_send(event) {
            tracing::trace!(error = %e, "plane event dropped");
        }
    }

    pub(crate) fn replace_peers(&self, peers: Vec<PeerConfig>) {
        let mut next_index = self.update_lock.lock();
        let previous = self.table.load();
        // A kept peer keeps its `Peer` (and the configuration it was made with): what may change
        // in place (the endpoint, always-on) is read from the new configuration.
        let wanted: Vec<(PublicKey, Option<SocketAddr>, bool)> = peers
            .iter()
            .map(|p| (p.public_key, p.endpoint, p.always_on))
            .collect();
        let table = PeerTable::build(
            &self.private_key,
            peers,
            &previous,
            &self.rate_limiter,
            &mut next_index,
        );
        for (key, endpoint, _) in &wanted {
            let (Some(peer), Some(endpoint)) = (table.by_key.get(key), endpoint) else {
                continue;
            };
            if let DirectPath::Created(path) = peer.direct_path(&self.udp, *endpoint, || self.next_path_id())
            {
                self.report(PlaneEvent::PathAdded {
                    peer: peer.key,
                    id: path.id,
                });
            }
        }
        let count = table.by_key.len();
        let keys = wanted
            .iter()
            .map(|(key, _, always_on)| (*key, *always_on))
            .collect();
        self.table.store(Arc::new(table));
        tracing::debug!(count, "peers updated");
        self.peer_keys.send_replace(keys);
        let _ = self.events.send(Event::PeersUpdated { count });
    }

    pub fn report_path_change(&self, peer: &crate::wg::Peer, before: Option<PathId>) {
        let active = peer.active_path();
        if active.as_ref().map(|a| a.id) == before {
            return;
        }
        let kind = active.as_ref().map(|a| a.path.kind());
        let remote = active.as_ref().map(|a| a.path.remote());
        tracing::info!(peer = %peer.key, ?kind, ?remote, "path changed");
        let _ = self.events.send(Event::PathChanged {
            peer: peer.key,
            kind,
            remote,
        });
    }

    pub(crate) fn status(&self) -> EngineStatus {
        let control = self.control.lock().clone();
        let table = self.table.load();
        let now = crate::clock::Instant::now();
        let mut peers: Vec<PeerStatus> = table
            .by_key
            .values()
            .map(|p| status::peer_status(p, control.peers.get(&p.key), now))
            .collect();
        peers.sort_by_key(|p| p.public_key);
        EngineStatus {
            public_key: self.public_key(),
            listen_addr: self.listen_addr,
            peers,
            drops: self.counters.snapshot(),
            signal: control.signal,
            relay: control.relay,
            management: control.management,
            signal_counters: control.signal_counters.map(|c| c.snapshot()),
            signal_unknown_senders: control.signal_unknown_senders,
        }
    }
}
