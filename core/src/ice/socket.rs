//! ICE on the engine's own UDP socket (DESIGN 2, "One UDP socket per engine", as NetBird's
//! `UDPMux` over its WireGuard socket): every agent's host candidates carry the WireGuard
//! port, and the socket is the one `SocketFactory` protected.
//!
//! ```text
//! data plane's receive loop ──STUN──▶ IceSocket::deliver ─┬─ answer to our Binding ──▶ waiting lookup
//!                                                          └─ anything else ──▶ webrtc-ice's UDPMuxDefault
//!                                                               (by source address, else by USERNAME ufrag)
//! agents ──send_to──▶ the same socket
//! ```
//!
//! webrtc-ice gathers no server-reflexive candidate on a muxed socket, so [`IceSocket::mapped`]
//! asks each STUN server itself, from this socket, and the worker offers the answer as a srflx
//! candidate. WireGuard datagrams never come here: the data plane keeps them.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use webrtc_ice::udp_mux::{UDPMux, UDPMuxDefault, UDPMuxParams};
use webrtc_util::Conn;

use super::stun::{self, TransactionId};
use crate::clock::Instant;

/// STUN messages queued for the mux: connectivity checks and consent run at a few per second
/// per peer (a check every 200 ms while connecting, consent every 4 s after), so 256 covers
/// 100 peers connecting at once; beyond that a check is dropped as the network would, and ICE
/// retransmits it.
const TO_MUX_CAPACITY: usize = 256;
/// RFC 8489 section 6.2.1 retransmits after 500 ms, doubling; three tries (0, 0.5, 1.5 s) then
/// give up at 3.5 s: host candidates still work and the next session asks again.
const BINDING_RETRIES: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
];
/// A mapping answered this recently is reused by the next sessions instead of asking again:
/// 100 peers starting at once send one Binding per server, not 100. Short, because a session
/// that starts later may start because the NAT rebound the socket (its old pair went stale),
/// and then only a fresh answer is right; a network change forgets them at once.
const MAPPING_FRESH_FOR: Duration = Duration::from_secs(3);
/// Lookups waiting for an answer at once: one per STUN server per concurrent session start,
/// bounded so a flood of answers cannot grow the map (a full map refuses new lookups).
const MAX_PENDING: usize = 256;

/// The engine's UDP socket as seen by ICE. Cheap to clone.
#[derive(Clone)]
pub struct IceSocket {
    inner: Arc<Inner>,
}

struct Inner {
    udp: Arc<UdpSocket>,
    mux: Arc<UDPMuxDefault>,
    to_mux: mpsc::Sender<(Bytes, SocketAddr)>,
    pending: Mutex<HashMap<TransactionId, oneshot::Sender<SocketAddr>>>,
    mapped: Mutex<HashMap<SocketAddr, (SocketAddr, Instant)>>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for IceSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceSocket")
            .field("local", &self.inner.udp.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl IceSocket {
    /// ICE on `udp`, the engine's socket. Must be called inside a tokio runtime (the mux reads
    /// its queue in a task of its own, which ends when the last handle is dropped).
    pub fn new(udp: Arc<UdpSocket>) -> io::Result<Self> {
        let local = udp.local_addr()?;
        let (to_mux, from_engine) = mpsc::channel(TO_MUX_CAPACITY);
        let feed = MuxFeed {
            udp: udp.clone(),
            local,
            queue: tokio::sync::Mutex::new(from_engine),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                udp,
                mux: UDPMuxDefault::new(UDPMuxParams::new(feed)),
                to_mux,
                pending: Mutex::new(HashMap::new()),
                mapped: Mutex::new(HashMap::new()),
                dropped: AtomicU64::new(0),
            }),
        })
    }

    /// The mux webrtc-ice's agents run on.
    pub(crate) fn mux(&self) -> Arc<dyn UDPMux + Send + Sync> {
        self.inner.mux.clone()
    }

    /// The socket itself, for paths that send WireGuard to a selected pair.
    pub(crate) fn udp(&self) -> &Arc<UdpSocket> {
        &self.inner.udp
    }

    /// Whether the socket is IPv4 only (then agents gather and accept IPv4 candidates only).
    pub(crate) fn is_v4(&self) -> bool {
        self.inner.udp.local_addr().is_ok_and(|a| a.is_ipv4())
    }

    /// A STUN message that arrived on the engine's socket from `from`.
    pub fn deliver(&self, datagram: &[u8], from: SocketAddr) {
        if let Some(id) = stun::response_transaction(datagram) {
            let waiting = self.inner.pending.lock().remove(&id);
            if let Some(waiting) = waiting {
                match stun::mapped_address(datagram) {
                    Ok(mapped) => {
                        let _ = waiting.send(mapped);
                    }
                    Err(e) => tracing::debug!(%from, error = %e, "STUN server's answer unreadable"),
                }
                return;
            }
        }
        let queued = self
            .inner
            .to_mux
            .try_send((Bytes::copy_from_slice(datagram), from));
        if queued.is_err() {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(%from, "ICE queue full; STUN message dropped");
        }
    }

    /// STUN messages dropped because the agents' queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Our address as `server` sees it (the server-reflexive address), asked from this socket:
    /// reused while fresh, else one Binding transaction with retransmissions.
    pub async fn mapped(&self, server: SocketAddr) -> Option<SocketAddr> {
        let now = Instant::now();
        if let Some((addr, at)) = self.inner.mapped.lock().get(&server) {
            if now.saturating_duration_since(*at) < MAPPING_FRESH_FOR {
                return Some(*addr);
            }
        }
        let mapped = self.binding(server).await?;
        self.inner.mapped.lock().insert(server, (mapped, Instant::now()));
        Some(mapped)
    }

    /// The network changed: mappings learned before say nothing about the new one.
    pub fn forget_mappings(&self) {
        self.inner.mapped.lock().clear();
    }

    async fn binding(&self, server: SocketAddr) -> Option<SocketAddr> {
        let id: TransactionId = rand::random();
        let (tx, mut rx) = oneshot::channel();
        {
            let mut pending = self.inner.pending.lock();
            if pending.len() >= MAX_PENDING {
                tracing::debug!(%server, "too many STUN lookups waiting; not asking");
                return None;
            }
            pending.insert(id, tx);
        }
        let request = stun::binding_request(&id);
        let target = normalize(server, &self.inner.udp);
        let mut answer = None;
        for wait in BINDING_RETRIES {
            if let Err(e) = self.inner.udp.send_to(&request, target).await {
                tracing::debug!(%server, error = %e, "STUN Binding request not sent");
            }
            match tokio::time::timeout(wait, &mut rx).await {
                Ok(Ok(mapped)) => {
                    answer = Some(mapped);
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => {}
            }
        }
        self.inner.pending.lock().remove(&id);
        match answer {
            Some(mapped) => tracing::debug!(%server, %mapped, "server-reflexive address"),
            None => tracing::info!(%server, "STUN server did not answer; no server-reflexive candidate"),
        }
        answer
    }
}

