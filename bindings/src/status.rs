//! What the engine reports: status snapshots and events, as records the app can read.
//! Peer keys are the full base64 public keys (public, and what the app's peer list holds).

use std::time::Duration;

use peerlink_core::ice::IceState as CoreIceState;
use peerlink_core::path::PathKind as CorePathKind;
use peerlink_core::relay::RelayState as CoreRelayState;
use peerlink_core::signal::SignalState as CoreSignalState;
use peerlink_core::wg::PeerCountersSnapshot;
use peerlink_core::Event as CoreEvent;
use peerlink_core::Health as CoreHealth;

/// The kind of path carrying a peer's traffic, best last (core's priority order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PathKind {
    /// NetBird's relay server.
    Relay,
    /// ICE through a TURN server.
    IceTurn,
    /// A configured or roamed UDP endpoint, as plain WireGuard.
    Direct,
    /// ICE peer to peer.
    IceP2p,
}

/// Where the engine stands with NetBird's signal server.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SignalState {
    /// The first attempt, or a reconnect after a network change.
    Connecting,
    /// Registered: peers' offers reach us.
    Connected,
    /// Lost or never reached the server; retrying with backoff. `attempt` counts failures
    /// since the last registration; `detail` is the last one.
    Reconnecting { attempt: u32, detail: String },
    /// Another device registered with this key and now receives its messages; this engine
    /// does not fight back (both would flap). Two devices must not share a key.
    Replaced,
    /// Closed (the engine is stopping).
    Closed,
}

/// Where the engine stands with its home relay.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum RelayState {
    /// The first attempt is running.
    Connecting,
    /// Connected to `server`; peers reach us there as `instance_url`.
    Connected { server: String, instance_url: String },
    /// The home relay was lost; retrying.
    Reconnecting,
    /// The last attempt failed (`detail` says why: it never contains the token); `failures`
    /// counts the failures in a row. Retried with backoff, except a refused token, which only
    /// a new configuration fixes.
    Failed { detail: String, failures: u32 },
    /// The relay client stopped (the engine is stopping).
    Stopped,
}

/// A peer's ICE agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum IceState {
    Checking,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

/// How the peer's connection judges one path, from what came back on it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PathHealth {
    /// Proof of life, or no traffic to judge by.
    Alive,
    /// Handshake probes went out (`sent` so far) and no answer came yet.
    Probing { sent: u8 },
    /// Condemned: not chosen again until the path is replaced. `reason` reads like
    /// "no answer to 3 probes in 1.5 s".
    Stale { reason: String },
}

