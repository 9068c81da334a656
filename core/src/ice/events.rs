//! What an ICE worker reports, in order, on the caller's channel.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use webrtc_ice::state::ConnectionState;

use super::candidate::CandidateKind;
use super::path::IcePath;
use crate::path::{Path, PathKind, UdpPath};

/// Capacity of a worker's event channel that callers should use: a session yields a few
/// candidates per interface and a handful of state changes; 64 holds a whole session's worth,
/// so the agent is not held up by a caller that reads late.
pub const ICE_EVENT_CAPACITY: usize = 64;

#[derive(Debug, Clone)]
pub enum IceEvent {
    /// A local candidate in pion's marshal form, to send to the peer in a CANDIDATE message.
    LocalCandidate(String),
    /// Gathering finished: no more local candidates in this session.
    GatheringComplete,
    /// The agent's connection state changed.
    State(IceState),
    /// A pair was selected: the path is ready to be attached to the engine.
    Connected { path: ConnectedPath, info: PairInfo },
}

/// The selected pair as a path of the engine.
#[derive(Debug, Clone)]
pub enum ConnectedPath {
    /// A pair on sockets of webrtc-ice's own: a TURN allocation, or any pair of a worker that
    /// has no shared socket. Datagrams go through the agent.
    Agent(Arc<IcePath>),
    /// A P2P pair on the engine's shared socket: a UDP endpoint of the data plane, batched
    /// like the direct path (DESIGN 2).
    SharedSocket(Arc<UdpPath>),
}

impl ConnectedPath {
    pub fn path(&self) -> Arc<dyn Path> {
        match self {
            ConnectedPath::Agent(p) => p.clone(),
            ConnectedPath::SharedSocket(p) => p.clone(),
        }
    }
}

/// The agent's connection state, as NetBird's status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    Checking,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

impl IceState {
    pub(crate) fn from_ice(s: ConnectionState) -> Option<Self> {
        match s {
            ConnectionState::Checking => Some(IceState::Checking),
            ConnectionState::Connected => Some(IceState::Connected),
            ConnectionState::Completed => Some(IceState::Connected),
            ConnectionState::Disconnected => Some(IceState::Disconnected),
            ConnectionState::Failed => Some(IceState::Failed),
            ConnectionState::Closed => Some(IceState::Closed),
            ConnectionState::New => None,
            ConnectionState::Unspecified => None,
        }
    }
}

impl fmt::Display for IceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IceState::Checking => "checking",
            IceState::Connected => "connected",
            IceState::Disconnected => "disconnected",
            IceState::Failed => "failed",
            IceState::Closed => "closed",
        })
    }
}

/// One end of the selected pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidateInfo {
    pub kind: CandidateKind,
    pub addr: SocketAddr,
}

impl fmt::Display for CandidateInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.addr)
    }
}

/// The selected pair, for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairInfo {
    pub local: CandidateInfo,
    pub remote: CandidateInfo,
    /// From the session's start (agent created) to the pair's selection.
    pub time_to_connect: Duration,
}

impl PairInfo {
    /// Through a TURN server when either end is a relay candidate.
    pub fn path_kind(&self) -> PathKind {
        if self.local.kind == CandidateKind::Relay || self.remote.kind == CandidateKind::Relay {
            PathKind::IceTurn
        } else {
            PathKind::IceP2p
        }
    }
}

impl fmt::Display for PairInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "local {} <-> remote {}", self.local, self.remote)
    }
}
