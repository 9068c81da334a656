//! The selected ICE pair as an engine [`Path`]: datagrams go out through a bounded queue to a
//! writer task on the agent's `Conn` (its `send` is async and follows the selected pair), and a
//! reader task delivers what arrives to the engine as [`Inbound`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc_util::Conn;

use super::events::PairInfo;
use super::session::PathBinding;
use crate::clock::Instant;
use crate::path::{Inbound, Path, PathError, PathKind};
use crate::wg::PACKET_BUFFER;

/// Queue to the writer task: 256 × ≤ 1.5 KiB ≈ 384 KiB at most per peer, about 3 ms at
/// 1 Gbit/s, enough to ride out a scheduling hiccup; beyond that we drop as a UDP socket would.
pub const OUTBOUND_CAPACITY: usize = 256;

/// WireGuard's handshake initiation: type 1, 148 bytes, sender index at bytes 4..8.
const HANDSHAKE_INITIATION: (u8, usize) = (1, 148);
/// WireGuard's handshake response: type 2, 92 bytes, receiver index at bytes 8..12.
const HANDSHAKE_RESPONSE: (u8, usize) = (2, 92);

/// An ICE pair carrying one peer's WireGuard datagrams.
#[derive(Debug)]
pub struct IcePath {
    info: PairInfo,
    kind: PathKind,
    remote: String,
    outbound: mpsc::Sender<Bytes>,
    rtt: Arc<HandshakeRtt>,
    closed: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl IcePath {
    /// Starts the reader and writer tasks on `conn` (the agent's connection). Must be called
    /// inside a tokio runtime.
    pub(crate) fn start(
        conn: Arc<dyn Conn + Send + Sync>,
        binding: PathBinding,
        info: PairInfo,
    ) -> Arc<Self> {
        let (outbound, queue) = mpsc::channel(OUTBOUND_CAPACITY);
        let rtt = Arc::new(HandshakeRtt::default());
        let tasks = vec![
            tokio::spawn(write_loop(conn.clone(), queue)),
            tokio::spawn(read_loop(conn, binding, rtt.clone())),
        ];
        Arc::new(Self {
            kind: info.path_kind(),
            remote: info.remote.addr.to_string(),
            info,
            outbound,
            rtt,
            closed: AtomicBool::new(false),
            tasks: Mutex::new(tasks),
        })
    }

    /// The selected pair's candidates and the time it took to connect.
    pub fn info(&self) -> PairInfo {
        self.info
    }

    /// The round trip of the last WireGuard handshake we initiated on this path.
    /// (webrtc-ice 0.17 measures no RTT: its pair statistics always report zero.)
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.get()
    }

    /// Whether the reader and writer still run (false once the session closed).
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && !self.outbound.is_closed()
    }

    /// Stops the reader and writer; `send` fails with `Closed` from now on.
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

impl Path for IcePath {
    fn kind(&self) -> PathKind {
        self.kind
    }

    fn remote(&self) -> String {
        self.remote.clone()
    }

    fn send(&self, datagram: &[u8]) -> Result<(), PathError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(PathError::Closed);
        }
        self.rtt.on_send(datagram);
        match self.outbound.try_send(Bytes::copy_from_slice(datagram)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(PathError::Congested),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PathError::Closed),
        }
    }
}

impl Drop for IcePath {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn write_loop(conn: Arc<dyn Conn + Send + Sync>, mut queue: mpsc::Receiver<Bytes>) {
    while let Some(datagram) = queue.recv().await {
        if let Err(e) = conn.send(&datagram).await {
            tracing::trace!(error = %e, "ice send failed");
        }
    }
}

async fn read_loop(conn: Arc<dyn Conn + Send + Sync>, binding: PathBinding, rtt: Arc<HandshakeRtt>) {
    let mut buf = vec![0u8; PACKET_BUFFER];
    loop {
        let n = match conn.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(peer = %binding.peer, error = %e, "ice path reader stops");
                return;
            }
        };
        let Some(datagram) = buf.get(..n) else { continue };
        rtt.on_receive(datagram);
        let inbound = Inbound {
            peer: binding.peer,
            path: binding.id,
            datagram: Bytes::copy_from_slice(datagram),
        };
        if binding.inbound.send(inbound).await.is_err() {
            tracing::debug!(peer = %binding.peer, "engine gone; ice path reader stops");
            return;
        }
    }
}

/// Times WireGuard handshakes we initiate on this path: initiation out, matching response in.
#[derive(Debug, Default)]
struct HandshakeRtt {
    pending: Mutex<Option<(u32, Instant)>>,
    /// Nanoseconds plus one; zero means no measurement yet.
    last: AtomicU64,
}

impl HandshakeRtt {
    fn on_send(&self, d: &[u8]) {
        if !is_message(d, HANDSHAKE_INITIATION) {
            return;
        }
        if let Some(sender) = index_at(d, 4) {
            *self.pending.lock() = Some((sender, Instant::now()));
        }
    }

    fn on_receive(&self, d: &[u8]) {
        if !is_message(d, HANDSHAKE_RESPONSE) {
            return;
        }
        let Some(receiver) = index_at(d, 8) else { return };
        let mut pending = self.pending.lock();
        let Some((sender, sent)) = *pending else { return };
        if sender != receiver {
            return;
        }
        *pending = None;
        let rtt = Instant::now().saturating_duration_since(sent);
        let nanos = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX - 1);
        self.last.store(nanos.saturating_add(1), Ordering::Relaxed);
    }

    fn get(&self) -> Option<Duration> {
        self.last
            .load(Ordering::Relaxed)
            .checked_sub(1)
            .map(Duration::from_nanos)
    }
}

fn is_message(d: &[u8], (kind, len): (u8, usize)) -> bool {
    d.len() == len && d.get(..4) == Some(&[kind, 0, 0, 0][..])
}

fn index_at(d: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = d.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, len: usize, index_at_byte: usize, index: u32) -> Vec<u8> {
        let mut m = vec![0u8; len];
        m[0] = kind;
        m[index_at_byte..index_at_byte + 4].copy_from_slice(&index.to_le_bytes());
        m
    }

    #[test]
    fn a_matching_handshake_response_gives_an_rtt() {
        let r = HandshakeRtt::default();
        assert_eq!(r.get(), None);
        r.on_send(&message(1, 148, 4, 77));
        r.on_receive(&message(2, 92, 8, 78));
        assert_eq!(r.get(), None, "another handshake's response");
        r.on_receive(&message(2, 92, 8, 77));
        assert!(r.get().is_some());
    }

    #[test]
    fn data_packets_are_not_timed() {
        let r = HandshakeRtt::default();
        r.on_send(&message(4, 148, 4, 1));
        r.on_receive(&message(2, 93, 8, 1));
        assert_eq!(r.get(), None);
    }
}
