//! Interim: replaced by conn::peer::Conn.
//!
//! The data plane no longer picks paths; `conn::peer::Conn` will, through
//! [`DataPlane`](crate::conn::plane::DataPlane). Until it does, today's control loop
//! (`conn::run`), the tests that attach paths by hand and plain WireGuard peers still expect the
//! old rule: the best path by [`PathKind`](crate::path::PathKind) order carries the traffic,
//! and a peer's first path gets a handshake at once. That rule lives here alone, built on the
//! primitive operations (`wg::Peer::attach`/`detach`/`activate`, `DataPlane::send_handshake`),
//! so that deleting this file and its callers (each marked `Interim`) removes it.

use std::sync::Arc;

use super::{EngineError, Shared};
use crate::conn::plane::DataPlane;
use crate::keys::PublicKey;
use crate::path::{Path, PathId};
use crate::wg::{AttachedPath, Peer};

impl Shared {
    /// Interim: replaced by conn::peer::Conn. Attaches `path`; it becomes active if it
    /// outranks the active one, and a peer that had no active path and no session gets a
    /// handshake on it now (one tried before had nowhere to go and would wait for its 5 s
    /// retry).
    pub fn attach_path(&self, peer: &PublicKey, id: PathId, path: Arc<dyn Path>) -> Result<(), EngineError> {
        let table = self.table.load();
        let p = table.by_key.get(peer).ok_or(EngineError::UnknownPeer(*peer))?;
        let active = p.active_path();
        let outranks = active.as_ref().is_none_or(|a| path.kind() > a.path.kind());
        if !self.attach(peer, id, path) {
            return Err(EngineError::UnknownPeer(*peer));
        }
        if outranks {
            self.activate(peer, Some(id));
        }
        let no_session = self.observe(peer).is_some_and(|o| o.since_handshake.is_none());
        if active.is_none() && no_session {
            self.send_handshake(peer, id);
        }
        Ok(())
    }

    /// Interim: replaced by conn::peer::Conn. Detaches a path; if it was active, the best
    /// remaining one takes over (activated first, so the app sees one change).
    pub fn detach_path(&self, peer: &PublicKey, id: PathId) {
        let table = self.table.load();
        let Some(p) = table.by_key.get(peer) else { return };
        if p.active_path().is_some_and(|a| a.id == id) {
            let best = p
                .paths()
                .iter()
                .filter(|a| a.id != id)
                .max_by_key(|a| a.path.kind())
                .map(|a| a.id);
            if best.is_some() {
                self.activate(peer, best);
            }
        }
        self.detach(peer, id);
    }

    /// Interim: replaced by conn::peer::Conn. `path` (just attached by the data plane itself:
    /// a configured endpoint, or roaming) becomes active if the peer has no active path or it
    /// outranks the active one.
    pub(super) fn interim_activate_if_outranks(&self, peer: &Peer, path: &AttachedPath) {
        let active = peer.active_path();
        let outranks = active.as_ref().is_none_or(|a| path.path.kind() > a.path.kind());
        if outranks {
            peer.activate(Some(path.id));
            self.report_path_change(peer, active.map(|a| a.id));
        }
    }
}
