//! A relayed path to one peer: WireGuard datagrams as Transport messages on a shared relay
//! connection. Received datagrams reach the engine through the sink given when it was opened.

use std::fmt;
use std::sync::Arc;

use super::conn::{Conn, PathState, QueueError};
use super::events::PathCloseReason;
use super::messages::PeerId;
use crate::keys::PublicKey;
use crate::path::{Path, PathError, PathId, PathKind};

pub struct RelayPath {
    peer: PublicKey,
    dest: PeerId,
    id: PathId,
    conn: Arc<Conn>,
    state: Arc<PathState>,
}

impl RelayPath {
    pub(super) fn new(peer: PublicKey, id: PathId, conn: Arc<Conn>, state: Arc<PathState>) -> Self {
        Self {
            peer,
            dest: PeerId::of(&peer),
            id,
            conn,
            state,
        }
    }

    pub fn peer(&self) -> PublicKey {
        self.peer
    }

    pub fn id(&self) -> PathId {
        self.id
    }

    /// The relay this path runs through, as its AuthResponse named it.
    pub fn instance_url(&self) -> &str {
        &self.conn.instance_url
    }

    pub fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    /// Resolves once the path has closed (peer offline, connection lost, or closed here).
    pub async fn closed(&self) {
        self.state.closed().await
    }

    /// Stops using the path: unsubscribes from the peer and frees it for a new path. Dropping the
    /// path does the same.
    pub fn close(&self) {
        if !self.state.close() {
            return;
        }
        if self.conn.release(&self.peer, self.id) {
            self.conn
                .emit_path_closed(self.peer, self.id, PathCloseReason::ClosedLocally);
        }
    }
}

impl Path for RelayPath {
    fn kind(&self) -> PathKind {
        PathKind::Relay
    }

    fn remote(&self) -> String {
        self.conn.instance_url.clone()
    }

    fn send(&self, datagram: &[u8]) -> Result<(), PathError> {
        if self.state.is_closed() {
            return Err(PathError::Closed);
        }
        match self.conn.queue_transport(&self.dest, datagram) {
            Ok(()) => Ok(()),
            Err(QueueError::Full) => Err(PathError::Congested),
            Err(QueueError::Closed) => Err(PathError::Closed),
            Err(QueueError::Encode(e)) => {
                self.conn.counters.too_large();
                Err(PathError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    e,
                )))
            }
        }
    }
}

impl Drop for RelayPath {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for RelayPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayPath")
            .field("peer", &self.peer)
            .field("id", &self.id)
            .field("relay", &self.conn.instance_url)
            .field("closed", &self.is_closed())
            .finish()
    }
}
