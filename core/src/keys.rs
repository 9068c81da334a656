//! WireGuard keys as the configuration writes them: 32 bytes in standard base64.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use boringtun::x25519;

/// Why a key string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not valid base64")]
    Base64,
    #[error("decodes to {0} bytes, a WireGuard key has 32")]
    Length(usize),
}

/// A peer's public key. Displays shortened (first 8 base64 characters) so that logs identify a
/// peer without printing the whole key; `to_base64` gives the full form for the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        decode32(s).map(Self)
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub(crate) fn to_x25519(self) -> x25519::PublicKey {
        x25519::PublicKey::from(self.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.to_base64();
        f.write_str(full.get(..8).unwrap_or(&full))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A private key. Never printed: `Debug` shows only the public half's short form.
#[derive(Clone)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        decode32(s).map(Self)
    }

    pub fn generate() -> Self {
        let secret = x25519::StaticSecret::random_from_rng(rand::rngs::OsRng);
        Self(secret.to_bytes())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519::PublicKey::from(&self.to_x25519()).to_bytes())
    }

    /// The raw bytes, for the few places that need them (signal's NaCl box, `genkey`).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub(crate) fn to_x25519(&self) -> x25519::StaticSecret {
        x25519::StaticSecret::from(self.0)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(of {})", self.public_key())
    }
}

/// A WireGuard preshared key; never printed.
#[derive(Clone, Copy)]
pub struct PresharedKey(pub(crate) [u8; 32]);

impl PresharedKey {
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        decode32(s).map(Self)
    }
}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(..)")
    }
}

fn decode32(s: &str) -> Result<[u8; 32], KeyError> {
    let bytes = STANDARD.decode(s.trim()).map_err(|_| KeyError::Base64)?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyError::Length(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_round_trips_base64() {
        let k = PrivateKey::generate().public_key();
        assert_eq!(PublicKey::from_base64(&k.to_base64()).unwrap(), k);
    }

    #[test]
    fn known_key_pair_matches_wg() {
        // `wg genkey | tee /dev/stderr | wg pubkey` vector from RFC 7748 section 6.1 (Alice).
        let private = PrivateKey::from_bytes([
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2, 0x66, 0x45,
            0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9, 0x2c, 0x2a,
        ]);
        let expected = [
            0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e, 0xf7, 0x5a,
            0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e, 0xaa, 0x9b, 0x4e, 0x6a,
        ];
        assert_eq!(private.public_key().as_bytes(), &expected);
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(PublicKey::from_base64("not base64!"), Err(KeyError::Base64));
        assert_eq!(PublicKey::from_base64("AAAA"), Err(KeyError::Length(3)));
    }

    #[test]
    fn private_key_debug_hides_secret() {
        let k = PrivateKey::generate();
        assert!(!format!("{k:?}").contains(&k.to_base64()));
    }
}
