//! The engine's configuration: a plain, string-typed form that the CLI (TOML) and the app (FFI)
//! fill in, and its validated, typed form. Validation names the field it refuses.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::keys::{KeyError, PresharedKey, PrivateKey, PublicKey};
use crate::relay::{RelayTls, RelayToken, RelayUrl, TlsConfigError};

/// Tokens minted from a relay secret are valid this long; NetBird's management hands out
/// tokens for 24 h and refreshes them, and a self-hosted engine mints a new one on restart.
const MINTED_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
use crate::net::{IpNet, IpNetError};

/// NetBird's `DefaultMTU` and Firezone's choice: with WireGuard's 80 bytes of IPv6 overhead the
/// outer packets stay under what cellular and PPPoE paths carry.
pub const DEFAULT_MTU: u16 = 1280;
/// RFC 791: every IPv4 host must accept 576-byte datagrams; less cannot carry IPv4 reliably.
pub const MIN_MTU: u16 = 576;
/// RFC 8200: IPv6 needs links of at least 1280 bytes.
pub const MIN_MTU_IPV6: u16 = 1280;
/// Jumbo frames; the tunnel's buffers are sized from this bound.
pub const MAX_MTU: u16 = 9000;

/// The configuration as written: keys in base64, prefixes and endpoints as text.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    /// Required; `#[serde(default)]` only so that a front end can fill it in from elsewhere
    /// (the CLI's key file) after reading the rest.
    #[serde(default)]
    pub private_key: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub mtu: Option<u16>,
    #[serde(default)]
    pub listen_port: u16,
    #[serde(default)]
    pub peers: Vec<PeerSpec>,
    /// NetBird's signal server; without it peers need fixed endpoints.
    #[serde(default)]
    pub signal: Option<SignalSpec>,
    /// NetBird's relay servers.
    #[serde(default)]
    pub relay: Option<RelaySpec>,
    /// ICE (STUN and TURN servers); needs `signal`.
    #[serde(default)]
    pub ice: Option<IceSpec>,
    /// NetBird's management server: with it, the address, peers and servers come from there
    /// (`ice` still sets the interfaces ICE may use).
    #[serde(default)]
    pub management: Option<ManagementSpec>,
    /// Lazy connections: on unless switched off here.
    #[serde(default)]
    pub lazy: Option<LazySpec>,
}

/// Lazy connections (NetBird's `lazyconn`): a peer's connection closes after this long without
/// data and opens again on the first packet or signal message that needs it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LazySpec {
    /// `false` keeps every connection open.
    #[serde(default)]
    pub disabled: bool,
    /// Default 900 (NetBird's 15 min); at least 60.
    #[serde(default)]
    pub inactivity_threshold_secs: Option<u64>,
}

#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementSpec {
    /// `https://host:port` (or `http://` for a server without TLS).
    pub url: String,
    /// A setup key, needed while the server does not know this peer's key.
    #[serde(default)]
    pub setup_key: String,
    /// The peer's name in the network; unset means the system's host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// PEM CA certificate(s) to trust besides the public roots (self-hosted servers).
    #[serde(default)]
    pub ca_pem: Option<String>,
}

#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSpec {
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    /// PEM CA certificate(s) to trust besides the public roots (self-hosted servers).
    #[serde(default)]
    pub ca_pem: Option<String>,
}

#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySpec {
    /// `rel://host:port` or `rels://host:port`, as management lists them.
    pub urls: Vec<String>,
    /// The token as management hands it out: payload and base64 signature…
    #[serde(default)]
    pub token_payload: Option<String>,
    #[serde(default)]
    pub token_signature: Option<String>,
    /// …or the relay's shared secret, to mint tokens locally (self-hosted setups and the lab).
    #[serde(default)]
    pub secret: Option<String>,
    /// PEM CA certificate(s) to trust besides the public roots (a self-hosted `rels://` relay).
    #[serde(default)]
    pub ca_pem: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceSpec {
    /// `stun:host:port` URLs.
    #[serde(default)]
    pub stun: Vec<String>,
    #[serde(default)]
    pub turn: Vec<TurnSpec>,
    /// Gather TURN candidates even when NetBird's relay works between the peers.
    #[serde(default)]
    pub force_turn: bool,
    /// Interface names ICE may use, replacing NetBird's default exclusions (the lab uses veths).
    #[serde(default)]
    pub interfaces: Option<Vec<String>>,
}

