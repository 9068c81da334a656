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
use crate::keys::{PrivateKey, PublicKey};
use crate::path::{Path, PathError, PathId, PathStats, UdpPath};

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
        self.paths.lock().all.push(attached.clone());
        attached
    }

    /// Removes a path. If it was active, the peer has no active path until the next
    /// [`Peer::activate`]. Returns whether the peer had that path.
    pub fn detach(&self, id: PathId) -> bool {
        let mut paths = self.paths.lock();
        let before = paths.all.len();
        paths.all.retain(|p| p.id != id);
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

    /// The direct path, towards `endpoint`: created (attached, not active) if the peer has
    /// none, re-aimed if it pointed elsewhere (keeping whether it is active, so plain WireGuard
    /// peers follow a roaming endpoint).
    pub fn direct_path(
        &self,
        socket: &Arc<UdpSocket>,
        endpoint: SocketAddr,
        next_id: impl FnOnce() -> PathId,
    ) -> DirectPath {
        let mut paths = self.paths.lock();
        let existing = paths.direct.as_ref().and_then(|(id, udp)| {
            let attached = paths.all.iter().find(|p| p.id == *id)?.clone();
            Some((attached, udp.clone()))
        });
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
