//! ICE: a webrtc-ice 0.17 agent per peer, its candidates trickled through signal, and the
//! selected pair as an engine [`Path`](crate::path::Path).
//!
//! ```text
//! caller ──start/restart(IceSession)──▶ IceWorker ──▶ webrtc-ice Agent (on the engine's socket)
//!        ◀──IceEvent (candidates, states, Connected{ConnectedPath})──┘
//!        ──add_remote_candidate(str)──▶ RemoteCandidates (pure checks) ──▶ Agent
//! ```
//!
//! **Socket strategy** (DESIGN 2, `README.md` in this folder): the agents run on the engine's
//! own UDP socket through webrtc-ice's mux ([`IceSocket`]); the data plane hands it the STUN
//! messages it receives. Our own STUN Binding on that socket gives the srflx candidate, and a
//! P2P pair becomes a UDP endpoint of the data plane. Only a TURN allocation keeps a socket of
//! its own (then the pair is an [`IcePath`] through the agent).
//!
//! webrtc-ice's pitfalls (DESIGN 12) and how this module meets them:
//! - `Agent::close` can deadlock → closed under a timeout ([`IceConfig::close_timeout`]).
//! - the agent must not be called from its own callbacks → callbacks only copy into a channel.
//! - gathering cannot be cancelled and late candidates leak → close waits for gathering first.
//! - mDNS is always off; TURN is UDP only ([`IceError::UnsupportedTurn`] otherwise).

mod agent;
mod candidate;
mod config;
mod credentials;
mod error;
mod events;
mod log_noise;
mod path;
mod session;
mod socket;
mod srflx;
pub mod stun;
mod turn_rest;
mod worker;

pub use candidate::{
    CandidateKind, Rejection, RejectionCounters, RemoteCandidates, MAX_CANDIDATE_LEN, MAX_REMOTE_CANDIDATES,
};
pub use config::{
    IceConfig, InterfaceFilter, TurnServer, CLOSE_TIMEOUT, DISCONNECTED_TIMEOUT, FAILED_TIMEOUT,
    GATHER_DRAIN_TIMEOUT, HOST_ACCEPTANCE_WAIT, KEEPALIVE_INTERVAL, NETBIRD_EXCLUDED_INTERFACE_PREFIXES,
    PRFLX_ACCEPTANCE_WAIT, RELAY_ACCEPTANCE_WAIT, SRFLX_ACCEPTANCE_WAIT,
};
pub use credentials::{IceCredentials, PWD_LEN, UFRAG_LEN};
pub use error::IceError;
pub use events::{CandidateInfo, ConnectedPath, IceEvent, IceState, PairInfo, ICE_EVENT_CAPACITY};
pub use log_noise::{is_routine_ice_warning, IceLogNoise};
pub use path::{IcePath, OUTBOUND_CAPACITY};
pub use session::{is_controlling, IceSession, PathBinding, SessionChange};
pub use socket::IceSocket;
pub use turn_rest::{turn_rest_credentials, turn_rest_credentials_for};
pub use worker::IceWorker;
