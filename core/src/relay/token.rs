//! The relay's auth token, in NetBird's "v2" binary form (`shared/relay/auth/hmac/v2`):
//! `[algo = 1][32-byte HMAC-SHA256][ASCII decimal unix expiry]`.
//!
//! NetBird's management server signs the expiry with HMAC-SHA256 keyed by SHA-256 of the relay
//! secret and hands out `tokenPayload` (the expiry string) and `tokenSignature` (the MAC in
//! standard base64); the agent's `TokenStore` turns the pair into the binary form above. The relay
//! checks the MAC, then that the expiry (at least 10 digits) is not in the past.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::messages::MAX_TOKEN_LEN;

/// `AuthAlgoHMACSHA256` in NetBird's auth/hmac/v2/algo.go.
const ALGO_HMAC_SHA256: u8 = 1;
/// SHA-256's output size: the MAC that follows the algorithm byte.
const MAC_LEN: usize = 32;
/// `minLengthUnixTimestamp` in NetBird's v2 validator: shorter payloads are refused.
const MIN_PAYLOAD_LEN: usize = 10;

/// Why a token from management was refused before it reached a relay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("relay token signature is not standard base64")]
    SignatureBase64,
    #[error("relay token signature decodes to {0} bytes; HMAC-SHA256 has 32")]
    SignatureLength(usize),
    #[error("relay token payload is not a unix time in ASCII decimal (at least 10 digits)")]
    Payload,
    #[error("relay token is {len} bytes; an auth message carries at most {max}", max = MAX_TOKEN_LEN)]
    TooLong { len: usize },
}

/// A relay token, ready for the Auth message. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayToken {
    binary: Vec<u8>,
    expires_unix: u64,
}

impl RelayToken {
    /// The token as NetBird's management hands it out: the payload string and the base64 MAC.
    pub fn from_management(payload: &str, signature_base64: &str) -> Result<Self, TokenError> {
        let mac = STANDARD
            .decode(signature_base64.trim())
            .map_err(|_| TokenError::SignatureBase64)?;
        if mac.len() != MAC_LEN {
            return Err(TokenError::SignatureLength(mac.len()));
        }
        let expires_unix = parse_expiry(payload)?;
        let mut binary = Vec::with_capacity(1 + MAC_LEN + payload.len());
        binary.push(ALGO_HMAC_SHA256);
        binary.extend_from_slice(&mac);
        binary.extend_from_slice(payload.as_bytes());
        if binary.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong { len: binary.len() });
        }
        Ok(Self { binary, expires_unix })
    }

    /// Signs a token with the relay's secret, as NetBird's management does (for tests and for
    /// self-hosters who run a relay without management).
    pub fn mint(secret: &str, expires_unix: u64) -> Self {
        let (payload, signature) = sign(secret, expires_unix);
        let mut binary = Vec::with_capacity(1 + MAC_LEN + payload.len());
        binary.push(ALGO_HMAC_SHA256);
        binary.extend_from_slice(&signature);
        binary.extend_from_slice(payload.as_bytes());
        Self { binary, expires_unix }
    }

    /// A token valid for `ttl` from the system's wall clock.
    pub fn mint_valid_for(secret: &str, ttl: Duration) -> Self {
        Self::mint(secret, unix_now().saturating_add(ttl.as_secs()))
    }

    /// The pair management would hand out for `secret` and `expires_unix`: the payload and the
    /// base64 signature.
    pub fn management_pair(secret: &str, expires_unix: u64) -> (String, String) {
        let (payload, signature) = sign(secret, expires_unix);
        (payload, STANDARD.encode(signature))
    }

    /// The binary form for the Auth message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.binary
    }

    /// The expiry in seconds since the Unix epoch.
    pub fn expires_unix(&self) -> u64 {
        self.expires_unix
    }

    /// Whether the relay would call it expired at `now_unix` (it accepts the expiry second itself).
    pub fn is_expired_at(&self, now_unix: u64) -> bool {
        now_unix > self.expires_unix
    }
}

impl fmt::Debug for RelayToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelayToken(expires {})", self.expires_unix)
    }
}

/// Seconds since the Unix epoch on the wall clock: what the relay compares expiries with.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sign(secret: &str, expires_unix: u64) -> (String, [u8; MAC_LEN]) {
    let payload = expires_unix.to_string();
    let key = Sha256::digest(secret.as_bytes());
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 takes keys of any length"));
    mac.update(payload.as_bytes());
    (payload, mac.finalize().into_bytes().into())
}

fn parse_expiry(payload: &str) -> Result<u64, TokenError> {
    if payload.len() < MIN_PAYLOAD_LEN || !payload.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TokenError::Payload);
    }
    payload.parse().map_err(|_| TokenError::Payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_token_has_netbird_layout() {
        let t = RelayToken::mint("s3cret", 1_900_000_000);
        let b = t.as_bytes();
        assert_eq!(b[0], 1);
        assert_eq!(&b[33..], b"1900000000");
        let key = Sha256::digest(b"s3cret");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        mac.update(b"1900000000");
        assert_eq!(&b[1..33], mac.finalize().into_bytes().as_slice());
    }

    #[test]
    fn known_vector_from_an_independent_implementation() {
        // python3 -c 'import hmac,hashlib,base64;k=hashlib.sha256(b"s3cret").digest();
        //   print(base64.b64encode(hmac.new(k,b"1900000000",hashlib.sha256).digest()).decode())'
        let (payload, sig) = RelayToken::management_pair("s3cret", 1_900_000_000);
        assert_eq!(payload, "1900000000");
        assert_eq!(sig, "OPa+ki2Qx5mA0ABDr0yCus4GYzgLCE6YjsgJQc6nB+Y=");
    }

    #[test]
    fn management_pair_gives_the_same_binary_token() {
        let (payload, sig) = RelayToken::management_pair("s3cret", 1_900_000_000);
        let t = RelayToken::from_management(&payload, &sig).unwrap();
        assert_eq!(t, RelayToken::mint("s3cret", 1_900_000_000));
        assert_eq!(t.expires_unix(), 1_900_000_000);
    }

    #[test]
    fn malformed_management_tokens_are_refused() {
        let (payload, sig) = RelayToken::management_pair("s", 1_900_000_000);
        assert_eq!(
            RelayToken::from_management(&payload, "%%%"),
            Err(TokenError::SignatureBase64)
        );
        assert_eq!(
            RelayToken::from_management(&payload, "AAAA"),
            Err(TokenError::SignatureLength(3))
        );
        assert_eq!(
            RelayToken::from_management("12345", &sig),
            Err(TokenError::Payload)
        );
        assert_eq!(
            RelayToken::from_management("19000000x0", &sig),
            Err(TokenError::Payload)
        );
        let long = "1".repeat(140);
        assert_eq!(RelayToken::from_management(&long, &sig), Err(TokenError::Payload));
    }

    #[test]
    fn expiry_second_itself_is_still_valid() {
        let t = RelayToken::mint("s", 1_900_000_000);
        assert!(!t.is_expired_at(1_900_000_000));
        assert!(t.is_expired_at(1_900_000_001));
    }

    #[test]
    fn debug_does_not_print_the_token() {
        let t = RelayToken::mint("s", 1_900_000_000);
        let shown = format!("{t:?}");
        assert!(!shown.contains(&STANDARD.encode(&t.as_bytes()[1..33])));
        assert_eq!(shown, "RelayToken(expires 1900000000)");
    }
}
