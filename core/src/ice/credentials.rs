//! ICE credentials: the ufrag and password each side sends in its offer or answer.

use std::fmt;

use rand::Rng;

/// NetBird's `GenerateICECredentials` (pion's `randutil` lengths): a 16-letter ufrag.
pub const UFRAG_LEN: usize = 16;
/// NetBird's `GenerateICECredentials`: a 32-letter password (RFC 8445 asks for ≥ 128 bits of
/// randomness; 32 letters from 52 carry about 182).
pub const PWD_LEN: usize = 32;
/// RFC 8445 section 5.3: a ufrag carries at least 24 bits, so 3 characters at least
/// (webrtc-ice refuses shorter local ones).
pub const MIN_UFRAG_LEN: usize = 3;
/// RFC 8445 section 5.3: a password carries at least 128 bits, so 16 characters at least
/// (webrtc-ice refuses shorter local ones).
pub const MIN_PWD_LEN: usize = 16;
/// RFC 8839 section 5.4: a ufrag is at most 256 characters, a password at most 256.
pub const MAX_CREDENTIAL_LEN: usize = 256;

/// The letters NetBird draws credentials from (pion's `runesAlpha`).
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// One side's ICE credentials. `Debug` shows the ufrag only: the password authenticates every
/// connectivity check and never appears in a log.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

impl IceCredentials {
    /// Fresh random credentials, as NetBird makes them for each offer.
    pub fn generate() -> Self {
        Self::generate_with(&mut rand::rngs::OsRng)
    }

    /// Fresh random credentials from `rng` (a pure state machine's own seeded generator).
    pub fn generate_with(rng: &mut impl Rng) -> Self {
        Self {
            ufrag: random_letters(rng, UFRAG_LEN),
            pwd: random_letters(rng, PWD_LEN),
        }
    }

    pub fn new(ufrag: impl Into<String>, pwd: impl Into<String>) -> Self {
        Self {
            ufrag: ufrag.into(),
            pwd: pwd.into(),
        }
    }

    /// Whether both parts are present, long enough and printable ICE characters
    /// (RFC 8839 `ice-char`: ALPHA / DIGIT / "+" / "/").
    pub fn is_valid(&self) -> bool {
        valid_part(&self.ufrag, MIN_UFRAG_LEN) && valid_part(&self.pwd, MIN_PWD_LEN)
    }

    pub fn is_empty(&self) -> bool {
        self.ufrag.is_empty() || self.pwd.is_empty()
    }
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .field("pwd", &"..")
            .finish()
    }
}

fn random_letters(rng: &mut impl Rng, len: usize) -> String {
    (0..len)
        .map(|_| {
            let i = rng.gen_range(0..ALPHABET.len());
            char::from(ALPHABET.get(i).copied().unwrap_or(b'a'))
        })
        .collect()
}

fn valid_part(s: &str, min: usize) -> bool {
    (min..=MAX_CREDENTIAL_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_have_netbirds_shape() {
        let c = IceCredentials::generate();
        assert_eq!(c.ufrag.len(), 16);
        assert_eq!(c.pwd.len(), 32);
        assert!(c
            .ufrag
            .chars()
            .chain(c.pwd.chars())
            .all(|ch| ch.is_ascii_alphabetic()));
        assert!(c.is_valid());
        assert_ne!(c, IceCredentials::generate());
    }

    #[test]
    fn debug_hides_the_password() {
        let c = IceCredentials::generate();
        assert!(!format!("{c:?}").contains(&c.pwd));
    }

    #[test]
    fn short_or_odd_credentials_are_invalid() {
        assert!(!IceCredentials::new("", "").is_valid());
        assert!(!IceCredentials::new("ab", "a".repeat(32)).is_valid());
        assert!(!IceCredentials::new("abcd", "short").is_valid());
        assert!(!IceCredentials::new("ab:cd", "a".repeat(32)).is_valid());
        assert!(IceCredentials::new("abc", "a".repeat(16)).is_valid());
    }
}
