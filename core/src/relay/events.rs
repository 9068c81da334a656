//! What the relay layer tells its user: events on a broadcast channel and the manager's state.

use std::fmt;

use super::error::RelayError;
use crate::keys::PublicKey;
use crate::path::PathId;

/// Capacity of the relay event channel. Events are per connection and per path, not per packet;
/// a consumer that falls 256 behind misses the oldest and is told how many it missed (paths also
/// report their own closing through [`super::RelayPath::closed`]).
pub const RELAY_EVENT_CAPACITY: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// Authenticated to `server`; peers reach us there as `instance_url`.
    Connected { server: String, instance_url: String },
    /// The connection to `server` ended; every path on it closed before this event.
    Disconnected {
        server: String,
        reason: DisconnectReason,
    },
    /// The relay reported `peer` offline; its path (if any) closed.
    PeerOffline { server: String, peer: PublicKey },
    /// A packet arrived from a peer we have no path to (held for a while, see `held`): the
    /// peer wants a connection. Raised once per hold, not per packet.
    PeerWaiting {
        server: String,
        peer: super::messages::PeerId,
    },
    /// A path stopped carrying traffic.
    PathClosed {
        server: String,
        peer: PublicKey,
        id: PathId,
        reason: PathCloseReason,
    },
}

/// Why a relay connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// We closed it (shut down, unused foreign relay, network change).
    ClosedLocally,
    /// The relay sent its Close message (it is shutting down).
    ServerClose,
    /// Nothing arrived from the relay for 35 s.
    HealthCheckTimeout,
    /// The transport failed or the relay went away without a Close message.
    ConnectionLost { detail: String },
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::ClosedLocally => f.write_str("closed locally"),
            DisconnectReason::ServerClose => f.write_str("the relay closed the connection"),
            DisconnectReason::HealthCheckTimeout => f.write_str("no health check from the relay for 35 s"),
            DisconnectReason::ConnectionLost { detail } => write!(f, "connection lost: {detail}"),
        }
    }
}

/// Why a path closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathCloseReason {
    /// Its owner closed or dropped it.
    ClosedLocally,
    /// The relay reported the peer offline.
    PeerOffline,
    /// The connection to the relay ended.
    Disconnected,
}

/// The home relay, as the manager sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayState {
    /// The first attempt is running.
    Connecting,
    /// Peers can reach us through `instance_url` (advertise it in signal's `relayServerAddress`).
    Connected { server: String, instance_url: String },
    /// The home relay was lost; retrying.
    Reconnecting,
    /// The last attempt failed with `error`; the next one follows the backoff.
    Failed { error: RelayError, failures: u32 },
    /// The manager stopped.
    Stopped,
}
