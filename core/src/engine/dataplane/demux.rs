//! What a datagram on the engine's one UDP socket is, from its first bytes (DESIGN 2): the
//! socket carries WireGuard, ICE's STUN checks and our own STUN Bindings, and NetBird's hole
//! punch. Checked per datagram, so it reads a few bytes and allocates nothing.

use crate::ice::stun;

/// NetBird's hole punch: the two bytes "nb" that a NetBird client sends once, from its
/// WireGuard socket to our ICE candidate's address at our advertised WireGuard port, a second
/// after its ICE connects (`punchRemoteWGPort` in client/internal/peer/worker_ice.go, v0.77.1).
/// It carries nothing; it is expected, not garbage.
pub(crate) const NETBIRD_PUNCH: &[u8] = b"nb";

/// WireGuard's message types: initiation 1, response 2, cookie reply 3, data 4 (whitepaper 5.4).
const WIREGUARD_TYPES: std::ops::RangeInclusive<u8> = 1..=4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Datagram {
    /// A WireGuard message type followed by three reserved zero bytes; boringtun checks the rest.
    WireGuard,
    /// A STUN message (RFC 8489 section 5): for the ICE agents, or an answer to our Binding.
    Stun,
    NetbirdPunch,
    /// Anything else: counted and dropped.
    Other,
}

pub(crate) fn classify(d: &[u8]) -> Datagram {
    // WireGuard first: it is nearly every datagram, and STUN's first byte is 0 or 1 followed by
    // a nonzero byte or a length, so no STUN message reads as a WireGuard header of a
    // WireGuard message's size (the smallest, a keepalive, is 32 bytes; STUN's length field
    // would have to be zero, making it 20).
    if let Some([kind, 0, 0, 0]) = d.get(..4) {
        if WIREGUARD_TYPES.contains(kind) {
            return Datagram::WireGuard;
        }
    }
    if stun::is_stun(d) {
        return Datagram::Stun;
    }
    if d == NETBIRD_PUNCH {
        return Datagram::NetbirdPunch;
    }
    Datagram::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wireguard(kind: u8, len: usize) -> Vec<u8> {
        let mut m = vec![0u8; len];
        m[0] = kind;
        m
    }

    #[test]
    fn every_wireguard_message_type_is_wireguard() {
        for (kind, len) in [(1u8, 148usize), (2, 92), (3, 64), (4, 32), (4, 1452)] {
            assert_eq!(
                classify(&wireguard(kind, len)),
                Datagram::WireGuard,
                "type {kind}"
            );
        }
    }

    #[test]
    fn stun_requests_responses_and_indications_are_stun() {
        let request = stun::binding_request(&[3; 12]);
        assert_eq!(classify(&request), Datagram::Stun);
        for kind in [0x0101u16, 0x0111, 0x0011] {
            let mut m = request;
            m[..2].copy_from_slice(&kind.to_be_bytes());
            assert_eq!(classify(&m), Datagram::Stun, "{kind:#06x}");
        }
    }

    #[test]
    fn netbirds_punch_is_recognised_and_nothing_else_of_its_kind() {
        assert_eq!(classify(&[0x6e, 0x62]), Datagram::NetbirdPunch);
        for other in [&b""[..], b"n", b"nb\0", b"bn", b"NB"] {
            assert_eq!(classify(other), Datagram::Other, "{other:?}");
        }
    }

    #[test]
    fn hostile_and_truncated_input_is_other() {
        // A WireGuard type byte with nonzero reserved bytes.
        let mut m = wireguard(4, 32);
        m[2] = 1;
        assert_eq!(classify(&m), Datagram::Other);
        // A type outside 1..=4.
        assert_eq!(classify(&wireguard(5, 32)), Datagram::Other);
        assert_eq!(classify(&wireguard(0, 32)), Datagram::Other);
        // A STUN header on a WireGuard-sized datagram: its length field does not account for it.
        let mut stun_on_wg = stun::binding_request(&[1; 12]).to_vec();
        stun_on_wg.resize(148, 0);
        assert_eq!(classify(&stun_on_wg), Datagram::Other);
        // Every truncation of a STUN request and of a WireGuard header.
        let request = stun::binding_request(&[1; 12]);
        for cut in 0..request.len() {
            assert_ne!(classify(&request[..cut]), Datagram::Stun, "cut at {cut}");
        }
        for cut in 0..4 {
            assert_eq!(
                classify(&wireguard(4, 32)[..cut]),
                Datagram::Other,
                "cut at {cut}"
            );
        }
    }
}
