//! The receive side's way to the tun: on an offloading Linux tun, consecutive segments of one
//! TCP flow leave as one coalesced frame when the loop has handled what one wakeup brought
//! (see `tun::Coalescer`); on other tuns each packet is written as it comes.

use std::sync::Arc;

use super::super::Shared;
use crate::tun::{Coalescer, Frame, Framing, Tun};
use crate::wg::{Peer, PACKET_BUFFER};

/// Bytes of buffers one [`Rx`] owns: the decrypt buffer and the coalescer's run.
pub(in crate::engine) const RX_BUFFER_BYTES: usize = PACKET_BUFFER + crate::tun::COALESCE_RUN_BYTES;

/// What a receive loop owns: the buffer WireGuard decrypts into, and the packets on their way
/// to the tun. Reused for every datagram.
pub(in crate::engine) struct Rx {
    pub plain: Vec<u8>,
    pub tun: TunOut,
}

impl Rx {
    pub fn new() -> Self {
        Self {
            plain: vec![0u8; PACKET_BUFFER],
            tun: TunOut {
                coalescer: Coalescer::new(),
                owner: None,
            },
        }
    }
}

/// The run being coalesced, and the peer it came from (a run never mixes peers).
pub(in crate::engine) struct TunOut {
    coalescer: Coalescer,
    owner: Option<Arc<Peer>>,
}

impl Shared {
    /// Hands a packet that passed every check to the tun; on an offloading tun it may wait in
    /// the run until [`Shared::flush_tun`].
    pub(super) fn write_tun(&self, out: &mut TunOut, peer: &Arc<Peer>, packet: &[u8]) {
        let tun = self.tun.load();
        if tun.framing() != Framing::LinuxVnet {
            match tun.try_send(packet) {
                Ok(true) => {
                    peer.counters.rx_packets(1);
                    peer.counters.rx_bytes(packet.len() as u64);
                }
                Ok(false) => peer.counters.tun_write_failed(1),
                Err(e) => {
                    tracing::trace!(error = %e, "tun write failed");
                    peer.counters.tun_write_failed(1);
                }
            }
            return;
        }
        if !out.owner.as_ref().is_some_and(|o| Arc::ptr_eq(o, peer)) {
            self.flush_tun(out);
            out.owner = Some(peer.clone());
        }
        let TunOut { coalescer, owner } = out;
        coalescer.push(packet, |frame| write_frame(&tun, owner.as_deref(), frame));
    }

    /// Writes the run that waits, if any: a receive loop calls it once it has handled what one
    /// wakeup brought.
    pub(in crate::engine) fn flush_tun(&self, out: &mut TunOut) {
        let Some(owner) = out.owner.take() else {
            return;
        };
        let tun = self.tun.load();
        out.coalescer
            .flush(|frame| write_frame(&tun, Some(&owner), frame));
    }
}

fn write_frame(tun: &Tun, owner: Option<&Peer>, frame: Frame<'_>) {
    let written = tun.try_send_frame(&frame.header, frame.packet);
    let Some(peer) = owner else { return };
    match written {
        Ok(true) => {
            peer.counters.rx_packets(frame.packets as u64);
            peer.counters.rx_bytes(frame.ip_bytes as u64);
        }
        Ok(false) => peer.counters.tun_write_failed(frame.packets as u64),
        Err(e) => {
            tracing::trace!(error = %e, "tun write failed");
            peer.counters.tun_write_failed(frame.packets as u64);
        }
    }
}