#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSpec {
    /// `turn:host:port` (UDP).
    pub url: String,
    pub username: String,
    pub credential: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    pub public_key: String,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    #[serde(default)]
    pub preshared_key: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub persistent_keepalive: Option<u16>,
    /// Never closed for inactivity (a routing peer, say).
    #[serde(default)]
    pub always_on: bool,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub private_key: PrivateKey,
    pub addresses: Vec<IpNet>,
    pub mtu: u16,
    pub listen_port: u16,
    pub peers: Vec<PeerConfig>,
    pub signal: Option<SignalSpec>,
    pub relay: Option<RelaySettings>,
    pub ice: Option<IceSpec>,
    pub management: Option<ManagementSpec>,
    /// How long a connection may go without data before it closes; `None`: never.
    pub lazy: Option<std::time::Duration>,
}

/// Validated relay settings.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub urls: Vec<RelayUrl>,
    pub token: RelayToken,
    /// Whom `rels://` connections trust: the webpki roots and `ca_pem`.
    pub tls: RelayTls,
}

#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub public_key: PublicKey,
    pub allowed_ips: Vec<IpNet>,
    pub preshared_key: Option<PresharedKey>,
    pub endpoint: Option<SocketAddr>,
    /// Seconds between keepalives when otherwise idle; `None` or 0 turns them off.
    pub persistent_keepalive: Option<u16>,
    /// Never closed for inactivity.
    pub always_on: bool,
}

/// A configuration the engine refuses, with the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field}: invalid WireGuard key: {source}")]
    Key { field: String, source: KeyError },
    #[error("{field}: {source}")]
    Prefix { field: String, source: IpNetError },
    #[error("{field}: `{value}` is not an endpoint such as 192.0.2.1:51820 or [2001:db8::1]:51820")]
    Endpoint { field: String, value: String },
    #[error("mtu: {mtu} is outside {min}..={max}")]
    Mtu { mtu: u16, min: u16, max: u16 },
    #[error("{field}: {prefix} is already routed to peer {other}; each prefix belongs to one peer")]
    OverlappingAllowedIp {
        field: String,
        prefix: IpNet,
        other: PublicKey,
    },
    #[error("{field}: peer {key} is listed twice")]
    DuplicatePeer { field: String, key: PublicKey },
    #[error("{field}: that is this engine's own public key")]
    SelfPeer { field: String },
    #[error("{field}: {problem}")]
    Server { field: String, problem: String },
}