/// What happened, in order. `next_event` returns these until the engine has stopped.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Event {
    /// The engine started (first event of every start).
    Started { listen_port: u16 },
    /// A WireGuard handshake with the peer completed.
    HandshakeCompleted { peer: String },
    /// The path carrying the peer's traffic changed; `kind` is `None` when it has none left.
    PathChanged {
        peer: String,
        kind: Option<PathKind>,
        remote: Option<String>,
    },
    /// The peer's connection moved its traffic from one path to another (`None`: no path),
    /// and why, e.g. "no answer to 3 probes in 1.5 s". `PathChanged` follows once the new
    /// path carries the traffic.
    PathSwitched {
        peer: String,
        from: Option<PathKind>,
        to: Option<PathKind>,
        reason: String,
    },
    /// The peer's connection closed for inactivity (`idle`) or woke, and why (lazy
    /// connections).
    PeerActivity {
        peer: String,
        idle: bool,
        reason: String,
    },
    /// The peer list was replaced.
    PeersUpdated { count: u32 },
    /// The signal client's state changed (only with `signal` configured). The current state
    /// is also in `status().signal`.
    SignalStateChanged { state: SignalState },
    /// The home relay's state changed (only with `relay` configured).
    RelayStateChanged { state: RelayState },
    /// A peer's ICE agent changed state (only with `ice` configured).
    IceStateChanged { peer: String, state: IceState },
    /// The app reported a network change.
    NetworkChanged { online: bool },
    /// `set_tun` replaced the tunnel fd; peers keep their sessions and paths.
    TunReplaced,
    /// The app fell behind and `missed` events were dropped (the queue is bounded).
    EventsLost { missed: u64 },
    /// Management gave a new address, MTU or routes: rebuild the VPN interface with them and
    /// call `set_tun` (PeerlinkTunnel on Android and iOS does it).
    InterfaceChanged {
        interface: crate::management::ManagedInterface,
    },
    /// Management's DNS settings changed.
    DnsChanged { dns: crate::management::ManagedDns },
    /// The management client's state changed (also in `status().management`).
    ManagementStateChanged {
        state: crate::management::ManagementState,
    },
    /// The engine stopped; `next_event` returns `None` after this.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EngineStatus {
    /// This engine's public key, base64.
    pub public_key: String,
    /// The WireGuard socket's address, e.g. `0.0.0.0:51820`.
    pub listen_addr: String,
    pub listen_port: u16,
    /// What the app last said through `network_changed` (true until it says otherwise).
    pub network_online: bool,
    /// `None` without a signal server in the configuration.
    pub signal: Option<SignalState>,
    /// `None` without relay servers in the configuration.
    pub relay: Option<RelayState>,
    /// `None` without a management server in the configuration.
    pub management: Option<crate::management::ManagementStatus>,
    pub peers: Vec<PeerStatus>,
    pub drops: EngineDrops,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PeerStatus {
    pub public_key: String,
    /// A handshake completed within WireGuard's REJECT_AFTER_TIME (180 s).
    pub connected: bool,
    pub active_path: Option<PathKind>,
    /// Where the active path leads (an address, a relay URL).
    pub remote: Option<String>,
    /// Milliseconds since the last completed handshake.
    pub last_handshake_ms_ago: Option<u64>,
    pub counters: PeerCounters,
    /// Every path the peer has, the active one among them.
    pub paths: Vec<PathStatus>,
    /// The latest changes of the active path, oldest first (a short, bounded history).
    pub switches: Vec<PathSwitch>,
    /// Open, idle or waking (lazy connections), and why it last changed.
    pub activity: PeerActivity,
    pub activity_reason: Option<String>,
}

/// Whether a peer's connection is open (lazy connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PeerActivity {
    /// Open: its paths are kept and watched.
    Active,
    /// Closed for inactivity: no ICE agent, no relay path, nothing sent.
    Idle,
    /// Opening again after idle; no path carries traffic yet.
    Waking,
}

impl From<peerlink_core::conn::Activity> for PeerActivity {
    fn from(a: peerlink_core::conn::Activity) -> Self {
        match a {
            peerlink_core::conn::Activity::Active => PeerActivity::Active,
            peerlink_core::conn::Activity::Idle => PeerActivity::Idle,
            peerlink_core::conn::Activity::Waking => PeerActivity::Waking,
        }
    }
}

/// Traffic and drops of one peer, since it was configured.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PeerCounters {
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    /// Decrypted, but the source IP is outside the peer's allowed IPs.
    pub spoofed_source: u64,
    /// Refused by WireGuard (bad MAC, replay, no session).
    pub rejected: u64,
    pub no_path: u64,
    pub send_failed: u64,
    pub tun_write_failed: u64,
    /// Inbound, dropped by the access policy (management's firewall rules): no rule accepts
    /// it and no flow this device started explains it.
    pub filter_no_rule: u64,
    /// Inbound, dropped by the access policy: a drop rule matched.
    pub filter_denied: u64,
    /// Inbound, dropped by the access policy: not a readable IP packet.
    pub filter_malformed: u64,
    /// Flows this device started, evicted to make room (the flow table is full); their
    /// replies then meet the rules like any inbound packet.
    pub filter_table_full: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PathStatus {
    pub kind: PathKind,
    /// Where the path leads (an address, a relay URL).
    pub remote: String,
    /// It carries the peer's traffic.
    pub active: bool,
    /// `None` until the peer's connection has judged the path.
    pub health: Option<PathHealth>,
    /// It can carry traffic now: the active path, or a standby that is up, proven and not stale.
    pub usable: bool,
    /// Milliseconds since the last authenticated packet on this path (its last proof of life).
    pub last_proof_ms_ago: Option<u64>,
    /// The handshake round trip measured on this path, in milliseconds.
    pub rtt_ms: Option<u64>,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One change of a peer's active path.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PathSwitch {
    /// Milliseconds since the switch.
    pub ms_ago: u64,
    /// `None`: the peer had no path.
    pub from: Option<PathKind>,
    /// `None`: the peer was left without a path.
    pub to: Option<PathKind>,
    /// Why, e.g. "no answer to 3 probes in 1.5 s".
    pub reason: String,
}

