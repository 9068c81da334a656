//! Every socket the engine opens comes from here, so that Android can exempt it from the VPN
//! (`VpnService.protect`) before it carries a byte. Without that, the engine's own packets
//! would route back into its tunnel.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

/// Implemented by the platform: exempt `fd` from the VPN's routes. Returns false when it could
/// not, which the engine treats as fatal for that socket.
pub trait Protector: Send + Sync {
    fn protect(&self, fd: RawFd) -> bool;
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("creating a socket: {0}")]
    Create(io::Error),
    #[error("the platform refused to protect socket fd {fd} from the VPN (routing loop otherwise)")]
    ProtectRefused { fd: RawFd },
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
}

/// Creates protected sockets. Cheap to clone.
#[derive(Clone, Default)]
pub struct SocketFactory {
    protector: Option<Arc<dyn Protector>>,
}

impl fmt::Debug for SocketFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketFactory")
            .field("protects", &self.protector.is_some())
            .finish()
    }
}

impl SocketFactory {
    pub fn new(protector: Option<Arc<dyn Protector>>) -> Self {
        Self { protector }
    }

    /// A non-blocking UDP socket bound to `addr`, protected. Must be called inside a tokio runtime.
    pub fn udp_bind(&self, addr: SocketAddr) -> Result<tokio::net::UdpSocket, SocketError> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(SocketError::Create)?;
        if addr.is_ipv6() {
            // Dual-stack where the OS allows it, so one socket reaches IPv4 peers too.
            let _ = socket.set_only_v6(false);
        }
        self.protect(&socket)?;
        socket.set_nonblocking(true).map_err(SocketError::Create)?;
        socket
            .bind(&addr.into())
            .map_err(|source| SocketError::Bind { addr, source })?;
        tokio::net::UdpSocket::from_std(socket.into()).map_err(SocketError::Create)
    }

    /// A TCP connection to `addr` over a protected socket.
    pub async fn tcp_connect(&self, addr: SocketAddr) -> Result<tokio::net::TcpStream, SocketError> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(SocketError::Create)?;
        self.protect(&socket)?;
        socket.set_nonblocking(true).map_err(SocketError::Create)?;
        socket.set_tcp_nodelay(true).map_err(SocketError::Create)?;
        let std: std::net::TcpStream = socket.into();
        let socket = tokio::net::TcpSocket::from_std_stream(std);
        socket
            .connect(addr)
            .await
            .map_err(|source| SocketError::Connect { addr, source })
    }

    /// Protects a socket created elsewhere (a library's), when we can reach its fd.
    pub fn protect_fd(&self, fd: RawFd) -> Result<(), SocketError> {
        match &self.protector {
            Some(p) if !p.protect(fd) => Err(SocketError::ProtectRefused { fd }),
            Some(_) | None => Ok(()),
        }
    }

    fn protect(&self, socket: &Socket) -> Result<(), SocketError> {
        self.protect_fd(socket.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize, bool);
    impl Protector for Counting {
        fn protect(&self, _fd: RawFd) -> bool {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1
        }
    }

    #[tokio::test]
    async fn every_socket_is_protected_before_use() {
        let p = Arc::new(Counting(AtomicUsize::new(0), true));
        let f = SocketFactory::new(Some(p.clone()));
        let udp = f.udp_bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _tcp = f.tcp_connect(listener.local_addr().unwrap()).await.unwrap();
        assert_eq!(p.0.load(Ordering::SeqCst), 2);
        drop(udp);
    }

    #[tokio::test]
    async fn a_refused_protect_is_a_typed_error() {
        let f = SocketFactory::new(Some(Arc::new(Counting(AtomicUsize::new(0), false))));
        assert!(matches!(
            f.udp_bind("127.0.0.1:0".parse().unwrap()),
            Err(SocketError::ProtectRefused { .. })
        ));
    }
}
