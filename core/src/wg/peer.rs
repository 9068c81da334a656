//! One remote peer: its WireGuard session state, its paths and which one carries traffic.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::Tunn;
use parking_lot::Mutex;
use tokio::net::UdpSocket;

use super::counters::PeerCounters;
use crate::clock::Instant;
use crate::config::PeerConfig;
use crate::filter::PeerFilter;
use crate::keys::{PrivateKey, PublicKey};
use crate::path::{Path, PathError, PathId, PathKind, PathStats, UdpPath};

/// A path attached to a peer, with its observations.
#[derive(Debug)]
pub(crate) struct AttachedPath {
    pub id: PathId,
    pub path: Arc<dyn Path>,
    pub stats: PathStats,
}

impl AttachedPath {
    pub fn send(&self, now: Instant, datagram: &[u8]) -> Result<(), PathError> {
        self.path.send(datagram)?;
        self.stats.on_tx(now, datagram);
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Paths {
    all: Vec<Arc<AttachedPath>>,
    /// The direct UDP path, also in `all`; kept typed for roaming.
    direct: Option<(PathId, Arc<UdpPath>)>,
    /// ICE pairs on the engine's socket, also in `all`, by remote address: what arrives from
    /// there is theirs, not the direct path's.
    ice: Vec<(SocketAddr, Arc<AttachedPath>)>,
}

pub(crate) struct Peer {
    pub key: PublicKey,
    /// boringtun's 24-bit local index: session indices are `index << 8 | n`, so a datagram's
    /// receiver index finds its peer in one map lookup.
    pub index: u32,
    pub config: PeerConfig,
    pub tunn: Mutex<Tunn>,
    pub counters: PeerCounters,
    /// The path that carries outgoing traffic; read per packet without a lock.
    active: ArcSwapOption<AttachedPath>,
    paths: Mutex<Paths>,
    /// When the newest handshake we have reported completed, to raise one event per handshake.
    pub reported_handshake: Mutex<Option<Instant>>,
    /// The newest datagram WireGuard sent while the peer had no active path, handshake
    /// initiations aside (DESIGN 11: the first packet towards a peer is held, not lost); it
    /// goes out when a path is activated.
    /// One buffer, reused: nothing is allocated per packet once it has grown.
    pub held: Mutex<Vec<u8>>,
    /// No data moved for a while (the timer task sets it): the first packet that moves clears
    /// it and tells the control plane and the timer task, which sleep meanwhile.
    pub quiet: std::sync::atomic::AtomicBool,
    /// The flows this device started with the peer, when the filter is on; only the packets
    /// of this peer touch it, those of busy flows without a lock.
    pub filter: PeerFilter,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("key", &self.key)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Peer {
    pub fn new(own: &PrivateKey, config: PeerConfig, index: u32, rate_limiter: Arc<RateLimiter>) -> Self {
        let tunn = Tunn::new(
            own.to_x25519(),
            config.public_key.to_x25519(),
            config.preshared_key.map(|k| k.0),
            config.persistent_keepalive,
            index,
            Some(rate_limiter),
        );
        Self {
            key: config.public_key,
            index,
            config,
            tunn: Mutex::new(tunn),
            counters: PeerCounters::default(),
            active: ArcSwapOption::empty(),
            paths: Mutex::new(Paths::default()),
            reported_handshake: Mutex::new(None),
            held: Mutex::new(Vec::new()),
            quiet: std::sync::atomic::AtomicBool::new(false),
            filter: PeerFilter::default(),
        }
    }

    /// The path outgoing traffic takes now.
    pub fn active_path(&self) -> Option<Arc<AttachedPath>> {
        self.active.load_full()
    }

    pub fn paths(&self) -> Vec<Arc<AttachedPath>> {
        self.paths.lock().all.clone()
    }

    pub fn path(&self, id: PathId) -> Option<Arc<AttachedPath>> {
        self.paths.lock().all.iter().find(|p| p.id == id).cloned()
    }

    /// Adds a path. It carries nothing until [`Peer::activate`] picks it.
    pub fn attach(&self, id: PathId, path: Arc<dyn Path>) -> Arc<AttachedPath> {
        let attached = Arc::new(AttachedPath {
            id,
            path,
            stats: PathStats::default(),
        });
        let mut paths = self.paths.lock();
        if let (PathKind::IceP2p | PathKind::IceTurn, Some(remote)) =
            (attached.path.kind(), attached.path.udp_endpoint())
        {
            paths.ice.push((remote, attached.clone()));
        }
        paths.all.push(attached.clone());
        attached
    }

    /// Removes a path. If it was active, the peer has no active path until the next
    /// [`Peer::activate`]. Returns whether the peer had that path.
    pub fn detach(&self, id: PathId) -> bool {
        let mut paths = self.paths.lock();
        let before = paths.all.len();
        paths.all.retain(|p| p.id != id);
        paths.ice.retain(|(_, p)| p.id != id);
        if paths.direct.as_ref().is_some_and(|(d, _)| *d == id) {
            paths.direct = None;
        }
        if self.active.load().as_ref().is_some_and(|a| a.id == id) {
            self.active.store(None);
        }
        paths.all.len() != before
    }

    /// Makes `id` the active path (`None`: no path carries traffic). Returns false if the peer
    /// has no such path, and then changes nothing.
    pub fn activate(&self, id: Option<PathId>) -> bool {
        let Some(id) = id else {
            self.active.store(None);
            return true;
        };
        // Under the paths lock, so a concurrent detach cannot leave a detached path active.
        let paths = self.paths.lock();
        let Some(p) = paths.all.iter().find(|p| p.id == id) else {
            return false;
        };
        self.active.store(Some(p.clone()));
        true
    }

    /// The path of an authenticated datagram from `endpoint` on the engine's socket: the ICE
    /// pair with that remote address if there is one, else the direct path, created (attached,
    /// not active) if the peer has none, re-aimed if it pointed elsewhere (keeping whether it
    /// is active, so plain WireGuard peers follow a roaming endpoint).
    pub fn direct_path(
        &self,
        socket: &Arc<UdpSocket>,
        endpoint: SocketAddr,
        next_id: impl FnOnce() -> PathId,
    ) -> DirectPath {
        let mut paths = self.paths.lock();
        if let Some((_, ice)) = paths.ice.iter().find(|(remote, _)| *remote == endpoint) {
            return DirectPath::Same(ice.clone());
        }
        let existing = paths.direct.as_ref().and_then(|(id, udp)| {
            let attached = paths.all.iter().find(|p| p.id == *id)?.clone();
            Some((attached, udp.clone()))
        });
        if let Some((attached, udp)) = &existing {
            if udp.endpoint() == endpoint {
                return DirectPath::Same(attached.clone());
            }
        }
        // The NAT in front of the peer rebound its socket: its packets come from a new
        // address. The active ICE pair on our socket follows them, as WireGuard's roaming does,
        // rather than a second path appearing beside it; ICE's own consent checks still go to
        // the old address, and when they fail a new session finds the new mapping.
        if let Some(active) = self.active.load_full() {
            if let Some(entry) = paths.ice.iter_mut().find(|(_, p)| p.id == active.id) {
                if active.path.roam_to(endpoint) {
                    entry.0 = endpoint;
                    tracing::debug!(peer = %self.key, path = ?active.id, to = %endpoint, "ICE pair's remote roamed");
                    return DirectPath::Reaimed(active);
                }
            }
        }
        if let Some((attached, udp)) = existing {
            if !udp.roam_to(endpoint) {
                return DirectPath::Same(attached);
            }
            tracing::debug!(peer = %self.key, path = ?attached.id, to = %endpoint, "endpoint roamed");
            return DirectPath::Reaimed(attached);
        }
        let id = next_id();
        let udp = Arc::new(UdpPath::new(socket.clone(), endpoint));
        let attached = Arc::new(AttachedPath {
            id,
            path: udp.clone(),
            stats: PathStats::default(),
        });
        paths.all.push(attached.clone());
        paths.direct = Some((id, udp));
        tracing::debug!(peer = %self.key, path = ?id, to = %endpoint, "direct path created");
        DirectPath::Created(attached)
    }
}

/// The peer's direct path after [`Peer::direct_path`], and what happened to it.
#[derive(Debug)]
pub(crate) enum DirectPath {
    /// It already pointed at the endpoint.
    Same(Arc<AttachedPath>),
    /// Its endpoint moved; it kept its active status.
    Reaimed(Arc<AttachedPath>),
    /// It is new: attached, not active.
    Created(Arc<AttachedPath>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::PathKind;

    #[test]
    fn attach_never_changes_the_active_path() {
        let peer = peer();
        peer.attach(PathId(1), fake(PathKind::Relay));
        assert!(peer.active_path().is_none(), "a first path is not activated");
        assert!(peer.activate(Some(PathId(1))));
        peer.attach(PathId(2), fake(PathKind::IceP2p));
        assert_eq!(active(&peer), Some(PathId(1)), "a better path does not take over");
    }

    #[test]
    fn detaching_the_active_path_leaves_no_active_path() {
        let peer = peer();
        peer.attach(PathId(1), fake(PathKind::Relay));
        peer.attach(PathId(2), fake(PathKind::IceP2p));
        peer.activate(Some(PathId(2)));
        assert!(peer.detach(PathId(2)));
        assert_eq!(active(&peer), None, "the relay is not picked by the data plane");
        assert_eq!(peer.paths().len(), 1);
        assert!(!peer.detach(PathId(2)), "already gone");
    }

    #[test]
    fn activate_an_unknown_path_changes_nothing_and_none_deactivates() {
        let peer = peer();
        peer.attach(PathId(1), fake(PathKind::Relay));
        peer.activate(Some(PathId(1)));
        assert!(!peer.activate(Some(PathId(9))));
        assert_eq!(active(&peer), Some(PathId(1)));
        assert!(peer.activate(None));
        assert_eq!(active(&peer), None);
    }

    #[tokio::test]
    async fn a_new_direct_path_is_attached_not_active_and_a_reaimed_one_keeps_its_status() {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let (a, b) = ("192.0.2.1:1".parse().unwrap(), "192.0.2.2:2".parse().unwrap());
        let peer = peer();
        let DirectPath::Created(direct) = peer.direct_path(&socket, a, || PathId(7)) else {
            panic!("the peer had no direct path")
        };
        assert_eq!((direct.id, active(&peer)), (PathId(7), None));
        assert!(matches!(
            peer.direct_path(&socket, a, || PathId(8)),
            DirectPath::Same(_)
        ));
        peer.activate(Some(PathId(7)));
        let DirectPath::Reaimed(moved) = peer.direct_path(&socket, b, || PathId(9)) else {
            panic!("the endpoint moved")
        };
        assert_eq!(moved.id, PathId(7));
        assert_eq!(moved.path.udp_endpoint(), Some(b));
        assert_eq!(active(&peer), Some(PathId(7)), "still active after roaming");
    }

    #[tokio::test]
    async fn what_comes_from_an_ice_pairs_remote_is_the_pairs_and_the_active_pair_roams() {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let (pair, configured, rebound): (SocketAddr, SocketAddr, SocketAddr) = (
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.9:9".parse().unwrap(),
            "192.0.2.1:20001".parse().unwrap(),
        );
        let peer = peer();
        let ice = Arc::new(UdpPath::ice(socket.clone(), pair, PathKind::IceP2p));
        peer.attach(PathId(1), ice);
        let DirectPath::Created(direct) = peer.direct_path(&socket, configured, || PathId(2)) else {
            panic!("no direct path yet")
        };
        let DirectPath::Same(from_pair) = peer.direct_path(&socket, pair, || PathId(3)) else {
            panic!("the pair's own remote")
        };
        assert_eq!(from_pair.id, PathId(1), "not a roaming of the direct path");
        // Inactive, the pair does not roam: a new address is the direct path's.
        let DirectPath::Reaimed(moved) = peer.direct_path(&socket, rebound, || PathId(4)) else {
            panic!("the direct path follows")
        };
        assert_eq!(moved.id, direct.id);
        peer.direct_path(&socket, configured, || PathId(5));
        // Active, it follows its peer's rebound NAT; the direct path stays where it is.
        peer.activate(Some(PathId(1)));
        let DirectPath::Reaimed(roamed) = peer.direct_path(&socket, rebound, || PathId(6)) else {
            panic!("the active pair follows")
        };
        assert_eq!(roamed.id, PathId(1));
        assert_eq!(roamed.path.udp_endpoint(), Some(rebound));
        assert_eq!(direct.path.udp_endpoint(), Some(configured));
        assert!(
            matches!(peer.direct_path(&socket, rebound, || PathId(7)), DirectPath::Same(p) if p.id == PathId(1))
        );
    }

    fn peer() -> Peer {
        let config = PeerConfig {
            public_key: PrivateKey::generate().public_key(),
            allowed_ips: Vec::new(),
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            always_on: false,
        };
        let own = PrivateKey::generate();
        let limiter = Arc::new(RateLimiter::new(&own.public_key().to_x25519(), 10));
        Peer::new(&own, config, 1, limiter)
    }

    fn active(peer: &Peer) -> Option<PathId> {
        peer.active_path().map(|a| a.id)
    }

    #[derive(Debug)]
    struct FakePath(PathKind);

    impl Path for FakePath {
        fn kind(&self) -> PathKind {
            self.0
        }
        fn remote(&self) -> String {
            self.0.to_string()
        }
        fn send(&self, _: &[u8]) -> Result<(), PathError> {
            Ok(())
        }
    }

    fn fake(kind: PathKind) -> Arc<dyn Path> {
        Arc::new(FakePath(kind))
    }
}
