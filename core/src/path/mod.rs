//! A path carries WireGuard datagrams to one peer and back. The WireGuard layer sends through
//! the `Path` trait without knowing what is underneath: a direct UDP endpoint (here), an ICE
//! pair or NetBird's relay (their own modules).
//!
//! Received datagrams come back to the engine as [`Inbound`] messages on one bounded channel;
//! the direct path is read by the engine's own socket loop instead, to skip that hop.

mod stats;
mod udp;

use std::fmt;

pub use stats::{Authenticated, PathObservations, PathStats};
pub use udp::UdpPath;

use crate::keys::PublicKey;

/// What kind of path, in order of preference (the state machine's priority).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    /// NetBird's relay server.
    Relay,
    /// ICE through a TURN server.
    IceTurn,
    /// A UDP endpoint configured or learned by roaming, as plain WireGuard does.
    Direct,
    /// ICE peer to peer (host or server-reflexive candidates).
    IceP2p,
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathKind::Relay => "relay",
            PathKind::IceTurn => "ice-turn",
            PathKind::Direct => "direct",
            PathKind::IceP2p => "ice-p2p",
        })
    }
}

/// Identifies one path of one peer for as long as it lives; never reused within an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathId(pub u64);

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The path's queue or socket buffer is full; the datagram is dropped, as UDP would.
    #[error("path is congested")]
    Congested,
    #[error("path is closed")]
    Closed,
    #[error("sending: {0}")]
    Io(#[from] std::io::Error),
}

/// Sends WireGuard datagrams to one peer. `send` never blocks: a path that cannot take a
/// datagram now drops it and says so, and WireGuard's own retries do the rest.
pub trait Path: Send + Sync + fmt::Debug {
    fn kind(&self) -> PathKind;
    /// Where the datagrams go, for status and logs (an address, a relay URL).
    fn remote(&self) -> String;
    fn send(&self, datagram: &[u8]) -> Result<(), PathError>;

    /// For the engine's own UDP socket only: the endpoint to send to, so the data plane can
    /// batch datagrams for it (UDP segmentation offload). Other paths send one by one.
    fn udp_endpoint(&self) -> Option<std::net::SocketAddr> {
        None
    }

    /// For paths on the engine's own UDP socket: an authenticated datagram came from `from`;
    /// aim there from now on. Returns true if the endpoint moved (false: it did not, or the
    /// path cannot move).
    fn roam_to(&self, _from: std::net::SocketAddr) -> bool {
        false
    }

    /// Whether [`Path::udp_endpoint`] gives an endpoint: asked per packet, so it takes no lock.
    fn is_udp(&self) -> bool {
        false
    }
}

/// A datagram that arrived on a non-direct path, on its way to the engine's data plane.
#[derive(Debug)]
pub struct Inbound {
    pub peer: PublicKey,
    pub path: PathId,
    pub datagram: bytes::Bytes,
}

/// Capacity of the channel from non-direct paths to the data plane: about 3 ms of traffic at
/// 1 Gbit/s (the relay's ceiling) in 1280-byte packets, enough to absorb a burst; the ICE reader
/// waits for room and the relay drops (counted) beyond it. Each entry can pin up to a whole
/// relay message (8.8 KiB), so this is the largest part of the engine's packet budget
/// (`engine::budget`: 256 × 9 KiB ≈ 2.3 MiB at worst).
pub const INBOUND_CAPACITY: usize = 256;
