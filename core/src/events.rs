//! What the engine tells the app, in order. Top-level so that the control plane and the data
//! plane both use it without importing each other.

use crate::ice::IceState;
use crate::keys::PublicKey;
use crate::mgmt::{DnsSettings, InterfaceConfig, ManagementState};
use crate::path::PathKind;
use crate::relay::RelayState;
use crate::signal::SignalState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A WireGuard handshake with the peer completed.
    HandshakeCompleted { peer: PublicKey },
    /// The path carrying the peer's traffic changed (`None`: the peer has no path now).
    PathChanged {
        peer: PublicKey,
        kind: Option<PathKind>,
        remote: Option<String>,
    },
    /// The peer's connection moved its traffic to another path, and why (a stale verdict
    /// reads "no answer to 3 probes in 1.5 s").
    PathSwitched {
        peer: PublicKey,
        from: Option<PathKind>,
        to: Option<PathKind>,
        reason: String,
    },
    /// The peer's connection was closed for inactivity (`idle`) or woke, and why (lazy
    /// connections).
    PeerActivity {
        peer: PublicKey,
        idle: bool,
        reason: String,
    },
    /// The peer list was replaced.
    PeersUpdated { count: usize },
    /// The signal client's state changed.
    SignalStateChanged(SignalState),
    /// The home relay's state changed.
    RelayStateChanged(RelayState),
    /// A peer's ICE agent changed state.
    IceStateChanged { peer: PublicKey, state: IceState },
    /// Management gave this peer a new address, MTU or routed networks: the app rebuilds its
    /// VPN interface with them and hands the new tun to `set_tun` (Linux reconfigures in place).
    InterfaceChanged(InterfaceConfig),
    /// Management's DNS settings changed; the app applies them to its interface.
    DnsChanged(DnsSettings),
    /// The management client's state changed.
    ManagementStateChanged(ManagementState),
    /// The engine stopped; no event follows.
    Stopped,
}

/// Capacity of the event channel. Events are rare (state changes, not packets); a consumer that
/// falls 256 behind misses the oldest and is told how many it missed.
pub const EVENT_CAPACITY: usize = 256;
