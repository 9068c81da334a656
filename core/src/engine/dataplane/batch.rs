//! One tun burst's datagrams for the direct path, sent as runs of equal size with one
//! segmented send each (UDP GSO), in the order they were encapsulated.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use tokio::net::UdpSocket;

use super::gso;
use crate::clock::Instant;
use crate::wg::{AttachedPath, Peer};

/// A run of datagrams to one peer's direct path, encapsulated in place.
pub(super) struct SendBatch {
    buf: Vec<u8>,
    /// Bytes of datagrams in `buf`.
    len: usize,
    /// Size of every datagram in the run but the last.
    segment: usize,
    count: usize,
    /// The last datagram was shorter than `segment`: the run cannot grow.
    sealed: bool,
    to: Option<(Arc<Peer>, Arc<AttachedPath>)>,
    /// Cleared for good when the kernel refuses a segmented send.
    offload: bool,
}

impl SendBatch {
    pub fn new() -> Self {
        Self {
            buf: vec![0; gso::MAX_SEND_BYTES],
            len: 0,
            segment: 0,
            count: 0,
            sealed: false,
            to: None,
            offload: gso::OFFLOAD,
        }
    }

    /// Room to encapsulate the next datagram for `path` into, of at least `need` bytes. Sends
    /// the run first if the datagram cannot join it.
    pub fn room(
        &mut self,
        udp: &UdpSocket,
        peer: &Arc<Peer>,
        path: &Arc<AttachedPath>,
        need: usize,
    ) -> &mut [u8] {
        let same = self
            .to
            .as_ref()
            .is_some_and(|(p, a)| Arc::ptr_eq(p, peer) && Arc::ptr_eq(a, path));
        let full = self.count >= gso::MAX_SEGMENTS || self.buf.len().saturating_sub(self.len) < need;
        if !same || full || self.sealed {
            self.flush(udp, Instant::now());
        }
        if self.to.is_none() {
            self.to = Some((peer.clone(), path.clone()));
        }
        self.buf.get_mut(self.len..).unwrap_or_default()
    }

    /// The datagram just encapsulated into [`SendBatch::room`] is `n` bytes long.
    pub fn commit(&mut self, udp: &UdpSocket, n: usize) {
        if self.count > 0 && n > self.segment {
            // Longer than the run's segments: the run goes out and this datagram starts anew.
            let start = self.len;
            let to = self.to.clone();
            self.flush(udp, Instant::now());
            self.buf.copy_within(start..start + n, 0);
            self.to = to;
        }
        if self.count == 0 {
            self.segment = n;
        }
        self.sealed = n < self.segment;
        self.len += n;
        self.count += 1;
    }

    /// Sends the run, if any.
    pub fn flush(&mut self, udp: &UdpSocket, now: Instant) {
        let Some((peer, path)) = self.to.take() else {
            return;
        };
        let run = self.buf.get(..self.len).unwrap_or_default();
        let (segment, count) = (self.segment.max(1), self.count);
        self.len = 0;
        self.count = 0;
        self.sealed = false;
        if count == 0 {
            return;
        }
        // The direct path sends on the engine's socket to its current endpoint, read once per
        // run (roaming moves it between runs, as it moves it between datagrams).
        let endpoint = (count > 1 && self.offload)
            .then(|| path.path.udp_endpoint())
            .flatten();
        let Some(endpoint) = endpoint else {
            one_by_one(&peer, &path, run, segment, now);
            return;
        };
        match gso::send_segments(udp.as_raw_fd(), run, segment, endpoint) {
            Ok(()) => {
                for d in run.chunks(segment) {
                    path.stats.on_tx(now, d);
                }
            }
            Err(e) if gso::offload_unsupported(&e) => {
                tracing::debug!(error = %e, "UDP segmentation offload refused; sending one datagram at a time");
                self.offload = false;
                one_by_one(&peer, &path, run, segment, now);
            }
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => one_by_one(&peer, &path, run, segment, now),
            Err(e) => {
                tracing::trace!(peer = %peer.key, path = ?path.id, error = %e, count, "send failed");
                peer.counters.send_failed(count as u64);
            }
        }
    }
}

fn one_by_one(peer: &Peer, path: &AttachedPath, run: &[u8], segment: usize, now: Instant) {
    for d in run.chunks(segment) {
        super::send_on(peer, path, d, now);
    }
}
