//! The control plane: for every peer, exchange offers and answers through signal, open the
//! relay path, run ICE, and tell the data plane which path carries traffic.
//!
//! Every per-peer decision (paths, priority, the watcher, the guard) lives in the pure
//! [`peer::Conn`]; [`shell`] is the one task that feeds it and carries out its actions. The
//! data plane is reached only through [`plane::DataPlane`].

pub(crate) mod peer;
pub(crate) mod plane;
mod setup;
mod shell;

use std::collections::HashMap;

pub use peer::lazy::{self, Activity, ActivityReason};
pub use peer::watcher::{Health, StaleReason};
pub(crate) use peer::PathIds;
pub use peer::{ConnStatus, PathHealthStatus, Switch, SwitchReason};
pub use setup::{signal_source as setup_signal, ConnSetup, SignalSource};
pub(crate) use shell::{run, ControlPlane};

use crate::keys::PublicKey;

/// The version string peers see in our offers (NetBird's `netBirdVersion`).
pub const VERSION: &str = concat!("peerlink-", env!("CARGO_PKG_VERSION"));

/// The control plane's view, for status: its servers and every peer's connection.
#[derive(Debug, Clone, Default)]
pub struct ControlStatus {
    pub signal: Option<crate::signal::SignalState>,
    pub relay: Option<crate::relay::RelayState>,
    pub peers: HashMap<PublicKey, ConnStatus>,
    /// Written by the engine's management task, when management is configured.
    pub management: Option<crate::engine::ManagementStatus>,
    /// The signal client's counters (what it dropped and why), when signal is configured.
    pub signal_counters: Option<crate::signal::SignalCountersSource>,
    /// Signal messages that opened fine but came from keys that are not configured peers.
    pub signal_unknown_senders: u64,
}