/// Engine-wide drops that belong to no peer.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EngineDrops {
    pub no_route: u64,
    pub tun_garbage: u64,
    pub net_garbage: u64,
    pub unknown_peer: u64,
}

impl From<CorePathKind> for PathKind {
    fn from(k: CorePathKind) -> Self {
        match k {
            CorePathKind::Relay => PathKind::Relay,
            CorePathKind::IceTurn => PathKind::IceTurn,
            CorePathKind::Direct => PathKind::Direct,
            CorePathKind::IceP2p => PathKind::IceP2p,
        }
    }
}

impl From<CoreHealth> for PathHealth {
    fn from(h: CoreHealth) -> Self {
        match h {
            CoreHealth::Alive => PathHealth::Alive,
            CoreHealth::Probing { sent } => PathHealth::Probing { sent },
            CoreHealth::Stale(reason) => PathHealth::Stale {
                reason: reason.to_string(),
            },
        }
    }
}

impl From<CoreSignalState> for SignalState {
    fn from(s: CoreSignalState) -> Self {
        match s {
            CoreSignalState::Connecting => SignalState::Connecting,
            CoreSignalState::Connected => SignalState::Connected,
            CoreSignalState::Reconnecting { attempt, last_error } => SignalState::Reconnecting {
                attempt,
                detail: last_error,
            },
            CoreSignalState::Replaced => SignalState::Replaced,
            CoreSignalState::Closed => SignalState::Closed,
        }
    }
}

impl From<CoreRelayState> for RelayState {
    fn from(s: CoreRelayState) -> Self {
        match s {
            CoreRelayState::Connecting => RelayState::Connecting,
            CoreRelayState::Connected { server, instance_url } => {
                RelayState::Connected { server, instance_url }
            }
            CoreRelayState::Reconnecting => RelayState::Reconnecting,
            // RelayError's messages name the server and the failure, never the token.
            CoreRelayState::Failed { error, failures } => RelayState::Failed {
                detail: error.to_string(),
                failures,
            },
            CoreRelayState::Stopped => RelayState::Stopped,
        }
    }
}

impl From<CoreIceState> for IceState {
    fn from(s: CoreIceState) -> Self {
        match s {
            CoreIceState::Checking => IceState::Checking,
            CoreIceState::Connected => IceState::Connected,
            CoreIceState::Disconnected => IceState::Disconnected,
            CoreIceState::Failed => IceState::Failed,
            CoreIceState::Closed => IceState::Closed,
        }
    }
}

