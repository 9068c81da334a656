//! Snapshots of the engine's state for the app and the CLI.

use std::net::SocketAddr;
use std::time::Duration;

use crate::keys::PublicKey;
use crate::path::{PathId, PathKind, PathObservations};
use crate::wg::{EngineCountersSnapshot, PeerCountersSnapshot};

#[derive(Debug, Clone)]
pub struct EngineStatus {
    pub public_key: PublicKey,
    pub listen_addr: SocketAddr,
    pub peers: Vec<PeerStatus>,
    pub drops: EngineCountersSnapshot,
}

#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub public_key: PublicKey,
    /// The path carrying traffic now.
    pub active_path: Option<PathKind>,
    pub remote: Option<String>,
    /// Time since the last completed handshake.
    pub last_handshake: Option<Duration>,
    pub counters: PeerCountersSnapshot,
    pub paths: Vec<PathStatus>,
}

#[derive(Debug, Clone)]
pub struct PathStatus {
    pub id: PathId,
    pub kind: PathKind,
    pub remote: String,
    pub active: bool,
    pub observations: PathObservations,
}

impl PeerStatus {
    /// Connected: a handshake completed within WireGuard's REJECT_AFTER_TIME (180 s).
    pub fn is_connected(&self) -> bool {
        self.last_handshake.is_some_and(|t| t < Duration::from_secs(180))
    }
}

pub(crate) fn peer_status(peer: &crate::wg::Peer) -> PeerStatus {
    let active = peer.active_path();
    let last_handshake = peer.tunn.lock().time_since_last_handshake();
    let paths = peer
        .paths()
        .iter()
        .map(|p| PathStatus {
            id: p.id,
            kind: p.path.kind(),
            remote: p.path.remote(),
            active: active.as_ref().is_some_and(|a| a.id == p.id),
            observations: p.stats.snapshot(),
        })
        .collect();
    PeerStatus {
        public_key: peer.key,
        active_path: active.as_ref().map(|a| a.path.kind()),
        remote: active.as_ref().map(|a| a.path.remote()),
        last_handshake,
        counters: peer.counters.snapshot(),
        paths,
    }
}
