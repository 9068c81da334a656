//! NaCl box (Curve25519, XSalsa20-Poly1305) over the WireGuard keys, as NetBird's
//! `encryption.Encrypt` does: on the wire `nonce(24 random bytes) || box`, where the box is
//! `tag(16) || ciphertext` (NaCl's layout, the same in Go's `nacl/box` and `crypto_box`).

use crypto_box::aead::Aead;
use crypto_box::{Nonce, SalsaBox};
use rand::RngCore;

use crate::keys::{PrivateKey, PublicKey};

/// XSalsa20's nonce length (`nonceSize` in NetBird's encryption.go).
pub const NONCE_LEN: usize = 24;
/// Poly1305's tag length, which NaCl's box puts in front of the ciphertext.
pub const TAG_LEN: usize = 16;

/// Why a sealed body could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed body of {0} bytes is shorter than nonce and tag ({min})", min = NONCE_LEN + TAG_LEN)]
    TooShort(usize),
    #[error("sealed body does not authenticate (wrong key or tampered)")]
    Unauthentic,
}

/// Seals `plaintext` from `own` to `to` under a fresh random nonce.
pub fn seal(own: &PrivateKey, to: &PublicKey, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    seal_with_nonce(own, to, &nonce, plaintext)
}

/// Opens a body `from` sent to `own`.
pub fn open(own: &PrivateKey, from: &PublicKey, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(OpenError::TooShort(sealed.len()));
    }
    let (nonce, boxed) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::from_slice(nonce);
    salsa_box(own, from)
        .decrypt(nonce, boxed)
        .map_err(|_| OpenError::Unauthentic)
}

/// Seals under a given nonce; [`seal`] is the only caller outside the tests (a nonce must
/// never repeat for a key pair).
fn seal_with_nonce(own: &PrivateKey, to: &PublicKey, nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NONCE_LEN + TAG_LEN + plaintext.len());
    out.extend_from_slice(nonce);
    // Salsa20-Poly1305 encryption only fails for plaintexts beyond 256 GiB; callers bound
    // bodies far below that, so an empty box (which `open` refuses) is unreachable.
    if let Ok(boxed) = salsa_box(own, to).encrypt(Nonce::from_slice(nonce), plaintext) {
        out.extend_from_slice(&boxed);
    }
    out
}

fn salsa_box(own: &PrivateKey, other: &PublicKey) -> SalsaBox {
    let secret = crypto_box::SecretKey::from(own.to_bytes());
    let public = crypto_box::PublicKey::from(*other.as_bytes());
    SalsaBox::new(&public, &secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn sealed_body_opens_with_the_other_side_key() {
        let (a, b) = (PrivateKey::generate(), PrivateKey::generate());
        let sealed = seal(&a, &b.public_key(), b"hello");
        assert_eq!(sealed.len(), NONCE_LEN + TAG_LEN + 5);
        assert_eq!(open(&b, &a.public_key(), &sealed).unwrap(), b"hello");
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let (a, b) = (PrivateKey::generate(), PrivateKey::generate());
        let one = seal(&a, &b.public_key(), b"x");
        let two = seal(&a, &b.public_key(), b"x");
        assert_ne!(one[..NONCE_LEN], two[..NONCE_LEN]);
    }

    #[test]
    fn opening_with_the_wrong_key_fails_cleanly() {
        let (a, b, c) = (
            PrivateKey::generate(),
            PrivateKey::generate(),
            PrivateKey::generate(),
        );
        let sealed = seal(&a, &b.public_key(), b"hello");
        assert_eq!(open(&c, &a.public_key(), &sealed), Err(OpenError::Unauthentic));
        assert_eq!(open(&b, &c.public_key(), &sealed), Err(OpenError::Unauthentic));
    }

    #[test]
    fn short_or_tampered_bodies_are_refused() {
        let (a, b) = (PrivateKey::generate(), PrivateKey::generate());
        assert_eq!(open(&b, &a.public_key(), &[0; 39]), Err(OpenError::TooShort(39)));
        let mut sealed = seal(&a, &b.public_key(), b"hello");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(open(&b, &a.public_key(), &sealed), Err(OpenError::Unauthentic));
    }

    /// A vector produced by Go's `golang.org/x/crypto/nacl/box.Seal(nonce, "peerlink",
    /// nonce, bobPublic, alicePrivate)`, the call NetBird's `encryption.Encrypt` makes, with the
    /// RFC 7748 section 6.1 key pairs and nonce = 0, 1, …, 23.
    #[test]
    fn matches_go_nacl_box() {
        let alice = PrivateKey::from_bytes(
            unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .try_into()
                .unwrap(),
        );
        let bob = PrivateKey::from_bytes(
            unhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
                .try_into()
                .unwrap(),
        );
        let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| i as u8);
        let expected = unhex(GO_SEALED);
        assert_eq!(
            seal_with_nonce(&alice, &bob.public_key(), &nonce, b"peerlink"),
            expected
        );
        assert_eq!(open(&bob, &alice.public_key(), &expected).unwrap(), b"peerlink");
    }

    const GO_SEALED: &str =
        "000102030405060708090a0b0c0d0e0f10111213141516175dbb91a6fdeb78cae097fc5ee6ffd4db752b35d7771f3b16";
}
