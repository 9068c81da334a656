//! NetBird's management protocol: log in with a setup key, then follow the Sync stream, which
//! says who the peers are, which servers to use and what this peer's address is.
//!
//! [`client`] makes the sealed gRPC calls, [`session`] keeps a login and a stream going with
//! backoff, and [`apply`] turns each update into a [`Delta`] of the engine's configuration,
//! purely. The engine carries the deltas out (`engine::management`).

pub mod apply;
mod client;
mod error;
pub mod proto;
mod session;

#[cfg(feature = "fuzzing")]
pub(crate) use client::open as open_sealed;

pub use apply::{Delta, DnsSettings, InterfaceConfig, NetworkState, PeerName, Servers};
pub use error::ManagementError;
pub use session::{register, run_session, SessionContext, UPDATE_CAPACITY};

use crate::socket::SocketFactory;

/// The NetBird release whose management protocol peerlink speaks and whose behaviour it
/// matches (sync message version 0, the plain NetworkMap). The server reads it as semver.
pub const NETBIRD_PROTOCOL_VERSION: &str = "0.77.1";
/// What the server shows as the peer's UI version: which client this is.
pub const CLIENT_NAME: &str = concat!("peerlink/", env!("CARGO_PKG_VERSION"));

/// How to join a NetBird network.
#[derive(Clone)]
pub struct ManagementConfig {
    /// `https://host[:port]` (or `http://` for a lab), NetBird's management URL.
    pub url: String,
    /// A setup key from the NetBird dashboard or API; only needed while the peer is unknown to
    /// the server (its identity is the WireGuard key).
    pub setup_key: String,
    /// The name the peer gets in the network (the device's name).
    pub hostname: String,
    /// PEM CA certificate(s) to trust besides the public roots (a self-hosted server).
    pub ca_pem: Option<Vec<u8>>,
    pub sockets: SocketFactory,
}

/// Setup keys are secrets: never in a log.
impl std::fmt::Debug for ManagementConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementConfig")
            .field("url", &self.url)
            .field("hostname", &self.hostname)
            .field("ca_pem", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Where the management client is, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagementState {
    /// Logging in or opening the stream.
    Connecting,
    /// The stream is open; `serial` is the last network map applied.
    Connected { serial: Option<u64> },
    /// Waiting `retry_in` before the next attempt, after `error`.
    Retrying { error: ManagementError, attempt: u32 },
    /// The platform says there is no network; nothing is tried until there is.
    Offline,
    /// The app must act (a new setup key, a user login); retried only after a network change.
    Failed(ManagementError),
}

impl std::fmt::Display for ManagementState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManagementState::Connecting => f.write_str("connecting"),
            ManagementState::Connected { serial: Some(s) } => write!(f, "connected (serial {s})"),
            ManagementState::Connected { serial: None } => f.write_str("connected"),
            ManagementState::Retrying { error, attempt } => {
                write!(f, "retrying (attempt {attempt}): {error}")
            }
            ManagementState::Offline => f.write_str("offline"),
            ManagementState::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}
