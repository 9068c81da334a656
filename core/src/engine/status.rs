//! Snapshots of the engine's state for the app and the CLI.

use std::net::SocketAddr;
use std::time::Duration;

use crate::clock::Instant;
use crate::conn::{Activity, ConnStatus, Health};
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
    /// `None` when no management server is configured.
    pub management: Option<ManagementStatus>,
    /// What the signal client received and dropped (bad seals, oversized, malformed); `None`
    /// without signal.
    pub signal_counters: Option<crate::signal::SignalCounters>,
    /// Signal messages from keys that are not configured peers, ignored.
    pub signal_unknown_senders: u64,
}

/// The management client's view, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementStatus {
    pub state: crate::mgmt::ManagementState,
    /// The interface management gave (address, routes, this peer's name).
    pub interface: Option<crate::mgmt::InterfaceConfig>,
    /// The remote peers' names.
    pub names: Vec<crate::mgmt::PeerName>,
    /// Entries of the network maps skipped as malformed, in total.
    pub skipped: u64,
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
    /// The newest path switches, oldest first (a bounded history).
    pub switches: Vec<SwitchRecord>,
    /// Open, idle or waking (lazy connections), and why it last changed.
    pub activity: Activity,
    pub activity_reason: Option<String>,
}

/// One change of the active path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchRecord {
    /// How long ago it happened.
    pub ago: Duration,
    pub from: Option<PathKind>,
    pub to: Option<PathKind>,
    /// Why, e.g. "no answer to 3 probes in 1.5 s".
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct PathStatus {
    pub id: PathId,
    pub kind: PathKind,
    pub remote: String,
    pub active: bool,
    /// The watcher's view: alive, probing or stale (`None` before the control plane saw it).
    pub health: Option<Health>,
    /// Can carry traffic now: the active path, or a standby that is up, proven and not
    /// condemned.
    pub usable: bool,
    /// Age of the last authenticated packet received on it.
    pub last_proof: Option<Duration>,
    /// Handshake round trip measured on it.
    pub rtt: Option<Duration>,
    pub observations: PathObservations,
}

impl PeerStatus {
    /// Connected: a handshake completed within WireGuard's REJECT_AFTER_TIME (180 s).
    pub fn is_connected(&self) -> bool {
        self.last_handshake.is_some_and(|t| t < Duration::from_secs(180))
    }
}

