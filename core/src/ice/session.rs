//! One ICE session: the credentials both sides offered, who controls, whether TURN is wanted,
//! and where its path delivers. A new session is a new agent; the same one is left alone.

use tokio::sync::mpsc;

use super::credentials::IceCredentials;
use crate::keys::PublicKey;
use crate::path::{Inbound, PathId};

/// What the caller decided for one session.
#[derive(Debug, Clone)]
pub struct IceSession {
    pub local: IceCredentials,
    pub remote: IceCredentials,
    /// The controlling agent dials, the controlled one accepts: see [`is_controlling`].
    pub controlling: bool,
    /// Gather relay (TURN) candidates: set when NetBird's relay is unusable between the peers.
    pub use_turn: bool,
    /// Where the session's path delivers what it receives.
    pub path: PathBinding,
}

/// Ties the ICE path to the engine: the peer, the path id from `Engine::new_path_id` (a new one
/// for every session, since ids are never reused) and `Engine::inbound`.
#[derive(Debug, Clone)]
pub struct PathBinding {
    pub peer: PublicKey,
    pub id: PathId,
    pub inbound: mpsc::Sender<Inbound>,
}

/// NetBird's rule (and DESIGN 2): the peer whose base64 public key is the greater string
/// controls: it is the controlling ICE agent and dials.
pub fn is_controlling(own: &PublicKey, remote: &PublicKey) -> bool {
    own.to_base64() > remote.to_base64()
}

/// What an offer or answer means for the running session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    /// Same remote credentials: the running agent goes on.
    Same,
    /// New remote credentials: a new agent replaces the old one.
    New,
    /// Empty or invalid remote credentials: ignored, the running agent goes on.
    Invalid,
}

/// Compares an incoming remote session with the running one (`None`: nothing runs).
pub fn classify(running: Option<&IceCredentials>, incoming: &IceCredentials) -> SessionChange {
    if !incoming.is_valid() {
        return SessionChange::Invalid;
    }
    match running {
        Some(r) if r == incoming => SessionChange::Same,
        Some(_) | None => SessionChange::New,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    #[test]
    fn exactly_one_side_controls() {
        for _ in 0..32 {
            let a = PrivateKey::generate().public_key();
            let b = PrivateKey::generate().public_key();
            assert_ne!(is_controlling(&a, &b), is_controlling(&b, &a));
        }
    }

    #[test]
    fn the_same_remote_credentials_keep_the_session() {
        let r = IceCredentials::generate();
        assert_eq!(classify(Some(&r), &r.clone()), SessionChange::Same);
        assert_eq!(
            classify(Some(&r), &IceCredentials::generate()),
            SessionChange::New
        );
        assert_eq!(classify(None, &r), SessionChange::New);
    }

    #[test]
    fn empty_remote_credentials_are_invalid() {
        let r = IceCredentials::generate();
        assert_eq!(
            classify(Some(&r), &IceCredentials::new("", "")),
            SessionChange::Invalid
        );
        assert_eq!(
            classify(None, &IceCredentials::new(&r.ufrag, "")),
            SessionChange::Invalid
        );
    }
}
