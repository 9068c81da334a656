//! A lock-free shortcut in front of the flow table: the flows the table confirmed within the
//! last [`FRESH`] pass without taking its lock.
//!
//! The tun task (outbound) and the socket task (inbound) both touch a peer's flows on every
//! packet; behind one mutex they contend for it, packet by packet. Here each slot remembers
//! one flow (a keyed hash of its key) and when the table last confirmed it, in one atomic
//! word. A packet that could change a flow's state (a TCP SYN, FIN or RST) always goes to the
//! table; any other packet of a flow confirmed less than [`FRESH`] ago is settled here. So
//! the table sees each busy flow about once per [`FRESH`] per direction: its idle timers run
//! at most that much early, and a flow evicted from a full table keeps passing for at most
//! that long.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::flows::FlowKey;
use crate::clock::Instant;

/// How long a confirmation by the table stands: far below the shortest flow timeout (NetBird's
/// 30 s for UDP and ICMP), long enough that a busy flow takes the table's lock once a second.
pub const FRESH: Duration = Duration::from_secs(1);
const FRESH_MS: u32 = 1000;
const _: () = assert!(FRESH.as_millis() == FRESH_MS as u128);

/// Slots per peer: a peer with more busy flows than this takes the lock more often, nothing
/// worse. 64 words, 512 bytes per peer.
const SLOTS: usize = 64;

#[derive(Debug)]
pub struct RecentFlows {
    /// `fingerprint << 32 | confirmed at (ms, wrapping)`; 0 is empty (fingerprints are odd).
    slots: [AtomicU64; SLOTS],
    /// Keyed per peer, so that a peer cannot craft a flow that collides with one of ours.
    hasher: std::collections::hash_map::RandomState,
}

impl Default for RecentFlows {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl RecentFlows {
    /// Whether the table confirmed this flow less than [`FRESH`] ago.
    pub fn is_fresh(&self, key: &FlowKey, now: Instant) -> bool {
        let (slot, fingerprint) = self.place(key);
        let Some(entry) = self.slots.get(slot).map(|s| s.load(Ordering::Relaxed)) else {
            return false;
        };
        // Truncation keeps the low 32 bits: the confirmation time.
        entry >> 32 == fingerprint && millis(now).wrapping_sub(entry as u32) < FRESH_MS
    }

    /// The table has this flow, live, at `now`.
    pub fn confirm(&self, key: &FlowKey, now: Instant) {
        let (slot, fingerprint) = self.place(key);
        if let Some(s) = self.slots.get(slot) {
            s.store((fingerprint << 32) | u64::from(millis(now)), Ordering::Relaxed);
        }
    }

    /// The slot from the hash's low bits, the fingerprint from its high half (made odd, so an
    /// empty slot matches nothing).
    fn place(&self, key: &FlowKey) -> (usize, u64) {
        let hash = self.hasher.hash_one(key);
        ((hash as usize) % SLOTS, (hash >> 32) | 1)
    }
}

/// Milliseconds on the clock, wrapping every 49 days: only differences below [`FRESH`] count.
fn millis(now: Instant) -> u32 {
    // Truncation intended: the clock's low 32 bits of milliseconds.
    now.saturating_duration_since(Instant::from_epoch(Duration::ZERO))
        .as_millis() as u32
}