/// Core's event as the app sees it; `None` for core's `Stopped`, which the bindings emit
/// themselves once every task has drained (a tun swap stops a core engine without stopping).
pub(crate) fn event_from_core(e: CoreEvent) -> Option<Event> {
    match e {
        CoreEvent::HandshakeCompleted { peer } => Some(Event::HandshakeCompleted {
            peer: peer.to_base64(),
        }),
        CoreEvent::PathChanged { peer, kind, remote } => Some(Event::PathChanged {
            peer: peer.to_base64(),
            kind: kind.map(PathKind::from),
            remote,
        }),
        CoreEvent::PathSwitched {
            peer,
            from,
            to,
            reason,
        } => Some(Event::PathSwitched {
            peer: peer.to_base64(),
            from: from.map(PathKind::from),
            to: to.map(PathKind::from),
            reason,
        }),
        CoreEvent::PeersUpdated { count } => Some(Event::PeersUpdated {
            count: u32::try_from(count).unwrap_or(u32::MAX),
        }),
        CoreEvent::SignalStateChanged(state) => Some(Event::SignalStateChanged { state: state.into() }),
        CoreEvent::RelayStateChanged(state) => Some(Event::RelayStateChanged { state: state.into() }),
        CoreEvent::IceStateChanged { peer, state } => Some(Event::IceStateChanged {
            peer: peer.to_base64(),
            state: state.into(),
        }),
        CoreEvent::InterfaceChanged(interface) => Some(Event::InterfaceChanged {
            interface: interface.into(),
        }),
        CoreEvent::DnsChanged(dns) => Some(Event::DnsChanged { dns: dns.into() }),
        CoreEvent::ManagementStateChanged(state) => {
            Some(Event::ManagementStateChanged { state: state.into() })
        }
        CoreEvent::PeerActivity { peer, idle, reason } => Some(Event::PeerActivity {
            peer: peer.to_base64(),
            idle,
            reason,
        }),
        CoreEvent::Stopped => None,
    }
}

pub(crate) fn status_from_core(s: peerlink_core::EngineStatus, network_online: bool) -> EngineStatus {
    let peers = s
        .peers
        .into_iter()
        .map(|p| PeerStatus {
            public_key: p.public_key.to_base64(),
            connected: p.is_connected(),
            active_path: p.active_path.map(PathKind::from),
            remote: p.remote,
            last_handshake_ms_ago: p.last_handshake.map(ms),
            counters: counters(p.counters),
            paths: p.paths.into_iter().map(path_status).collect(),
            switches: p.switches.into_iter().map(path_switch).collect(),
            activity: p.activity.into(),
            activity_reason: p.activity_reason,
        })
        .collect();
    EngineStatus {
        public_key: s.public_key.to_base64(),
        listen_addr: s.listen_addr.to_string(),
        listen_port: s.listen_addr.port(),
        network_online,
        signal: s.signal.map(SignalState::from),
        relay: s.relay.map(RelayState::from),
        management: s.management.map(crate::management::ManagementStatus::from),
        peers,
        drops: EngineDrops {
            no_route: s.drops.no_route,
            tun_garbage: s.drops.tun_garbage,
            net_garbage: s.drops.net_garbage,
            unknown_peer: s.drops.unknown_peer,
        },
    }
}

fn path_status(path: peerlink_core::PathStatus) -> PathStatus {
    PathStatus {
        kind: path.kind.into(),
        remote: path.remote,
        active: path.active,
        health: path.health.map(PathHealth::from),
        usable: path.usable,
        last_proof_ms_ago: path.last_proof.map(ms),
        rtt_ms: path.rtt.map(ms),
        rx_packets: path.observations.rx_packets,
        tx_packets: path.observations.tx_packets,
        rx_bytes: path.observations.rx_bytes,
        tx_bytes: path.observations.tx_bytes,
    }
}

fn path_switch(s: peerlink_core::SwitchRecord) -> PathSwitch {
    PathSwitch {
        ms_ago: ms(s.ago),
        from: s.from.map(PathKind::from),
        to: s.to.map(PathKind::from),
        reason: s.reason,
    }
}

