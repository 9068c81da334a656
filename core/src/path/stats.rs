//! Per-path observations the watcher reads: cheap atomics the data plane bumps per packet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::Instant;

/// WireGuard's handshake initiation message type, the first byte of the datagram.
const HANDSHAKE_INITIATION: u8 = 1;

/// What an authenticated datagram received on a path was, by its WireGuard message type.
/// Cookie replies are not here: anyone on the path can forge one, so they prove nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authenticated {
    /// Type 1: the peer starts a handshake.
    HandshakeInitiation,
    /// Type 2: the peer answers ours.
    HandshakeResponse,
    /// Type 4: transport data, keepalives included.
    Data,
}

/// Counters and timestamps of one path. Timestamps are nanoseconds on the engine's clock plus
/// one, so that zero means "never" (or, for `tx_unanswered_since`, "answered").
#[derive(Debug, Default)]
pub struct PathStats {
    last_rx: AtomicU64,
    last_data_rx: AtomicU64,
    last_handshake_rx: AtomicU64,
    last_tx: AtomicU64,
    tx_unanswered_since: AtomicU64,
    /// The last handshake initiation sent on this path, until a response on it measures the rtt.
    initiation_sent: AtomicU64,
    /// Nanoseconds plus one of the last measured round trip.
    rtt: AtomicU64,
    rx_packets: AtomicU64,
    tx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_bytes: AtomicU64,
}