pub(crate) fn peer_status(peer: &crate::wg::Peer, conn: Option<&ConnStatus>, now: Instant) -> PeerStatus {
    let active = peer.active_path();
    let last_handshake = peer.tunn.lock().time_since_last_handshake();
    let paths = peer
        .paths()
        .iter()
        .map(|p| {
            let observations = p.stats.snapshot();
            let is_active = active.as_ref().is_some_and(|a| a.id == p.id);
            let health = conn.and_then(|c| c.paths.iter().find(|h| h.id == p.id));
            PathStatus {
                id: p.id,
                kind: p.path.kind(),
                remote: p.path.remote(),
                active: is_active,
                health: health.map(|h| h.health),
                usable: is_active || health.is_some_and(|h| h.usable),
                last_proof: observations.last_rx.map(|t| now.saturating_duration_since(t)),
                rtt: observations.rtt,
                observations,
            }
        })
        .collect();
    let switches = conn
        .map(|c| {
            c.switches
                .iter()
                .map(|s| SwitchRecord {
                    ago: now.saturating_duration_since(s.at),
                    from: s.from,
                    to: s.to,
                    reason: s.reason.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    PeerStatus {
        public_key: peer.key,
        active_path: active.as_ref().map(|a| a.path.kind()),
        remote: active.as_ref().map(|a| a.path.remote()),
        last_handshake,
        counters: peer.counters.snapshot(),
        paths,
        switches,
        activity: conn.map(|c| c.activity).unwrap_or_default(),
        activity_reason: conn.and_then(|c| c.activity_reason).map(|r| r.to_string()),
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
        if let Some(m) = &self.management {
            writeln!(f, "  management: {}", m.state)?;
            if let Some(i) = &m.interface {
                let list =
                    |v: &[crate::net::IpNet]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
                writeln!(f, "  address: {} ({})", list(&i.addresses), i.fqdn)?;
                if !i.routes.is_empty() {
                    writeln!(f, "  routes: {}", list(&i.routes))?;
                }
            }
        }
        let d = &self.drops;
        writeln!(
            f,
            "  dropped: {} without route, {} garbage from tun, {} garbage from network, {} for unknown peers",
            d.no_route, d.tun_garbage, d.net_garbage, d.unknown_peer
        )?;
        writeln!(
            f,
            "  handshakes: {} with a bad MAC dropped, {} cookie replies sent under load",
            d.bad_mac, d.cookie_replies
        )?;
        if let Some(c) = &self.signal_counters {
            writeln!(
                f,
                "  signal messages: {} received, {} from unknown senders, {} unopenable (wrong key or tampered), {} other drops",
                c.received,
                self.signal_unknown_senders,
                c.dropped_unopenable,
                c.dropped() - c.dropped_unopenable
            )?;
        }
        for p in &self.peers {
            writeln!(f, "\npeer: {}", p.public_key.to_base64())?;
            let name = self
                .management
                .as_ref()
                .and_then(|m| m.names.iter().find(|n| n.key == p.public_key));
            if let Some(name) = name.filter(|n| !n.fqdn.is_empty()) {
                writeln!(f, "  name: {}", name.fqdn)?;
            }
            match (&p.active_path, &p.remote) {
                (Some(kind), Some(remote)) => writeln!(f, "  path: {kind} {remote}")?,
                (Some(kind), None) => writeln!(f, "  path: {kind}")?,
                (None, _) => writeln!(f, "  path: none")?,
            }
            match p.last_handshake {
                Some(t) => writeln!(f, "  latest handshake: {:.1} s ago", t.as_secs_f64())?,
                None => writeln!(f, "  latest handshake: never")?,
            }
            match &p.activity_reason {
                Some(why) => writeln!(f, "  connection: {} ({why})", p.activity)?,
                None => writeln!(f, "  connection: {}", p.activity)?,
            }
            for standby in p.paths.iter().filter(|path| !path.active && path.usable) {
                writeln!(f, "  standby: {} {}", standby.kind, standby.remote)?;
            }
            for path in &p.paths {
                let health = path
                    .health
                    .map_or_else(|| "unwatched".to_owned(), |h| h.to_string());
                let proof = path
                    .last_proof
                    .map_or_else(|| "never".to_owned(), |t| format!("{:.1} s ago", t.as_secs_f64()));
                let rtt = path.rtt.map_or_else(
                    || "-".to_owned(),
                    |r| format!("{:.1} ms", r.as_secs_f64() * 1000.0),
                );
                writeln!(
                    f,
                    "  health: {} {health}, last proof {proof}, rtt {rtt}",
                    path.kind
                )?;
            }
            for s in &p.switches {
                let name = |k: Option<PathKind>| k.map_or_else(|| "none".to_owned(), |k| k.to_string());
                writeln!(
                    f,
                    "  switched {:.1} s ago: {} → {}: {}",
                    s.ago.as_secs_f64(),
                    name(s.from),
                    name(s.to),
                    s.reason
                )?;
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
            let filtered = c.filter_no_rule + c.filter_denied + c.filter_malformed + c.filter_table_full;
            if filtered > 0 {
                writeln!(
                    f,
                    "  filtered: {} without rule, {} denied by rule, {} malformed, {} flows evicted (table full)",
                    c.filter_no_rule, c.filter_denied, c.filter_malformed, c.filter_table_full
                )?;
            }
        }
        Ok(())
    }
}