fn counters(c: PeerCountersSnapshot) -> PeerCounters {
    PeerCounters {
        tx_bytes: c.tx_bytes,
        tx_packets: c.tx_packets,
        rx_bytes: c.rx_bytes,
        rx_packets: c.rx_packets,
        spoofed_source: c.spoofed_source,
        rejected: c.rejected,
        no_path: c.no_path,
        send_failed: c.send_failed,
        tun_write_failed: c.tun_write_failed,
        filter_no_rule: c.filter_no_rule,
        filter_denied: c.filter_denied,
        filter_malformed: c.filter_malformed,
        filter_table_full: c.filter_table_full,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerlink_core::PrivateKey;

    #[test]
    fn core_events_map_with_full_keys_and_core_stopped_is_held_back() {
        let key = PrivateKey::generate().public_key();
        assert_eq!(
            event_from_core(CoreEvent::PathChanged {
                peer: key,
                kind: Some(CorePathKind::Direct),
                remote: Some("127.0.0.1:1".into())
            }),
            Some(Event::PathChanged {
                peer: key.to_base64(),
                kind: Some(PathKind::Direct),
                remote: Some("127.0.0.1:1".into())
            })
        );
        assert_eq!(
            event_from_core(CoreEvent::PeersUpdated { count: 3 }),
            Some(Event::PeersUpdated { count: 3 })
        );
        assert_eq!(event_from_core(CoreEvent::Stopped), None);
    }

    #[test]
    fn path_switch_maps_with_full_key_and_reason() {
        let key = PrivateKey::generate().public_key();
        assert_eq!(
            event_from_core(CoreEvent::PathSwitched {
                peer: key,
                from: Some(CorePathKind::IceP2p),
                to: Some(CorePathKind::Relay),
                reason: "no answer to 3 probes in 1.5 s".into(),
            }),
            Some(Event::PathSwitched {
                peer: key.to_base64(),
                from: Some(PathKind::IceP2p),
                to: Some(PathKind::Relay),
                reason: "no answer to 3 probes in 1.5 s".into(),
            })
        );
    }

    #[test]
    fn path_health_carries_the_stale_reason_as_core_words_it() {
        assert_eq!(PathHealth::from(CoreHealth::Alive), PathHealth::Alive);
        assert_eq!(
            PathHealth::from(CoreHealth::Probing { sent: 2 }),
            PathHealth::Probing { sent: 2 }
        );
        let reason = peerlink_core::StaleReason::NoAnswer {
            probes: 3,
            waited: Duration::from_millis(1500),
        };
        assert_eq!(
            PathHealth::from(CoreHealth::Stale(reason)),
            PathHealth::Stale {
                reason: "no answer to 3 probes in 1.5 s".into()
            }
        );
    }

    #[test]
    fn control_plane_events_map_with_their_detail() {
        let key = PrivateKey::generate().public_key();
        assert_eq!(
            event_from_core(CoreEvent::IceStateChanged {
                peer: key,
                state: CoreIceState::Connected
            }),
            Some(Event::IceStateChanged {
                peer: key.to_base64(),
                state: IceState::Connected
            })
        );
        assert_eq!(
            event_from_core(CoreEvent::SignalStateChanged(CoreSignalState::Reconnecting {
                attempt: 2,
                last_error: "transport: refused".into()
            })),
            Some(Event::SignalStateChanged {
                state: SignalState::Reconnecting {
                    attempt: 2,
                    detail: "transport: refused".into()
                }
            })
        );
        let failed = event_from_core(CoreEvent::RelayStateChanged(CoreRelayState::Failed {
            error: peerlink_core::relay::RelayError::AuthRejected {
                server: "rels://relay.example:443".into(),
            },
            failures: 1,
        }));
        assert!(
            matches!(
                &failed,
                Some(Event::RelayStateChanged {
                    state: RelayState::Failed { detail, failures: 1 }
                }) if detail.contains("rels://relay.example:443")
            ),
            "{failed:?}"
        );
    }

    #[test]
    fn the_filters_drop_counters_reach_the_app_by_reason() {
        let snapshot = PeerCountersSnapshot {
            filter_no_rule: 1,
            filter_denied: 2,
            filter_malformed: 3,
            filter_table_full: 4,
            ..PeerCountersSnapshot::default()
        };
        let c = counters(snapshot);
        assert_eq!(
            (
                c.filter_no_rule,
                c.filter_denied,
                c.filter_malformed,
                c.filter_table_full
            ),
            (1, 2, 3, 4)
        );
    }
}