/// A snapshot of [`PathStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathObservations {
    /// Last authenticated WireGuard packet of any kind received on this path: proof of life.
    pub last_rx: Option<Instant>,
    /// Last authenticated data message (keepalives count) received on this path: proof that
    /// data passes, not just handshakes.
    pub last_data_rx: Option<Instant>,
    /// Last authenticated handshake initiation or response received on this path.
    pub last_handshake_rx: Option<Instant>,
    pub last_tx: Option<Instant>,
    /// The first send on this path since the last authenticated receive: traffic went out and
    /// nothing came back since. `None` once anything authenticated arrives.
    pub tx_unanswered_since: Option<Instant>,
    /// From a handshake initiation sent on this path to the response received on it, the last
    /// time one was measured.
    pub rtt: Option<Duration>,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl PathStats {
    /// An authenticated datagram of `len` bytes arrived on this path. True for the first one:
    /// the path's first proof of life.
    pub fn on_rx(&self, now: Instant, len: usize, what: Authenticated) -> bool {
        let at = stamp(now);
        let first = self.last_rx.load(Ordering::Relaxed) == 0;
        self.last_rx.store(at, Ordering::Relaxed);
        match what {
            Authenticated::HandshakeInitiation => self.last_handshake_rx.store(at, Ordering::Relaxed),
            Authenticated::HandshakeResponse => {
                self.last_handshake_rx.store(at, Ordering::Relaxed);
                // boringtun keeps only its newest initiation, so a response that authenticates
                // answers the last one sent; taking the stamp measures it once.
                if let Some(sent) = unstamp(self.initiation_sent.swap(0, Ordering::Relaxed)) {
                    self.rtt.store(stamp_duration(now - sent), Ordering::Relaxed);
                }
            }
            Authenticated::Data => self.last_data_rx.store(at, Ordering::Relaxed),
        }
        // A load first: most receives find it clear and need not take the cache line.
        if self.tx_unanswered_since.load(Ordering::Relaxed) != 0 {
            self.tx_unanswered_since.store(0, Ordering::Relaxed);
        }
        self.rx_packets.fetch_add(1, Ordering::Relaxed);
        self.rx_bytes.fetch_add(len as u64, Ordering::Relaxed);
        first
    }

    /// `datagram` went out on this path.
    pub fn on_tx(&self, now: Instant, datagram: &[u8]) {
        let at = stamp(now);
        self.last_tx.store(at, Ordering::Relaxed);
        // Only the first send after an answer starts the silence; most sends find it set.
        if self.tx_unanswered_since.load(Ordering::Relaxed) == 0 {
            let _ = self
                .tx_unanswered_since
                .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
        }
        if datagram.first() == Some(&HANDSHAKE_INITIATION) {
            self.initiation_sent.store(at, Ordering::Relaxed);
        }
        self.tx_packets.fetch_add(1, Ordering::Relaxed);
        self.tx_bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> PathObservations {
        PathObservations {
            last_rx: unstamp(self.last_rx.load(Ordering::Relaxed)),
            last_data_rx: unstamp(self.last_data_rx.load(Ordering::Relaxed)),
            last_handshake_rx: unstamp(self.last_handshake_rx.load(Ordering::Relaxed)),
            last_tx: unstamp(self.last_tx.load(Ordering::Relaxed)),
            tx_unanswered_since: unstamp(self.tx_unanswered_since.load(Ordering::Relaxed)),
            rtt: self
                .rtt
                .load(Ordering::Relaxed)
                .checked_sub(1)
                .map(Duration::from_nanos),
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
        }
    }
}

fn stamp(t: Instant) -> u64 {
    stamp_duration(t.saturating_duration_since(Instant::from_epoch(Duration::ZERO)))
}

fn stamp_duration(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1) + 1
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
        let t = at(3_000);
        s.on_rx(t, 100, Authenticated::Data);
        s.on_tx(t, &[4; 40]);
        s.on_tx(t, &[4; 60]);
        let o = s.snapshot();
        assert_eq!((o.last_rx, o.rx_packets, o.rx_bytes), (Some(t), 1, 100));
        assert_eq!((o.last_tx, o.tx_packets, o.tx_bytes), (Some(t), 2, 100));
    }

    #[test]
    fn data_received_sets_last_data_rx_and_not_last_handshake_rx() {
        let s = PathStats::default();
        assert!(s.on_rx(at(10), 32, Authenticated::Data), "the path's first proof");
        assert!(
            !s.on_rx(at(10), 32, Authenticated::Data),
            "not the first any more"
        );
        let o = s.snapshot();
        assert_eq!((o.last_rx, o.last_data_rx), (Some(at(10)), Some(at(10))));
        assert_eq!(o.last_handshake_rx, None);
    }

    #[test]
    fn handshakes_received_set_last_handshake_rx_and_not_last_data_rx() {
        let s = PathStats::default();
        s.on_rx(at(10), 148, Authenticated::HandshakeInitiation);
        assert_eq!(s.snapshot().last_handshake_rx, Some(at(10)));
        s.on_rx(at(20), 92, Authenticated::HandshakeResponse);
        let o = s.snapshot();
        assert_eq!((o.last_rx, o.last_handshake_rx), (Some(at(20)), Some(at(20))));
        assert_eq!(o.last_data_rx, None);
    }

    #[test]
    fn unanswered_since_is_the_first_send_after_the_last_receive() {
        let s = PathStats::default();
        s.on_tx(at(10), &[4; 32]);
        s.on_tx(at(20), &[4; 32]);
        assert_eq!(s.snapshot().tx_unanswered_since, Some(at(10)));
        s.on_rx(at(30), 32, Authenticated::Data);
        assert_eq!(s.snapshot().tx_unanswered_since, None);
        s.on_tx(at(40), &[4; 32]);
        assert_eq!(s.snapshot().tx_unanswered_since, Some(at(40)));
        s.on_rx(at(50), 148, Authenticated::HandshakeInitiation);
        assert_eq!(
            s.snapshot().tx_unanswered_since,
            None,
            "any authenticated receive answers"
        );
    }

    #[test]
    fn rtt_runs_from_the_last_initiation_sent_to_the_response() {
        let s = PathStats::default();
        s.on_tx(at(100), &[1; 148]);
        s.on_tx(at(200), &[1; 148]);
        s.on_tx(at(210), &[4; 32]);
        s.on_rx(at(230), 92, Authenticated::HandshakeResponse);
        assert_eq!(s.snapshot().rtt, Some(Duration::from_millis(30)));
        // A second response without a new initiation measures nothing.
        s.on_rx(at(900), 92, Authenticated::HandshakeResponse);
        assert_eq!(s.snapshot().rtt, Some(Duration::from_millis(30)));
    }

    #[test]
    fn rtt_is_not_measured_by_data_or_without_an_initiation() {
        let s = PathStats::default();
        s.on_rx(at(10), 92, Authenticated::HandshakeResponse);
        s.on_tx(at(20), &[1; 148]);
        s.on_rx(at(30), 32, Authenticated::Data);
        assert_eq!(s.snapshot().rtt, None);
    }

    fn at(ms: u64) -> Instant {
        Instant::from_epoch(Duration::from_millis(ms))
    }
}
