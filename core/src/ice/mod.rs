//! ICE: a webrtc-ice 0.17 agent per peer, its candidates trickled through signal, and the
//! selected pair as an engine [`Path`](crate::path::Path).
//!
//! ```text
//! caller ──start/restart(IceSession)──▶ IceWorker ──▶ webrtc-ice Agent (its own UDP sockets)
//!        ◀──IceEvent (candidates, states, Connected{IcePath})──┘
//!        ──add_remote_candidate(str)──▶ RemoteCandidates (pure checks) ──▶ Agent
//! IcePath ──Inbound──▶ Engine::inbound()
//! ```
//!
//! **Socket strategy**: the agent opens its own sockets (webrtc-ice's ephemeral UDP network),
//! because that is the mode in which it gathers server-reflexive candidates by itself, and
//! NAT traversal needs them. The price: we cannot reach those sockets to
//! `VpnService.protect()` them on Android, so the app must exclude itself from its own VPN
//! (`addDisallowedApplication(own package)`). See `README.md` in this folder for the reasons,
//! the alternative (one socket of ours, muxed, with our own STUN binding) and when to switch.
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
