//! Packets from peers we have not opened yet, held briefly: pure policy, clock passed in.
//!
//! A peer that reconnects often sends its WireGuard handshake before our side has opened the
//! relayed connection to it. NetBird's client (shared/relay/client/early_msg_buffer.go) keeps one
//! message per peer for 5 s and hands it over when the peer is opened; a newer message from the
//! same peer replaces the older one. Unlike NetBird (10 000 entries, each pinning an 8820-byte
//! read buffer) we copy the payload and bound both entries and bytes, for a phone's memory.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use super::messages::PeerId;
use crate::clock::Instant;

/// NetBird's `earlyMsgTTL`.
pub const HOLD_FOR: Duration = Duration::from_secs(5);
/// At most this many peers' packets are held: a phone's whole peer list reconnecting at once.
pub const HOLD_MAX_PEERS: usize = 1024;
/// At most this many payload bytes are held: 1024 handshake initiations (148 bytes) fit with room
/// for data packets; the bound keeps a misbehaving server from spending our memory.
pub const HOLD_MAX_BYTES: usize = 256 * 1024;

/// What happened to a packet offered to [`HeldPackets::hold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Held,
    /// Held, replacing an older packet from the same peer.
    Replaced,
    /// Not held: the buffer is full.
    Refused,
}

#[derive(Debug, Default)]
pub struct HeldPackets {
    by_peer: HashMap<PeerId, Entry>,
    /// Arrival order for expiry; may hold stale pairs for replaced or taken entries, skipped
    /// by comparing the arrival time.
    order: VecDeque<(Instant, PeerId)>,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    payload: Bytes,
}

impl HeldPackets {
    /// Holds a copy of `payload` from `peer`, received at `now`.
    pub fn hold(&mut self, peer: PeerId, payload: &[u8], now: Instant) -> Hold {
        self.expire(now);
        let replaced = self.remove(&peer).is_some();
        if self.by_peer.len() >= HOLD_MAX_PEERS || self.bytes + payload.len() > HOLD_MAX_BYTES {
            return Hold::Refused;
        }
        self.bytes += payload.len();
        self.by_peer.insert(
            peer,
            Entry {
                at: now,
                payload: Bytes::copy_from_slice(payload),
            },
        );
        self.order.push_back((now, peer));
        if self.order.len() > 2 * HOLD_MAX_PEERS {
            let by_peer = &self.by_peer;
            self.order
                .retain(|(at, p)| by_peer.get(p).is_some_and(|e| e.at == *at));
        }
        if replaced {
            Hold::Replaced
        } else {
            Hold::Held
        }
    }

    /// The packet held for `peer`, if it is not older than [`HOLD_FOR`] at `now`.
    pub fn take(&mut self, peer: &PeerId, now: Instant) -> Option<Bytes> {
        self.expire(now);
        self.remove(peer).map(|e| e.payload)
    }

    /// Drops packets held longer than [`HOLD_FOR`].
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, peer)) = self.order.front() {
            if now.saturating_duration_since(at) <= HOLD_FOR {
                break;
            }
            self.order.pop_front();
            if self.by_peer.get(&peer).is_some_and(|e| e.at == at) {
                self.remove(&peer);
            }
        }
    }

    pub fn clear(&mut self) {
        self.by_peer.clear();
        self.order.clear();
        self.bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.by_peer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn remove(&mut self, peer: &PeerId) -> Option<Entry> {
        let e = self.by_peer.remove(peer)?;
        self.bytes -= e.payload.len();
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PublicKey;

    fn id(n: u16) -> PeerId {
        let mut k = [0u8; 32];
        k[..2].copy_from_slice(&n.to_be_bytes());
        PeerId::of(&PublicKey::from_bytes(k))
    }

    fn t(ms: u64) -> Instant {
        Instant::from_epoch(Duration::from_millis(ms))
    }

    #[test]
    fn a_held_packet_is_handed_over_within_five_seconds() {
        let mut h = HeldPackets::default();
        assert_eq!(h.hold(id(1), b"handshake", t(0)), Hold::Held);
        assert_eq!(h.take(&id(1), t(5000)).as_deref(), Some(&b"handshake"[..]));
        assert_eq!(h.take(&id(1), t(5000)), None, "handed over once");
    }

    #[test]
    fn a_packet_older_than_five_seconds_is_gone() {
        let mut h = HeldPackets::default();
        h.hold(id(1), b"x", t(0));
        assert_eq!(h.take(&id(1), t(5001)), None);
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn one_packet_per_peer_and_the_newer_wins() {
        let mut h = HeldPackets::default();
        h.hold(id(1), b"old", t(0));
        assert_eq!(h.hold(id(1), b"newer", t(4000)), Hold::Replaced);
        assert_eq!(h.len(), 1);
        assert_eq!(h.bytes(), 5);
        // The replacement keeps its own five seconds.
        assert_eq!(h.take(&id(1), t(8000)).as_deref(), Some(&b"newer"[..]));
    }

    #[test]
    fn peers_and_bytes_are_bounded() {
        let mut h = HeldPackets::default();
        for n in 0..HOLD_MAX_PEERS as u16 {
            assert_eq!(h.hold(id(n), b"x", t(0)), Hold::Held);
        }
        assert_eq!(h.hold(id(9999), b"x", t(0)), Hold::Refused);
        let mut h = HeldPackets::default();
        assert_eq!(h.hold(id(1), &vec![0; HOLD_MAX_BYTES], t(0)), Hold::Held);
        assert_eq!(h.hold(id(2), b"x", t(0)), Hold::Refused);
        assert_eq!(h.take(&id(2), t(0)), None);
    }

    #[test]
    fn expiry_frees_room_for_new_peers() {
        let mut h = HeldPackets::default();
        for n in 0..HOLD_MAX_PEERS as u16 {
            h.hold(id(n), b"x", t(0));
        }
        assert_eq!(h.hold(id(5000), b"x", t(5001)), Hold::Held);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn a_flood_of_replacements_keeps_the_order_queue_bounded() {
        let mut h = HeldPackets::default();
        for i in 0..100_000u64 {
            h.hold(id(1), b"x", t(i / 100));
        }
        assert!(h.order.len() <= 2 * HOLD_MAX_PEERS + 1, "{}", h.order.len());
        assert_eq!(h.len(), 1);
    }
}
