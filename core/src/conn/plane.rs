//! The seam between the control plane and the data plane: the only way `conn` reaches the
//! WireGuard side. The data plane executes (attach, detach, activate, send a handshake on one
//! path) and reports (per-path observations, paths it learned by roaming); it never picks a
//! path on its own. The engine implements it; tests implement it with a fake.

use std::sync::Arc;
use std::time::Duration;

use crate::keys::PublicKey;
use crate::path::{Path, PathId, PathKind, PathObservations};

/// What the control plane can ask of the data plane. Every call is cheap and non-blocking.
pub(crate) trait DataPlane: Send + Sync + 'static {
    /// Adds `path` to `peer`'s paths under `id`. It carries nothing until activated; it
    /// answers handshakes that arrive on it (a reply leaves on the path its request came on).
    /// False when the peer is not configured.
    fn attach(&self, peer: &PublicKey, id: PathId, path: Arc<dyn Path>) -> bool;
    /// Removes a path. If it was active, the peer has no active path until the next `activate`.
    fn detach(&self, peer: &PublicKey, id: PathId);
    /// Makes `id` the path that carries `peer`'s outgoing traffic (`None`: no path). False when
    /// the peer or the path is unknown.
    fn activate(&self, peer: &PublicKey, id: Option<PathId>) -> bool;
    /// Sends a fresh WireGuard handshake initiation to `peer` on path `id` alone (a probe, or
    /// the controller's first handshake). False when it could not be sent.
    fn send_handshake(&self, peer: &PublicKey, id: PathId) -> bool;
    /// What the data plane saw of `peer`'s paths; `None` when the peer is not configured.
    fn observe(&self, peer: &PublicKey) -> Option<PeerObservations>;
}

/// One peer as the data plane sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerObservations {
    pub paths: Vec<PathObservation>,
    /// Time since WireGuard's last completed handshake (boringtun's own clock, which counts
    /// sleep); `None` before the first.
    pub since_handshake: Option<Duration>,
    /// Datagrams WireGuard wanted to send while the peer had no active path (a handshake
    /// initiation among them, when data was waiting for a session).
    pub no_path_drops: u64,
    /// Data packets WireGuard carried for the peer so far, from the tun and to it (keepalives
    /// and handshakes are not counted): the lazy-connection policy's measure of use.
    pub tx_packets: u64,
    pub rx_packets: u64,
}

/// One attached path as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathObservation {
    pub id: PathId,
    pub kind: PathKind,
    pub observations: PathObservations,
}

/// What the data plane tells the control plane without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaneEvent {
    /// `peer` has a path the control plane did not ask for: a direct path the data plane made
    /// (or re-aimed) when authenticated traffic came from a new endpoint, or one the app
    /// attached. It is attached but not active; the control plane decides.
    PathAdded { peer: PublicKey, id: PathId },
    /// WireGuard had something to send to `peer` and no active path to send it on.
    NoPath { peer: PublicKey },
    /// Data moved to or from `peer` after a quiet spell (at most one per quiet spell): the
    /// control plane observes it now instead of polling quiet peers often.
    Activity { peer: PublicKey },
}

/// Capacity of the data plane's report channel: one message per roaming event; when full, the
/// control plane still finds the path in its next observation.
pub const PLANE_EVENT_CAPACITY: usize = 64;
