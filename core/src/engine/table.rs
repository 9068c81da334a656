//! The engine's peers as one immutable snapshot: swapped whole on `update_peers`, read per
//! packet without a lock.

use std::collections::HashMap;
use std::sync::Arc;

use boringtun::noise::rate_limiter::RateLimiter;

use crate::config::PeerConfig;
use crate::keys::{PrivateKey, PublicKey};
use crate::wg::{AllowedIps, Peer};

#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    pub by_key: HashMap<PublicKey, Arc<Peer>>,
    pub by_index: HashMap<u32, Arc<Peer>>,
    /// Cryptokey routing: destination → peer out, and source must map back to the sender in.
    pub routes: AllowedIps<Arc<Peer>>,
}

/// boringtun's local index is 24 bits wide (it shifts it left by 8).
const INDEX_MASK: u32 = 0x00ff_ffff;

impl PeerTable {
    /// Builds the table for `configs`, keeping the session state of peers that are unchanged in
    /// everything but their allowed IPs and endpoint (so an update never drops a healthy peer).
    pub fn build(
        own: &PrivateKey,
        configs: Vec<PeerConfig>,
        previous: &PeerTable,
        rate_limiter: &Arc<RateLimiter>,
        next_index: &mut u32,
    ) -> PeerTable {
        let mut table = PeerTable::default();
        for config in configs {
            let peer = match previous.by_key.get(&config.public_key) {
                Some(old) if same_session(&old.config, &config) => old.clone(),
                Some(_) | None => {
                    let index = allocate_index(next_index, previous);
                    Arc::new(Peer::new(own, config.clone(), index, rate_limiter.clone()))
                }
            };
            for net in &config.allowed_ips {
                table.routes.insert(*net, peer.clone());
            }
            table.by_index.insert(peer.index, peer.clone());
            table.by_key.insert(peer.key, peer);
        }
        table
    }

    /// The peer a session index (from a datagram's receiver field) belongs to.
    pub fn by_session_index(&self, receiver_idx: u32) -> Option<&Arc<Peer>> {
        self.by_index.get(&(receiver_idx >> 8))
    }
}

/// Whether two configurations of one peer can share a `Tunn` (boringtun cannot change a
/// preshared key or keepalive in place).
fn same_session(old: &PeerConfig, new: &PeerConfig) -> bool {
    old.preshared_key.map(|k| k.0) == new.preshared_key.map(|k| k.0)
        && old.persistent_keepalive == new.persistent_keepalive
}

fn allocate_index(next: &mut u32, previous: &PeerTable) -> u32 {
    loop {
        *next = (next.wrapping_add(1)) & INDEX_MASK;
        if *next != 0 && !previous.by_index.contains_key(next) {
            return *next;
        }
    }
}
