//! Relay addresses as NetBird writes them: `rel://host:port` (WebSocket) or `rels://host:port`
//! (WebSocket over TLS). The WebSocket endpoint is always at path `/relay`
//! (`WebSocketURLPath` in NetBird's shared/relay/constants.go; its dialer replaces any path).

use std::fmt;
use std::str::FromStr;

/// Port of `rel://host` without one: `ws://`'s default, as NetBird's dialer leaves it to the URL.
const DEFAULT_PORT_PLAIN: u16 = 80;
/// Port of `rels://host` without one: `wss://`'s default.
const DEFAULT_PORT_TLS: u16 = 443;
/// NetBird's `WebSocketURLPath`.
const WS_PATH: &str = "/relay";

/// A parsed relay address. Two addresses are the same relay when their text is the same, as in
/// NetBird (a peer advertises the instance URL verbatim).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RelayUrl {
    text: String,
    tls: bool,
    host: String,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("relay address `{0}` must start with rel:// or rels://")]
    Scheme(String),
    #[error("relay address `{0}` has no host")]
    NoHost(String),
    #[error("relay address `{0}` has a port that is not a number from 1 to 65535")]
    Port(String),
}

impl RelayUrl {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host without brackets (an IPv6 literal is bare here).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The WebSocket URL to dial: `ws://host:port/relay` or `wss://…`.
    pub fn websocket_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}{WS_PATH}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}{WS_PATH}", self.host, self.port)
        }
    }
}

impl FromStr for RelayUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let text = s.trim();
        let (tls, rest) = if let Some(rest) = text.strip_prefix("rels://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("rel://") {
            (false, rest)
        } else {
            return Err(UrlError::Scheme(text.to_owned()));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(UrlError::NoHost(text.to_owned()));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| UrlError::Port(text.to_owned()))?;
        if host.is_empty() {
            return Err(UrlError::NoHost(text.to_owned()));
        }
        let port = match port {
            Some(p) => p,
            None if tls => DEFAULT_PORT_TLS,
            None => DEFAULT_PORT_PLAIN,
        };
        Ok(Self {
            text: text.to_owned(),
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`. `None` for a port that is not a valid number.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(parse_port(port)?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(parse_port(port)?))),
        None => Some((authority, None)),
    }
}

fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelayUrl({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> RelayUrl {
        s.parse().unwrap()
    }

    #[test]
    fn rel_maps_to_ws_and_rels_to_wss_at_path_relay() {
        assert_eq!(
            url("rel://127.0.0.1:33080").websocket_url(),
            "ws://127.0.0.1:33080/relay"
        );
        assert_eq!(
            url("rels://relay.example:443").websocket_url(),
            "wss://relay.example:443/relay"
        );
        assert_eq!(
            url("rels://relay.example").websocket_url(),
            "wss://relay.example:443/relay"
        );
        assert_eq!(
            url("rel://relay.example").websocket_url(),
            "ws://relay.example:80/relay"
        );
    }

    #[test]
    fn any_path_is_replaced_by_relay() {
        assert_eq!(url("rel://h:1/other?x").websocket_url(), "ws://h:1/relay");
    }

    #[test]
    fn ipv6_literals_keep_their_brackets_in_the_websocket_url() {
        let u = url("rel://[::1]:9");
        assert_eq!((u.host(), u.port()), ("::1", 9));
        assert_eq!(u.websocket_url(), "ws://[::1]:9/relay");
        assert_eq!(url("rels://[fd00::1]").port(), 443);
    }

    #[test]
    fn the_text_is_kept_verbatim_for_comparison() {
        assert_eq!(url(" rel://h:1 ").as_str(), "rel://h:1");
        assert_ne!(url("rel://h:1"), url("rels://h:1"));
    }

    #[test]
    fn bad_addresses_are_refused() {
        assert!(matches!("ws://h:1".parse::<RelayUrl>(), Err(UrlError::Scheme(_))));
        assert!(matches!("h:1".parse::<RelayUrl>(), Err(UrlError::Scheme(_))));
        assert!(matches!("rel://".parse::<RelayUrl>(), Err(UrlError::NoHost(_))));
        assert!(matches!(
            "rel://:80".parse::<RelayUrl>(),
            Err(UrlError::NoHost(_))
        ));
        assert!(matches!(
            "rel://u@h:80".parse::<RelayUrl>(),
            Err(UrlError::NoHost(_))
        ));
        assert!(matches!("rel://h:0".parse::<RelayUrl>(), Err(UrlError::Port(_))));
        assert!(matches!(
            "rel://h:70000".parse::<RelayUrl>(),
            Err(UrlError::Port(_))
        ));
        assert!(matches!("rel://h:x".parse::<RelayUrl>(), Err(UrlError::Port(_))));
        assert!(matches!("rel://[::1".parse::<RelayUrl>(), Err(UrlError::Port(_))));
    }
}