impl EngineSpec {
    pub fn validate(&self) -> Result<EngineConfig, ConfigError> {
        let private_key = PrivateKey::from_base64(&self.private_key).map_err(|source| ConfigError::Key {
            field: "private_key".into(),
            source,
        })?;
        let addresses = self
            .addresses
            .iter()
            .enumerate()
            .map(|(i, a)| parse_prefix(a, || format!("addresses[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let mtu = self.mtu.unwrap_or(DEFAULT_MTU);
        let min = if addresses.iter().any(|a| a.addr().is_ipv6()) {
            MIN_MTU_IPV6
        } else {
            MIN_MTU
        };
        if !(min..=MAX_MTU).contains(&mtu) {
            return Err(ConfigError::Mtu {
                mtu,
                min,
                max: MAX_MTU,
            });
        }
        let peers = validate_peers(&self.peers, private_key.public_key())?;
        let signal = self.signal.as_ref().map(validate_signal).transpose()?;
        let relay = self.relay.as_ref().map(validate_relay).transpose()?;
        let ice = self.ice.as_ref().map(validate_ice).transpose()?;
        let management = self.management.as_ref().map(validate_management).transpose()?;
        let lazy = match &self.lazy {
            Some(l) if l.disabled => None,
            Some(l) => Some(
                l.inactivity_threshold_secs
                    .map_or(crate::conn::lazy::DEFAULT_THRESHOLD, |s| {
                        std::time::Duration::from_secs(s).max(crate::conn::lazy::MIN_THRESHOLD)
                    }),
            ),
            None => Some(crate::conn::lazy::DEFAULT_THRESHOLD),
        };
        Ok(EngineConfig {
            private_key,
            addresses,
            mtu,
            listen_port: self.listen_port,
            peers,
            signal,
            relay,
            ice,
            management,
            lazy,
        })
    }
}

/// Validates a peer list on its own, for `update_peers`.
pub fn validate_peers(peers: &[PeerSpec], own_key: PublicKey) -> Result<Vec<PeerConfig>, ConfigError> {
    let mut seen_keys = HashMap::new();
    let mut seen_prefixes: HashMap<IpNet, PublicKey> = HashMap::new();
    let mut out = Vec::with_capacity(peers.len());
    for (i, p) in peers.iter().enumerate() {
        let field = |name: &str| format!("peers[{i}].{name}");
        let public_key = PublicKey::from_base64(&p.public_key).map_err(|source| ConfigError::Key {
            field: field("public_key"),
            source,
        })?;
        if public_key == own_key {
            return Err(ConfigError::SelfPeer {
                field: field("public_key"),
            });
        }
        if seen_keys.insert(public_key, i).is_some() {
            return Err(ConfigError::DuplicatePeer {
                field: field("public_key"),
                key: public_key,
            });
        }
        let mut allowed_ips = Vec::with_capacity(p.allowed_ips.len());
        for (j, a) in p.allowed_ips.iter().enumerate() {
            let name = || field(&format!("allowed_ips[{j}]"));
            let prefix = parse_prefix(a, name)?.network();
            match seen_prefixes.get(&prefix) {
                Some(other) => {
                    return Err(ConfigError::OverlappingAllowedIp {
                        field: name(),
                        prefix,
                        other: *other,
                    })
                }
                None => seen_prefixes.insert(prefix, public_key),
            };
            allowed_ips.push(prefix);
        }
        let preshared_key = p
            .preshared_key
            .as_deref()
            .map(PresharedKey::from_base64)
            .transpose()
            .map_err(|source| ConfigError::Key {
                field: field("preshared_key"),
                source,
            })?;
        let endpoint = p
            .endpoint
            .as_deref()
            .map(|e| {
                e.trim().parse::<SocketAddr>().map_err(|_| ConfigError::Endpoint {
                    field: field("endpoint"),
                    value: e.to_owned(),
                })
            })
            .transpose()?;
        let persistent_keepalive = p.persistent_keepalive.filter(|&s| s > 0);
        out.push(PeerConfig {
            public_key,
            allowed_ips,
            preshared_key,
            endpoint,
            persistent_keepalive,
            always_on: p.always_on,
        });
    }
    Ok(out)
}

impl std::fmt::Debug for SignalSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalSpec")
            .field("url", &self.url)
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

/// Tokens, secrets and credentials never reach a log.
impl std::fmt::Debug for RelaySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySpec")
            .field("urls", &self.urls)
            .field("token", &self.token_payload.is_some())
            .field("secret", &self.secret.is_some())
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

impl std::fmt::Debug for TurnSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSpec")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Setup keys are secrets: never in a log.
impl std::fmt::Debug for ManagementSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementSpec")
            .field("url", &self.url)
            .field("setup_key", &!self.setup_key.is_empty())
            .field("hostname", &self.hostname)
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

fn server_error(field: impl Into<String>, problem: impl ToString) -> ConfigError {
    ConfigError::Server {
        field: field.into(),
        problem: problem.to_string(),
    }
}

fn validate_management(m: &ManagementSpec) -> Result<ManagementSpec, ConfigError> {
    let url = m.url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(server_error(
            "management.url",
            format!("`{url}` must start with http:// or https://"),
        ));
    }
    Ok(ManagementSpec {
        url: url.to_owned(),
        setup_key: m.setup_key.trim().to_owned(),
        ..m.clone()
    })
}

pub(crate) fn validate_signal(s: &SignalSpec) -> Result<SignalSpec, ConfigError> {
    let url = s.url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(server_error(
            "signal.url",
            format!("`{url}` must start with http:// or https://"),
        ));
    }
    Ok(SignalSpec {
        url: url.to_owned(),
        ca_pem: s.ca_pem.clone(),
    })
}

pub(crate) fn validate_relay(r: &RelaySpec) -> Result<RelaySettings, ConfigError> {
    let urls = r
        .urls
        .iter()
        .enumerate()
        .map(|(i, u)| {
            u.parse::<RelayUrl>()
                .map_err(|e| server_error(format!("relay.urls[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(server_error("relay.urls", "at least one relay server is needed"));
    }
    let token = match (&r.token_payload, &r.token_signature, &r.secret) {
        (Some(payload), Some(signature), _) => RelayToken::from_management(payload, signature)
            .map_err(|e| server_error("relay.token_signature", e))?,
        (None, None, Some(secret)) => RelayToken::mint_valid_for(secret, MINTED_TOKEN_TTL),
        (Some(_), None, _) | (None, Some(_), _) | (None, None, None) => {
            return Err(server_error(
                "relay",
                "give token_payload and token_signature (from management), or secret",
            ))
        }
    };
    let tls = RelayTls::new(r.ca_pem.as_deref()).map_err(|e| {
        let field = match &e {
            TlsConfigError::NoCertificate | TlsConfigError::Pem { .. } | TlsConfigError::Unusable { .. } => {
                "relay.ca_pem"
            }
            TlsConfigError::Provider(_) => "relay",
        };
        server_error(field, e)
    })?;
    Ok(RelaySettings { urls, token, tls })
}

pub(crate) fn validate_ice(i: &IceSpec) -> Result<IceSpec, ConfigError> {
    for (n, url) in i.stun.iter().enumerate() {
        if !url.starts_with("stun:") {
            return Err(server_error(
                format!("ice.stun[{n}]"),
                format!("`{url}` must start with stun:"),
            ));
        }
    }
    for (n, t) in i.turn.iter().enumerate() {
        if !t.url.starts_with("turn:") {
            return Err(server_error(
                format!("ice.turn[{n}].url"),
                format!(
                    "`{}` must start with turn: (TURN over UDP; turns: is not supported)",
                    t.url
                ),
            ));
        }
    }
    Ok(i.clone())
}

fn parse_prefix(text: &str, field: impl Fn() -> String) -> Result<IpNet, ConfigError> {
    text.parse().map_err(|source| ConfigError::Prefix {
        field: field(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        PrivateKey::generate().public_key().to_base64()
    }

    fn spec() -> EngineSpec {
        EngineSpec {
            private_key: PrivateKey::generate().to_base64(),
            addresses: vec!["100.64.0.1/16".into()],
            peers: vec![PeerSpec {
                public_key: key(),
                allowed_ips: vec!["100.64.0.2/32".into(), "fd00::2/128".into()],
                endpoint: Some("127.0.0.1:51820".into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn valid_spec_passes_with_default_mtu() {
        let c = spec().validate().unwrap();
        assert_eq!(c.mtu, DEFAULT_MTU);
        assert_eq!(c.peers[0].allowed_ips.len(), 2);
        assert_eq!(c.peers[0].endpoint, Some("127.0.0.1:51820".parse().unwrap()));
    }

    #[test]
    fn bad_private_key_names_the_field() {
        let mut s = spec();
        s.private_key = "short".into();
        let e = s.validate().unwrap_err();
        assert!(
            matches!(&e, ConfigError::Key { field, .. } if field == "private_key"),
            "{e}"
        );
    }

    #[test]
    fn bad_peer_key_and_prefix_name_the_field() {
        let mut s = spec();
        s.peers[0].public_key = "@@".into();
        assert!(
            matches!(s.validate(), Err(ConfigError::Key { field, .. }) if field == "peers[0].public_key")
        );
        let mut s = spec();
        s.peers[0].allowed_ips.push("10.0.0.0/40".into());
        assert!(
            matches!(s.validate(), Err(ConfigError::Prefix { field, .. }) if field == "peers[0].allowed_ips[2]")
        );
    }

    #[test]
    fn the_same_prefix_on_two_peers_is_refused() {
        let mut s = spec();
        s.peers.push(PeerSpec {
            public_key: key(),
            allowed_ips: vec!["100.64.0.2/32".into()],
            ..Default::default()
        });
        assert!(matches!(
            s.validate(),
            Err(ConfigError::OverlappingAllowedIp { field, .. }) if field == "peers[1].allowed_ips[0]"
        ));
    }

    #[test]
    fn nested_prefixes_on_two_peers_are_routing_not_overlap() {
        let mut s = spec();
        s.peers.push(PeerSpec {
            public_key: key(),
            allowed_ips: vec!["0.0.0.0/0".into()],
            ..Default::default()
        });
        assert!(s.validate().is_ok());
    }

    #[test]
    fn duplicate_and_self_peers_are_refused() {
        let mut s = spec();
        let dup = s.peers[0].clone();
        s.peers.push(PeerSpec {
            allowed_ips: vec![],
            ..dup
        });
        assert!(matches!(s.validate(), Err(ConfigError::DuplicatePeer { .. })));
        let mut s = spec();
        let own = PrivateKey::from_base64(&s.private_key)
            .unwrap()
            .public_key()
            .to_base64();
        s.peers[0].public_key = own;
        assert!(matches!(s.validate(), Err(ConfigError::SelfPeer { .. })));
    }

    #[test]
    fn mtu_out_of_range_is_refused() {
        let mut s = spec();
        s.mtu = Some(100);
        assert!(matches!(s.validate(), Err(ConfigError::Mtu { mtu: 100, .. })));
        s.addresses.push("fd00::1/64".into());
        s.mtu = Some(1000);
        assert!(matches!(
            s.validate(),
            Err(ConfigError::Mtu {
                min: MIN_MTU_IPV6,
                ..
            })
        ));
        s.mtu = Some(MAX_MTU + 1);
        assert!(s.validate().is_err());
    }

    #[test]
    fn server_sections_are_checked() {
        let mut s = spec();
        s.signal = Some(SignalSpec {
            url: "127.0.0.1:1".into(),
            ca_pem: None,
        });
        assert!(matches!(s.validate(), Err(ConfigError::Server { field, .. }) if field == "signal.url"));
        let mut s = spec();
        s.relay = Some(RelaySpec {
            urls: vec!["rel://127.0.0.1:1".into()],
            ..Default::default()
        });
        assert!(matches!(s.validate(), Err(ConfigError::Server { field, .. }) if field == "relay"));
        s.relay = Some(RelaySpec {
            urls: vec!["http://x".into()],
            secret: Some("s".into()),
            ..Default::default()
        });
        assert!(matches!(s.validate(), Err(ConfigError::Server { field, .. }) if field == "relay.urls[0]"));
        s.relay = Some(RelaySpec {
            urls: vec!["rel://127.0.0.1:1".into()],
            secret: Some("s".into()),
            ..Default::default()
        });
        assert!(s.validate().is_ok());
        s.signal = Some(SignalSpec {
            url: "http://127.0.0.1:1".into(),
            ca_pem: None,
        });
        assert!(s.validate().is_ok());
        s.ice = Some(IceSpec {
            stun: vec!["127.0.0.1:3478".into()],
            ..Default::default()
        });
        assert!(matches!(s.validate(), Err(ConfigError::Server { field, .. }) if field == "ice.stun[0]"));
    }

    #[test]
    fn a_relay_ca_that_is_not_a_pem_certificate_names_the_field() {
        let mut s = spec();
        s.relay = Some(RelaySpec {
            urls: vec!["rels://relay.example:443".into()],
            secret: Some("s".into()),
            ca_pem: Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into()),
            ..Default::default()
        });
        let e = s.validate().unwrap_err();
        assert!(
            matches!(&e, ConfigError::Server { field, .. } if field == "relay.ca_pem"),
            "{e}"
        );
        assert!(
            e.to_string().contains("BEGIN CERTIFICATE"),
            "says what to give: {e}"
        );
    }

    #[test]
    fn relay_debug_shows_neither_secrets_nor_the_ca() {
        let r = RelaySpec {
            urls: vec!["rels://relay.example".into()],
            token_payload: Some("payload-secret".into()),
            token_signature: Some("signature-secret".into()),
            secret: Some("shared-secret".into()),
            ca_pem: Some("-----BEGIN CERTIFICATE-----".into()),
        };
        let text = format!("{r:?}");
        for hidden in ["payload-secret", "signature-secret", "shared-secret", "BEGIN"] {
            assert!(!text.contains(hidden), "{text}");
        }
        assert!(text.contains("ca_pem: true"), "{text}");
    }

    #[test]
    fn bad_endpoint_is_refused() {
        let mut s = spec();
        s.peers[0].endpoint = Some("localhost".into());
        assert!(matches!(s.validate(), Err(ConfigError::Endpoint { .. })));
    }
}
