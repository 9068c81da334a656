//! Counters the data plane bumps per packet (relaxed atomics) and their snapshots.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($(#[$m:meta])* $name:ident => $snap:ident { $($(#[$fm:meta])* $field:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default)]
        pub struct $name { $($field: AtomicU64,)* }

        /// A snapshot.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $snap { $($(#[$fm])* pub $field: u64,)* }

        impl $name {
            $(
                pub fn $field(&self, n: u64) {
                    self.$field.fetch_add(n, Ordering::Relaxed);
                }
            )*

            pub fn snapshot(&self) -> $snap {
                $snap { $($field: self.$field.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters!(
    /// Traffic and drops of one peer.
    PeerCounters => PeerCountersSnapshot {
        /// IP bytes handed to WireGuard for this peer.
        tx_bytes,
        tx_packets,
        /// IP bytes delivered to the tun from this peer.
        rx_bytes,
        rx_packets,
        /// Dropped: decrypted fine, but the source IP is outside the peer's allowed IPs.
        spoofed_source,
        /// Dropped: WireGuard refused it (bad MAC, replay, no session, malformed).
        rejected,
        /// Dropped: no path to the peer.
        no_path,
        /// Dropped: the path could not take it (congested or closed).
        send_failed,
        /// Dropped: the tun was full or refused the write.
        tun_write_failed,
        /// Dropped by the filter: no rule accepts it and no flow of ours explains it.
        filter_no_rule,
        /// Dropped by the filter: a drop rule matched.
        filter_denied,
        /// Dropped by the filter: not a readable IP packet.
        filter_malformed,
        /// Flows of ours evicted to make room (flow table full); their replies meet the rules.
        filter_table_full,
    }
);

counters!(
    /// Engine-wide drops that belong to no peer.
    EngineCounters => EngineCountersSnapshot {
        /// A tun packet for a destination no peer's allowed IPs contain.
        no_route,
        /// A tun frame that is not an IPv4 or IPv6 packet.
        tun_garbage,
        /// A datagram that is not a WireGuard message.
        net_garbage,
        /// A WireGuard message for a session or key we do not know.
        unknown_peer,
        /// A handshake initiation whose MAC1 is wrong (garbage, or meant for another key),
        /// dropped before any Diffie-Hellman.
        bad_mac,
        /// Cookie replies sent to handshake initiations under load (WireGuard's DoS defence).
        cookie_replies,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_in_snapshots() {
        let c = PeerCounters::default();
        c.tx_bytes(100);
        c.tx_bytes(20);
        c.spoofed_source(1);
        let s = c.snapshot();
        assert_eq!((s.tx_bytes, s.spoofed_source, s.rx_bytes), (120, 1, 0));
    }
}
