//! The packet-buffer budget of one engine: every buffer and queue that holds packets, its
//! bound, and the totals checked at compile time (an iOS packet tunnel extension is killed at
//! 50 MB, DESIGN 5; Firezone asserts its mobile budget the same way).
//!
//! Queues hold packets by count; their bytes depend on what sits in them. Datagrams we produce
//! are at most the MTU plus WireGuard's 32 bytes: on a phone that is [`MOBILE_MTU`]. Datagrams
//! that arrive are as large as the sender makes them, up to the reader's own limit.
//!
//! | what | bound | grows with |
//! |---|---|---|
//! | the data plane loops' buffers | [`dataplane::LOOP_BUFFER_BYTES`] | nothing |
//! | relay and ICE datagrams on their way to the data plane | [`INBOUND_CAPACITY`] × the largest a relay or ICE reader passes on | nothing |
//! | one relay connection: datagrams waiting for its writer, packets of peers not yet opened | [`DATA_QUEUE`] × ours + [`HOLD_MAX_BYTES`] | relay servers in use |
//! | one peer: its ICE writer's queue, boringtun's queue while a handshake is under way, the datagram held while it has no path | [`ICE_OUTBOUND`] × ours + [`BORINGTUN_QUEUE`] × MTU + ours | peers written faster than their path drains |
//!
//! Channels that carry control messages (events, signal, ICE candidates) hold no packets and
//! are bounded where they are made. The UDP socket's buffers are kernel memory.

use super::dataplane;
use crate::config::MAX_MTU;
use crate::ice::OUTBOUND_CAPACITY as ICE_OUTBOUND;
use crate::path::INBOUND_CAPACITY;
use crate::relay::held::HOLD_MAX_BYTES;
use crate::relay::messages::{MAX_MESSAGE, TRANSPORT_HEADER_LEN};
use crate::relay::DATA_QUEUE;
use crate::wg::PACKET_BUFFER;

/// The tunnel MTU on a phone: NetBird's `DefaultMTU`, peerlink's default (DESIGN 5).
pub const MOBILE_MTU: usize = 1280;
/// WireGuard's data message overhead: a 16-byte header and a 16-byte tag.
const WG_OVERHEAD: usize = 32;
/// A datagram we produce on a phone.
const MOBILE_DATAGRAM: usize = MOBILE_MTU + WG_OVERHEAD;
/// boringtun 0.7's `MAX_QUEUE_DEPTH`: packets it queues for a peer while its handshake is
/// under way (noise/mod.rs); more are dropped.
pub const BORINGTUN_QUEUE: usize = 256;
/// The largest datagram a path hands to the data plane: a relay message (the whole WebSocket
/// message stays pinned by the slice) or an ICE read, whichever is larger.
const LARGEST_INBOUND: usize = if MAX_MESSAGE > PACKET_BUFFER {
    MAX_MESSAGE
} else {
    PACKET_BUFFER
};
/// Relay connections the engine-wide figure allows for: the home relay and one foreign relay
/// that a peer advertised (each further one adds [`RELAY_CONNECTION_BYTES`]).
const MOBILE_RELAY_CONNECTIONS: usize = 2;

/// One relay connection's packets: its writer's queue of our datagrams and the packets it holds
/// for peers not opened yet.
pub const RELAY_CONNECTION_BYTES: usize =
    DATA_QUEUE * (TRANSPORT_HEADER_LEN + MOBILE_DATAGRAM) + HOLD_MAX_BYTES;
/// Everything that does not grow with peers, on a phone.
pub const ENGINE_PACKET_BYTES: usize = dataplane::LOOP_BUFFER_BYTES
    + INBOUND_CAPACITY * LARGEST_INBOUND
    + MOBILE_RELAY_CONNECTIONS * RELAY_CONNECTION_BYTES;
/// One peer that the app writes to faster than its path drains, on a phone: every queue of it
/// full.
pub const PEER_PACKET_BYTES: usize =
    ICE_OUTBOUND * MOBILE_DATAGRAM + BORINGTUN_QUEUE * MOBILE_MTU + MOBILE_DATAGRAM;

/// The engine's own packet buffers fit in 4 MiB on a phone (issue 14): a tenth of the
/// extension's 50 MB, leaving room for a hundred peers' state (DESIGN 9: ≤ 12 MiB).
const _: () = assert!(ENGINE_PACKET_BYTES <= 4 << 20);
/// A congested peer costs at most 1 MiB, and only while it is congested.
const _: () = assert!(PEER_PACKET_BYTES <= 1 << 20);
/// The buffers are sized for the largest MTU the configuration accepts.
const _: () = assert!(PACKET_BUFFER >= MAX_MTU as usize + WG_OVERHEAD);

#[cfg(test)]
mod tests {
    use super::*;
    use boringtun::noise::{Tunn, TunnResult};
    use boringtun::x25519;

    /// The budget's figure for boringtun's queue is boringtun's: a peer written to while its
    /// handshake is under way queues [`BORINGTUN_QUEUE`] packets and drops the rest.
    #[test]
    fn boringtun_queues_at_most_its_depth_during_a_handshake() {
        let (ka, kb) = (
            crate::keys::PrivateKey::generate().to_x25519(),
            crate::keys::PrivateKey::generate().to_x25519(),
        );
        let (pa, pb) = (x25519::PublicKey::from(&ka), x25519::PublicKey::from(&kb));
        let mut a = Tunn::new(ka, pb, None, None, 1, None);
        let mut b = Tunn::new(kb, pa, None, None, 2, None);
        let mut out = vec![0u8; PACKET_BUFFER];
        let packet = [0x45u8; 100];
        let mut init = None;
        for _ in 0..BORINGTUN_QUEUE * 2 {
            if let TunnResult::WriteToNetwork(d) = a.encapsulate(&packet, &mut out) {
                init.get_or_insert_with(|| d.to_vec());
            }
        }
        let init = init.expect("a handshake initiation");
        let response = match b.decapsulate(None, &init, &mut out) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            other => panic!("no handshake response: {other:?}"),
        };
        let mut released = 0;
        let mut next = a.decapsulate(None, &response, &mut out).is_write();
        while next {
            released += 1;
            next = a.decapsulate(None, &[], &mut out).is_write();
        }
        eprintln!(
            "engine-wide {} KiB (loops {} KiB, inbound {} KiB, relay {} KiB per connection); per congested peer {} KiB",
            ENGINE_PACKET_BYTES / 1024,
            dataplane::LOOP_BUFFER_BYTES / 1024,
            INBOUND_CAPACITY * LARGEST_INBOUND / 1024,
            RELAY_CONNECTION_BYTES / 1024,
            PEER_PACKET_BYTES / 1024
        );
        // The first datagram after the response is the keepalive that confirms the session.
        assert_eq!(released, BORINGTUN_QUEUE + 1);
    }

    trait IsWrite {
        fn is_write(&self) -> bool;
    }

    impl IsWrite for TunnResult<'_> {
        fn is_write(&self) -> bool {
            matches!(self, TunnResult::WriteToNetwork(_))
        }
    }
}
