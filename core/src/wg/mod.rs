//! WireGuard: one boringtun `Tunn` per peer, the allowed-IP routing table, and counters.

pub mod allowed_ips;
mod counters;
mod peer;

pub use allowed_ips::AllowedIps;
pub use counters::{EngineCounters, EngineCountersSnapshot, PeerCounters, PeerCountersSnapshot};
pub(crate) use peer::{AttachedPath, DirectPath, Peer};

/// Size of the data plane's packet buffers: the largest MTU plus WireGuard's 32-byte data
/// overhead, rounded up; boringtun wants at least 148 bytes (a handshake initiation).
pub const PACKET_BUFFER: usize = crate::config::MAX_MTU as usize + 256;
const _: () = assert!(PACKET_BUFFER >= crate::config::MAX_MTU as usize + 32 && PACKET_BUFFER >= 148);