impl Drop for Inner {
    /// The mux's reader task holds the mux: closing it ends the task and frees both.
    fn drop(&mut self) {
        let mux = self.mux.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = mux.close().await;
                });
            }
            Err(_) => {
                tracing::debug!("ICE socket dropped outside a runtime; its mux task ends with the runtime")
            }
        }
    }
}

/// An IPv4 target on a dual-stack IPv6 socket is written as an IPv4-mapped address.
fn normalize(target: SocketAddr, udp: &UdpSocket) -> SocketAddr {
    match (target, udp.local_addr()) {
        (SocketAddr::V4(v4), Ok(SocketAddr::V6(_))) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        _ => target,
    }
}

/// The connection webrtc-ice's mux reads from and writes to: reads come from the engine's
/// receive loop (STUN only), writes go straight out of the engine's socket.
struct MuxFeed {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    queue: tokio::sync::Mutex<mpsc::Receiver<(Bytes, SocketAddr)>>,
}

#[async_trait]
impl Conn for MuxFeed {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(webrtc_util::Error::Other(
            "the shared socket is not connected".to_owned(),
        ))
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let next = self.queue.lock().await.recv().await;
        let Some((datagram, from)) = next else {
            // The engine let go of the socket and closes the mux (`Inner`'s drop), which ends
            // the mux's reader quietly; an error here would be logged as one.
            return std::future::pending().await;
        };
        let n = datagram.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), datagram.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok((n, from))
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other(
            "the shared socket has no default peer".to_owned(),
        ))
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        Ok(self.udp.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn socket() -> (IceSocket, Arc<UdpSocket>) {
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        (IceSocket::new(udp.clone()).unwrap(), udp)
    }

    /// A STUN server on loopback that answers Binding requests with the sender's address.
    async fn stun_server() -> SocketAddr {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let id: TransactionId = buf[8..20].try_into().unwrap();
                assert!(stun::is_stun(&buf[..n]));
                let answer = stun::tests_support::success(&id, from);
                server.send_to(&answer, from).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn our_binding_learns_the_mapped_address_through_the_engine_loop() {
        let (ice, udp) = socket().await;
        let server = stun_server().await;
        // Stands in for the data plane's receive loop: every STUN message goes to `deliver`.
        let reader = {
            let (ice, udp) = (ice.clone(), udp.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 1500];
                while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                    ice.deliver(&buf[..n], from);
                }
            })
        };
        let mapped = ice.mapped(server).await;
        assert_eq!(mapped, Some(udp.local_addr().unwrap()));
        // Fresh: answered from the cache, with no answer needed.
        reader.abort();
        assert_eq!(ice.mapped(server).await, Some(udp.local_addr().unwrap()));
        assert!(ice.inner.pending.lock().is_empty());
    }

    #[tokio::test]
    async fn a_silent_server_gives_no_mapping_and_leaves_nothing_pending() {
        tokio::time::pause();
        let (ice, _udp) = socket().await;
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(ice.mapped(silent.local_addr().unwrap()).await, None);
        assert!(ice.inner.pending.lock().is_empty());
    }
}
