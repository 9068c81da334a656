//! Per-path observations the watcher will read: cheap atomics the data plane bumps per packet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::Instant;

/// Counters and timestamps of one path. Timestamps are nanoseconds on the engine's clock plus
/// one, so that zero means "never".
#[derive(Debug, Default)]
pub struct PathStats {
    last_rx: AtomicU64,
    last_tx: AtomicU64,
    rx_packets: AtomicU64,
    tx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_bytes: AtomicU64,
}

/// A snapshot of [`PathStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathObservations {
    /// Last authenticated WireGuard packet received on this path.
    pub last_rx: Option<Instant>,
    pub last_tx: Option<Instant>,
    /// Last authenticated WireGuard data message (keepalives count) received on this path.
    pub last_data_rx: Option<Instant>,
    /// Last authenticated handshake initiation or response received on this path.
    pub last_handshake_rx: Option<Instant>,
    /// The first send after the last authenticated receive: traffic went out, nothing came back.
    pub tx_unanswered_since: Option<Instant>,
    /// Handshake initiation sent → its response received, on this path.
    pub rtt: Option<Duration>,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl PathStats {
    /// An authenticated packet of `len` bytes arrived.
    pub fn on_rx(&self, now: Instant, len: usize) {
        self.last_rx.store(stamp(now), Ordering::Relaxed);
        self.rx_packets.fetch_add(1, Ordering::Relaxed);
        self.rx_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    pub fn on_tx(&self, now: Instant, len: usize) {
        self.last_tx.store(stamp(now), Ordering::Relaxed);
        self.tx_packets.fetch_add(1, Ordering::Relaxed);
        self.tx_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> PathObservations {
        PathObservations {
            last_rx: unstamp(self.last_rx.load(Ordering::Relaxed)),
            last_tx: unstamp(self.last_tx.load(Ordering::Relaxed)),
            last_data_rx: None,
            last_handshake_rx: None,
            tx_unanswered_since: None,
            rtt: None,
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
        }
    }
}

fn stamp(t: Instant) -> u64 {
    let since = t.saturating_duration_since(Instant::from_epoch(Duration::ZERO));
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

fn unstamp(v: u64) -> Option<Instant> {
    v.checked_sub(1)
        .map(|n| Instant::from_epoch(Duration::from_nanos(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reflects_traffic() {
        let s = PathStats::default();
        assert_eq!(s.snapshot(), PathObservations::default());
        let t = Instant::from_epoch(Duration::from_secs(3));
        s.on_rx(t, 100);
        s.on_tx(t, 40);
        s.on_tx(t, 60);
        let o = s.snapshot();
        assert_eq!((o.last_rx, o.rx_packets, o.rx_bytes), (Some(t), 1, 100));
        assert_eq!((o.last_tx, o.tx_packets, o.tx_bytes), (Some(t), 2, 100));
    }
}
