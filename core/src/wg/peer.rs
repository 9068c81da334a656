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
        self.stats.on_tx(now, datagram.len());
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

    /// Adds a path; it becomes active if it outranks the active one (or there is none).
    pub fn attach(&self, id: PathId, path: Arc<dyn Path>) -> Arc<AttachedPath> {
        let attached = Arc::new(AttachedPath {
            id,
            path,
            stats: PathStats::default(),
        });
        let mut paths = self.paths.lock();
        paths.all.push(attached.clone());
        let outranks = match self.active.load().as_ref() {
            Some(active) => attached.path.kind() > active.path.kind(),
            None => true,
        };
        if outranks {
            self.active.store(Some(attached.clone()));
        }
        attached
    }

    /// Removes a path; if it was active, the best remaining path takes over.
    pub fn detach(&self, id: PathId) -> Option<PathKind> {
        let mut paths = self.paths.lock();
        paths.all.retain(|p| p.id != id);
        if paths.direct.as_ref().is_some_and(|(d, _)| *d == id) {
            paths.direct = None;
        }
        if self.active.load().as_ref().is_some_and(|a| a.id == id) {
            let best = paths.all.iter().max_by_key(|p| p.path.kind()).cloned();
            self.active.store(best);
        }
        self.active.load().as_ref().map(|a| a.path.kind())
    }

    /// Makes `id` the active path. Returns false if the peer has no such path.
    pub fn activate(&self, id: PathId) -> bool {
        let Some(p) = self.path(id) else { return false };
        self.active.store(Some(p));
        true
    }

    /// The direct path, created towards `endpoint` if the peer has none. Returns it and whether
    /// it was created.
    pub fn direct_path(
        &self,
        socket: &Arc<UdpSocket>,
        endpoint: SocketAddr,
        next_id: impl FnOnce() -> PathId,
    ) -> (Arc<AttachedPath>, bool) {
        let existing = {
            let paths = self.paths.lock();
            paths.direct.as_ref().and_then(|(id, udp)| {
                let attached = paths.all.iter().find(|p| p.id == *id)?.clone();
                Some((attached, udp.clone()))
            })
        };
        if let Some((attached, udp)) = existing {
            if udp.roam_to(endpoint) {
                tracing::debug!(peer = %self.key, to = %endpoint, "endpoint roamed");
            }
            return (attached, false);
        }
        let id = next_id();
        let udp = Arc::new(UdpPath::new(socket.clone(), endpoint));
        let attached = self.attach(id, udp.clone());
        self.paths.lock().direct = Some((id, udp));
        (attached, true)
    }
}
