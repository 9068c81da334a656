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
    /// The signal client's state; `None` without signal.
    pub signal: Option<crate::signal::SignalState>,
    /// The home relay's state; `None` without relay.
    pub relay: Option<crate::relay::RelayState>,
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

/// A `wg show`-like text form, for the CLI and the demo.
impl std::fmt::Display for EngineStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "interface")?;
        writeln!(f, "  public key: {}", self.public_key.to_base64())?;
        writeln!(f, "  listening on: {}", self.listen_addr)?;
        if let Some(signal) = &self.signal {
            writeln!(f, "  signal: {signal:?}")?;
        }
        if let Some(relay) = &self.relay {
            writeln!(f, "  relay: {relay:?}")?;
        }
        let d = &self.drops;
        writeln!(
            f,
            "  dropped: {} without route, {} garbage from tun, {} garbage from network, {} for unknown peers",
            d.no_route, d.tun_garbage, d.net_garbage, d.unknown_peer
        )?;
        for p in &self.peers {
            writeln!(f, "\npeer: {}", p.public_key.to_base64())?;
            match (&p.active_path, &p.remote) {
                (Some(kind), Some(remote)) => writeln!(f, "  path: {kind} {remote}")?,
                (Some(kind), None) => writeln!(f, "  path: {kind}")?,
                (None, _) => writeln!(f, "  path: none")?,
            }
            for standby in p.paths.iter().filter(|path| !path.active) {
                writeln!(f, "  standby: {} {}", standby.kind, standby.remote)?;
            }
            match p.last_handshake {
                Some(t) => writeln!(f, "  latest handshake: {:.1} s ago", t.as_secs_f64())?,
                None => writeln!(f, "  latest handshake: never")?,
            }
            let c = &p.counters;
            writeln!(
                f,
                "  transfer: {} B in {} packets received, {} B in {} packets sent",
                c.rx_bytes, c.rx_packets, c.tx_bytes, c.tx_packets
            )?;
            writeln!(
                f,
                "  dropped: {} spoofed, {} rejected, {} without path, {} send failures, {} tun write failures",
                c.spoofed_source, c.rejected, c.no_path, c.send_failed, c.tun_write_failed
            )?;
        }
        Ok(())
    }
}
