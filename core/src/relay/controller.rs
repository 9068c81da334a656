//! Which side of a peer pair leads the connection.

use crate::keys::PublicKey;

/// NetBird's rule (client/internal/peer/conn.go, `isController`): the peer whose base64 public
/// key is the greater string controls: it is ICE's controlling agent, picks the relay server and
/// initiates WireGuard. Exactly one of two distinct peers controls.
pub fn is_controller(own: &PublicKey, remote: &PublicKey) -> bool {
    own.to_base64() > remote.to_base64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    #[test]
    fn exactly_one_of_two_peers_controls() {
        for _ in 0..64 {
            let (a, b) = (
                PrivateKey::generate().public_key(),
                PrivateKey::generate().public_key(),
            );
            assert_ne!(is_controller(&a, &b), is_controller(&b, &a));
        }
    }

    #[test]
    fn the_greater_base64_string_controls() {
        // Byte order and base64 string order differ: 0xfc encodes as '/' (0x2f), which sorts
        // before 'A' (0x41) in ASCII, while 0x00 encodes as 'A'.
        let slash = PublicKey::from_bytes([0xfc; 32]);
        let a = PublicKey::from_bytes([0x00; 32]);
        assert!(slash.to_base64().starts_with('/'));
        assert!(is_controller(&a, &slash));
        assert!(!is_controller(&slash, &a));
        assert!(!is_controller(&a, &a));
    }
}
