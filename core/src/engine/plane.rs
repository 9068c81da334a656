//! The data plane's side of the seam: what the control plane may ask of it
//! ([`DataPlane`]), carried out on the peer table. It executes and reports; it never picks a
//! path.

use std::sync::Arc;

use boringtun::noise::TunnResult;

use super::{Shared, HANDSHAKE_BUFFER};
use crate::clock::Instant;
use crate::conn::plane::{DataPlane, PathObservation, PeerObservations};
use crate::keys::PublicKey;
use crate::path::{Path, PathId};

impl DataPlane for Shared {
    fn attach(&self, peer: &PublicKey, id: PathId, path: Arc<dyn Path>) -> bool {
        let table = self.table.load();
        let Some(p) = table.by_key.get(peer) else {
            return false;
        };
        tracing::debug!(peer = %peer, path = ?id, kind = %path.kind(), "path attached");
        p.attach(id, path);
        true
    }

    fn detach(&self, peer: &PublicKey, id: PathId) {
        let table = self.table.load();
        let Some(p) = table.by_key.get(peer) else { return };
        let before = p.active_path().map(|a| a.id);
        if p.detach(id) {
            tracing::debug!(peer = %peer, path = ?id, "path detached");
        }
        self.report_path_change(p, before);
    }

    fn activate(&self, peer: &PublicKey, id: Option<PathId>) -> bool {
        let table = self.table.load();
        let Some(p) = table.by_key.get(peer) else {
            return false;
        };
        let before = p.active_path().map(|a| a.id);
        let done = p.activate(id);
        self.report_path_change(p, before);
        done
    }

    fn send_handshake(&self, peer: &PublicKey, id: PathId) -> bool {
        let table = self.table.load();
        let Some(p) = table.by_key.get(peer) else {
            return false;
        };
        let Some(path) = p.path(id) else {
            return false;
        };
        let mut buf = [0u8; HANDSHAKE_BUFFER];
        // Forced: a probe needs an initiation now, even while one is in flight (boringtun
        // would otherwise answer `Done` until its own retry). The new one supersedes it.
        let result = p.tunn.lock().format_handshake_initiation(&mut buf, true);
        let datagram = match result {
            TunnResult::WriteToNetwork(d) => d,
            TunnResult::Err(e) => {
                tracing::debug!(peer = %peer, path = ?id, error = ?e, "handshake initiation not formatted");
                return false;
            }
            TunnResult::Done | TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {
                return false
            }
        };
        match path.send(Instant::now(), datagram) {
            Ok(()) => {
                tracing::trace!(peer = %peer, path = ?id, "handshake initiation sent");
                true
            }
            Err(e) => {
                tracing::debug!(peer = %peer, path = ?id, error = %e, "handshake initiation not sent");
                p.counters.send_failed(1);
                false
            }
        }
    }

    fn observe(&self, peer: &PublicKey) -> Option<PeerObservations> {
        let table = self.table.load();
        let p = table.by_key.get(peer)?;
        let paths = p
            .paths()
            .iter()
            .map(|a| PathObservation {
                id: a.id,
                kind: a.path.kind(),
                observations: a.stats.snapshot(),
            })
            .collect();
        let since_handshake = p.tunn.lock().time_since_last_handshake();
        Some(PeerObservations {
            paths,
            since_handshake,
        })
    }
}
