//! coturn's time-limited credentials ("TURN REST API", `--use-auth-secret`): the username is
//! `<expiry unix time>:<name>` and the password is base64(HMAC-SHA1(shared secret, username)).
//! NetBird's management hands out TURN credentials made the same way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::config::TurnServer;
use hmac::{Hmac, Mac};

/// Credentials for `url`, valid until `expires_unix` (seconds since the Unix epoch, the wall
/// clock coturn compares them with).
pub fn turn_rest_credentials(url: &str, secret: &str, name: &str, expires_unix: u64) -> TurnServer {
    let username = format!("{expires_unix}:{name}");
    let credential = STANDARD.encode(hmac_sha1(secret.as_bytes(), username.as_bytes()));
    TurnServer {
        url: url.to_owned(),
        username,
        credential,
    }
}

/// HMAC-SHA1, as coturn computes it (RFC 2104 over SHA-1).
fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key) else {
        return [0; 20];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Credentials for `url` valid for `ttl` from now (wall clock, as coturn checks them).
pub fn turn_rest_credentials_for(url: &str, secret: &str, name: &str, ttl: Duration) -> TurnServer {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    turn_rest_credentials(url, secret, name, now.saturating_add(ttl).as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_match_coturns_formula() {
        // Reference: Python's hmac.new(b"north", b"1700000000:peerlink", hashlib.sha1), base64.
        let t = turn_rest_credentials("turn:10.0.0.1:3478", "north", "peerlink", 1_700_000_000);
        assert_eq!(t.username, "1700000000:peerlink");
        assert_eq!(t.credential, "hYq3wA0wEc/dav4YfuOLyiwo3nU=");
    }

    #[test]
    fn ttl_sets_a_future_expiry() {
        let t = turn_rest_credentials_for("turn:h", "s", "n", Duration::from_secs(3600));
        let expiry: u64 = t.username.split(':').next().unwrap().parse().unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(expiry > now + 3000 && expiry <= now + 3600);
    }
}
