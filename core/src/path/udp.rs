//! WireGuard over the engine's UDP socket to one endpoint: the direct path, which moves to
//! wherever authenticated packets come from (WireGuard's roaming), and an ICE pair's path on
//! the same socket, which stays on the pair ICE selected.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::UdpSocket;

use super::{Path, PathError, PathKind};

#[derive(Debug)]
pub struct UdpPath {
    socket: Arc<UdpSocket>,
    endpoint: Mutex<SocketAddr>,
    kind: PathKind,
}

impl UdpPath {
    /// The direct path.
    pub fn new(socket: Arc<UdpSocket>, endpoint: SocketAddr) -> Self {
        Self {
            socket,
            endpoint: Mutex::new(endpoint),
            kind: PathKind::Direct,
        }
    }

    /// An ICE pair on the engine's socket, towards the pair's remote candidate: `IceP2p`, or
    /// `IceTurn` when that candidate is the peer's TURN allocation.
    pub fn ice(socket: Arc<UdpSocket>, remote: SocketAddr, kind: PathKind) -> Self {
        Self {
            socket,
            endpoint: Mutex::new(remote),
            kind,
        }
    }

    pub fn endpoint(&self) -> SocketAddr {
        *self.endpoint.lock()
    }
}

impl Path for UdpPath {
    fn kind(&self) -> PathKind {
        self.kind
    }

    fn remote(&self) -> String {
        self.endpoint().to_string()
    }

    fn udp_endpoint(&self) -> Option<SocketAddr> {
        Some(self.endpoint())
    }

    /// Roaming: an authenticated packet came from `from`.
    fn roam_to(&self, from: SocketAddr) -> bool {
        let mut e = self.endpoint.lock();
        if *e == from {
            return false;
        }
        *e = from;
        true
    }

    fn is_udp(&self) -> bool {
        true
    }

    fn send(&self, datagram: &[u8]) -> Result<(), PathError> {
        let to = self.endpoint();
        match self.socket.try_send_to(datagram, to) {
            Ok(_) => Ok(()),
            // tokio says WouldBlock until its reactor has once seen the socket writable, which
            // can be after an engine's first handshake: ask the kernel itself (the socket is
            // non-blocking, so this never waits).
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                match socket2::SockRef::from(&*self.socket).send_to(datagram, &to.into()) {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(PathError::Congested),
                    Err(e) => Err(PathError::Io(e)),
                }
            }
            Err(e) => Err(PathError::Io(e)),
        }
    }
}
