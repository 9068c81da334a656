//! Errors of the relay layer. `Clone`, so that the manager's state can carry the last one.

use std::time::Duration;

use super::messages::EncodeError;
use super::token::TokenError;
use super::url::UrlError;
use crate::keys::PublicKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("relay message: {0}")]
    Encode(#[from] EncodeError),
    #[error("relay {server}: resolving the host: {detail}")]
    Resolve { server: String, detail: String },
    #[error(
        "relay {server}: the platform refused to protect the socket from the VPN (routing loop otherwise)"
    )]
    ProtectRefused { server: String },
    #[error("relay {server}: connecting: {detail}")]
    Connect { server: String, detail: String },
    #[error(
        "relay {server}: its TLS certificate was refused ({detail}); for a self-hosted relay, supply the CA that signed it (relay ca_pem)"
    )]
    CertificateRefused { server: String, detail: String },
    #[error("relay {server}: TLS: {detail}")]
    Tls { server: String, detail: String },
    #[error("relay {server}: WebSocket handshake: {detail}")]
    WebSocket { server: String, detail: String },
    #[error("relay {server}: no {stage} within {after:?}")]
    Timeout {
        server: String,
        stage: &'static str,
        after: Duration,
    },
    #[error(
        "relay {server} refused our token, which expired at unix time {expired_at}: supply a fresh token"
    )]
    TokenExpired { server: String, expired_at: u64 },
    #[error(
        "relay {server} refused our token: it is not signed with this relay's secret; supply a token for it"
    )]
    AuthRejected { server: String },
    #[error("relay {server} broke the protocol during the handshake: {detail}")]
    Handshake { server: String, detail: String },
    #[error("relay {server}: the connection is closed")]
    Disconnected { server: String },
    #[error("relay {server}: peer {peer} already has a path here; close it first")]
    PeerAlreadyOpen { server: String, peer: PublicKey },
    #[error("relay {server}: peer {peer} did not come online within {waited:?}")]
    PeerNotOnline {
        server: String,
        peer: PublicKey,
        waited: Duration,
    },
    #[error("relay {server}: peer {peer} went offline")]
    PeerWentOffline { server: String, peer: PublicKey },
    #[error("no relay server is configured")]
    NoServers,
    #[error("the home relay is not connected yet")]
    NotConnected,
    #[error("the relay manager has stopped")]
    Stopped,
}

impl RelayError {
    /// Whether retrying with the same token can help: not after the relay refused the token.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            RelayError::TokenExpired { .. } | RelayError::AuthRejected { .. }
        )
    }
}
