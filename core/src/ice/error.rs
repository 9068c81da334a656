//! What can go wrong with an ICE worker, and with what input.

use super::candidate::Rejection;

#[derive(Debug, thiserror::Error)]
pub enum IceError {
    #[error("local ICE credentials are invalid (ufrag ≥ 3, password ≥ 16 ICE characters); use IceCredentials::generate")]
    InvalidLocalCredentials,
    #[error("the remote ICE credentials are empty or invalid; the offer or answer was ignored")]
    InvalidRemoteCredentials,
    #[error("STUN/TURN URL {url:?} is invalid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("TURN URL {url:?} is not supported: webrtc-ice 0.17 speaks TURN over UDP only")]
    UnsupportedTurn { url: String },
    #[error("remote candidate ignored: {0}")]
    Rejected(#[from] Rejection),
    #[error("the ICE agent refused: {0}")]
    Agent(String),
    #[error("the ICE worker is closed")]
    Closed,
}

impl From<webrtc_ice::Error> for IceError {
    fn from(e: webrtc_ice::Error) -> Self {
        IceError::Agent(e.to_string())
    }
}
