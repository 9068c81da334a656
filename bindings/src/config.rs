//! The configuration records the app fills in, their mapping onto core's `EngineSpec`, and the
//! interface settings (addresses, routes, MTU, DNS) the platform gives its tunnel.
//!
//! Every field beyond the private key has a default, so a field added later does not break code
//! written against an older version: Kotlin gets default arguments, Swift default initialiser
//! parameters. Secrets (keys, relay tokens, TURN credentials) never appear in `Debug` output.

use std::fmt;
use std::net::IpAddr;

use peerlink_core::config::validate_peers;
use peerlink_core::net::IpNet;
use peerlink_core::tun::{FdOwnership, Framing};
use peerlink_core::{EngineSpec, IceSpec, PeerSpec, PrivateKey, PublicKey, RelaySpec, SignalSpec, TurnSpec};

use crate::error::PeerlinkError;
use crate::guard::guard;

/// Everything the engine needs besides the tun fd and the platform callbacks.
#[derive(Clone, uniffi::Record)]
pub struct EngineConfig {
    /// This device's WireGuard private key, base64 (as `wg genkey` prints it). Never logged.
    pub private_key: String,
    /// The tunnel interface's own addresses with their prefix, e.g. `100.64.0.1/16`.
    #[uniffi(default = [])]
    pub addresses: Vec<String>,
    /// The tunnel MTU; unset means 1280 (NetBird's default; see core's `DEFAULT_MTU`).
    #[uniffi(default = None)]
    pub mtu: Option<u16>,
    /// The WireGuard UDP port; 0 lets the system choose (read it back from `status()`).
    #[uniffi(default = 0)]
    pub listen_port: u16,
    #[uniffi(default = [])]
    pub peers: Vec<PeerConfig>,
    /// DNS servers for the tunnel interface (the engine itself resolves nothing).
    #[uniffi(default = [])]
    pub dns_servers: Vec<String>,
    /// How packets sit in the fd; unset means the platform's (Apple: utun, others: raw IP).
    #[uniffi(default = None)]
    pub framing: Option<TunFraming>,
    /// Whether the engine closes the fd; unset means the platform's (Apple: the extension keeps
    /// it; others: the engine closes the fd Android's `detachFd()` handed over).
    #[uniffi(default = None)]
    pub fd_ownership: Option<TunFdOwnership>,
    /// NetBird's signal server; with it, peers need no endpoints (they meet over ICE or relay).
    #[uniffi(default = None)]
    pub signal: Option<SignalConfig>,
    /// NetBird's relay servers: the path that always works, and the standby behind ICE.
    #[uniffi(default = None)]
    pub relay: Option<RelayConfig>,
    /// ICE with STUN and TURN servers; needs `signal`.
    #[uniffi(default = None)]
    pub ice: Option<IceConfig>,
    /// NetBird's management server: the address, peers and servers come from there.
    #[uniffi(default = None)]
    pub management: Option<crate::management::ManagementConfig>,
    /// Lazy connections: a peer's connection closes after `inactivity_threshold_secs` without
    /// data (default 900, at least 60) and opens again when a packet or the peer needs it.
    /// `true` keeps every connection open.
    #[uniffi(default = false)]
    pub lazy_disabled: bool,
    #[uniffi(default = None)]
    pub inactivity_threshold_secs: Option<u64>,
}

/// NetBird's signal server.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SignalConfig {
    /// `https://host:port` (or `http://` for a server without TLS).
    pub url: String,
    /// PEM CA certificate(s) to trust besides the public roots (a self-hosted server).
    #[uniffi(default = None)]
    pub ca_pem: Option<String>,
}

/// NetBird's relay servers and the credentials for them: the token management hands out
/// (`token_payload` + `token_signature`), or the relay's shared secret to mint one locally
/// (self-hosted setups).
#[derive(Clone, uniffi::Record)]
pub struct RelayConfig {
    /// `rels://host:port` or `rel://host:port`, as management lists them.
    pub urls: Vec<String>,
    #[uniffi(default = None)]
    pub token_payload: Option<String>,
    /// Base64, as management hands it out. Never logged.
    #[uniffi(default = None)]
    pub token_signature: Option<String>,
    /// Never logged.
    #[uniffi(default = None)]
    pub secret: Option<String>,
    /// PEM CA certificate(s) trusted besides the public roots, for a self-hosted `rels://` relay.
    #[uniffi(default = None)]
    pub ca_pem: Option<String>,
}

#[derive(Debug, Clone, uniffi::Record)]
pub struct IceConfig {
    /// `stun:host:port` URLs.
    #[uniffi(default = [])]
    pub stun: Vec<String>,
    #[uniffi(default = [])]
    pub turn: Vec<TurnServer>,
    /// Gather TURN candidates even when NetBird's relay works between the peers.
    #[uniffi(default = false)]
    pub force_turn: bool,
    /// Interface names ICE may gather on, replacing the default choice (which leaves out
    /// loopback and VPN interfaces). Tests use `["lo"]`; apps leave it unset.
    #[uniffi(default = None)]
    pub interfaces: Option<Vec<String>>,
}

/// A TURN server (UDP; `turns:` is not supported).
#[derive(Clone, uniffi::Record)]
pub struct TurnServer {
    /// `turn:host:port`.
    pub url: String,
    pub username: String,
    /// Never logged.
    pub credential: String,
}

#[derive(Clone, uniffi::Record)]
pub struct PeerConfig {
    /// The peer's WireGuard public key, base64.
    pub public_key: String,
    /// Prefixes routed to this peer and accepted from it, e.g. `100.64.0.2/32`.
    #[uniffi(default = [])]
    pub allowed_ips: Vec<String>,
    /// Optional WireGuard preshared key, base64. Never logged.
    #[uniffi(default = None)]
    pub preshared_key: Option<String>,
    /// `ip:port` of the peer, if known (`[v6]:port` for IPv6).
    #[uniffi(default = None)]
    pub endpoint: Option<String>,
    /// Seconds between keepalives when idle; unset or 0 turns them off.
    #[uniffi(default = None)]
    pub persistent_keepalive: Option<u16>,
    /// Never closed for inactivity (a routing peer, say).
    #[uniffi(default = false)]
    pub always_on: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TunFraming {
    /// Each read or write is one IP packet (Android, Linux).
    RawIp,
    /// Each packet follows a 4-byte address-family header (Apple utun).
    AppleUtun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TunFdOwnership {
    /// The engine closes the fd when it stops (Android after `detachFd()`).
    Owned,
    /// The app keeps the fd open and closes it (Apple's utun belongs to the extension).
    Borrowed,
}

/// What the platform's tunnel interface needs: Android's `VpnService.Builder`, Apple's
/// `NEPacketTunnelNetworkSettings`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct InterfaceSettings {
    /// The interface's own addresses, host bits kept.
    pub addresses: Vec<IpPrefix>,
    /// Every prefix to route into the tunnel: the networks of `addresses` and of every peer's
    /// allowed IPs, without duplicates, in configuration order.
    pub routes: Vec<IpPrefix>,
    pub mtu: u16,
    pub dns_servers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IpPrefix {
    pub address: String,
    pub prefix_len: u8,
    pub is_ipv6: bool,
}

/// A fresh WireGuard key pair, base64.
#[derive(Clone, uniffi::Record)]
pub struct KeyPair {
    pub private_key: String,
    pub public_key: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// Generates a WireGuard key pair from the OS's random source.
#[uniffi::export]
pub fn generate_key_pair() -> KeyPair {
    let private = PrivateKey::generate();
    KeyPair {
        public_key: private.public_key().to_base64(),
        private_key: private.to_base64(),
    }
}

/// The public key of a base64 private key (`wg pubkey`).
#[uniffi::export]
pub fn public_key_of(private_key: String) -> Result<String, PeerlinkError> {
    guard(|| {
        let key = PrivateKey::from_base64(&private_key).map_err(|e| {
            PeerlinkError::config("private_key", format!("private_key: invalid WireGuard key: {e}"))
        })?;
        Ok(key.public_key().to_base64())
    })
}

/// The interface settings for `config`, validating it as `Engine::new` does. Call it before
/// `start` to build the platform's tunnel interface.
#[uniffi::export]
pub fn interface_settings(config: EngineConfig) -> Result<InterfaceSettings, PeerlinkError> {
    guard(|| Ok(Validated::new(&config)?.interface_settings()))
}

/// A configuration checked once, kept by the engine for restarts (`set_tun`).
#[derive(Debug, Clone)]
pub(crate) struct Validated {
    pub core: peerlink_core::EngineConfig,
    /// Derived once: an X25519 scalar multiplication is not free.
    public_key: PublicKey,
    pub dns_servers: Vec<IpAddr>,
    pub framing: Framing,
    pub fd_ownership: FdOwnership,
}

impl Validated {
    pub fn new(config: &EngineConfig) -> Result<Self, PeerlinkError> {
        let spec = EngineSpec {
            private_key: config.private_key.clone(),
            addresses: config.addresses.clone(),
            mtu: config.mtu,
            listen_port: config.listen_port,
            peers: config.peers.iter().map(PeerConfig::to_spec).collect(),
            signal: config.signal.as_ref().map(SignalConfig::to_spec),
            relay: config.relay.as_ref().map(RelayConfig::to_spec),
            ice: config.ice.as_ref().map(IceConfig::to_spec),
            management: config.management.as_ref().map(|m| m.to_spec()),
            lazy: Some(peerlink_core::config::LazySpec {
                disabled: config.lazy_disabled,
                inactivity_threshold_secs: config.inactivity_threshold_secs,
            }),
        };
        let core = spec.validate()?;
        // The app's engine always takes signal from its configuration (core's in-process hub is
        // for the demo and tests), so ICE without it can be refused here, naming the field.
        if core.ice.is_some() && core.signal.is_none() && core.management.is_none() {
            return Err(PeerlinkError::config(
                "ice",
                "ice: ICE needs a signal server (set signal.url)",
            ));
        }
        let dns_servers = config
            .dns_servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.trim().parse::<IpAddr>().map_err(|_| {
                    PeerlinkError::config(
                        format!("dns_servers[{i}]"),
                        format!(
                            "dns_servers[{i}]: `{s}` is not an IP address such as 1.1.1.1 or 2606:4700::1111"
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            public_key: core.private_key.public_key(),
            core,
            dns_servers,
            framing: config.framing.map_or_else(platform_framing, Framing::from),
            fd_ownership: config
                .fd_ownership
                .map_or_else(platform_fd_ownership, FdOwnership::from),
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// Replaces the peers after validating them against this engine's key.
    pub fn set_peers(&mut self, peers: &[PeerConfig]) -> Result<(), PeerlinkError> {
        let specs: Vec<PeerSpec> = peers.iter().map(PeerConfig::to_spec).collect();
        self.core.peers = validate_peers(&specs, self.public_key())?;
        Ok(())
    }

    pub fn interface_settings(&self) -> InterfaceSettings {
        let addresses: Vec<IpPrefix> = self.core.addresses.iter().map(IpPrefix::from).collect();
        let networks = self
            .core
            .addresses
            .iter()
            .chain(self.core.peers.iter().flat_map(|p| p.allowed_ips.iter()))
            .map(IpNet::network);
        let mut routes: Vec<IpPrefix> = Vec::new();
        for net in networks {
            let route = IpPrefix::from(&net);
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        InterfaceSettings {
            addresses,
            routes,
            mtu: self.core.mtu,
            dns_servers: self.dns_servers.iter().map(IpAddr::to_string).collect(),
        }
    }

    /// The interface management asks for: its address and MTU, the overlay network and the
    /// routed networks as routes, the app's DNS servers.
    pub fn managed_interface_settings(
        &self,
        managed: &peerlink_core::mgmt::InterfaceConfig,
    ) -> InterfaceSettings {
        let mut routes: Vec<IpPrefix> = Vec::new();
        for net in managed
            .addresses
            .iter()
            .chain(managed.routes.iter())
            .map(IpNet::network)
        {
            let route = IpPrefix::from(&net);
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        InterfaceSettings {
            addresses: managed.addresses.iter().map(IpPrefix::from).collect(),
            routes,
            mtu: managed.mtu,
            dns_servers: self.dns_servers.iter().map(IpAddr::to_string).collect(),
        }
    }
}

impl PeerConfig {
    fn to_spec(&self) -> PeerSpec {
        PeerSpec {
            public_key: self.public_key.clone(),
            allowed_ips: self.allowed_ips.clone(),
            preshared_key: self.preshared_key.clone(),
            endpoint: self.endpoint.clone(),
            persistent_keepalive: self.persistent_keepalive,
            always_on: self.always_on,
        }
    }
}

impl SignalConfig {
    fn to_spec(&self) -> SignalSpec {
        SignalSpec {
            url: self.url.clone(),
            ca_pem: self.ca_pem.clone(),
        }
    }
}

impl RelayConfig {
    fn to_spec(&self) -> RelaySpec {
        RelaySpec {
            urls: self.urls.clone(),
            token_payload: self.token_payload.clone(),
            token_signature: self.token_signature.clone(),
            secret: self.secret.clone(),
            ca_pem: self.ca_pem.clone(),
        }
    }
}

impl IceConfig {
    fn to_spec(&self) -> IceSpec {
        IceSpec {
            stun: self.stun.clone(),
            turn: self
                .turn
                .iter()
                .map(|t| TurnSpec {
                    url: t.url.clone(),
                    username: t.username.clone(),
                    credential: t.credential.clone(),
                })
                .collect(),
            force_turn: self.force_turn,
            interfaces: self.interfaces.clone(),
        }
    }
}

impl fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineConfig")
            .field("private_key", &REDACTED)
            .field("addresses", &self.addresses)
            .field("mtu", &self.mtu)
            .field("listen_port", &self.listen_port)
            .field("peers", &self.peers)
            .field("dns_servers", &self.dns_servers)
            .field("framing", &self.framing)
            .field("fd_ownership", &self.fd_ownership)
            .field("signal", &self.signal)
            .field("relay", &self.relay)
            .field("ice", &self.ice)
            .field("management", &self.management.as_ref().map(|m| &m.url))
            .finish()
    }
}

impl fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConfig")
            .field("public_key", &self.public_key)
            .field("allowed_ips", &self.allowed_ips)
            .field("preshared_key", &self.preshared_key.as_ref().map(|_| REDACTED))
            .field("endpoint", &self.endpoint)
            .field("persistent_keepalive", &self.persistent_keepalive)
            .finish()
    }
}

impl fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayConfig")
            .field("urls", &self.urls)
            .field("token_payload", &self.token_payload)
            .field(
                "token_signature",
                &self.token_signature.as_ref().map(|_| REDACTED),
            )
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

impl fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnServer")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("credential", &REDACTED)
            .finish()
    }
}

/// What `Debug` prints in place of a secret.
const REDACTED: &str = "<redacted>";

impl From<&IpNet> for IpPrefix {
    fn from(net: &IpNet) -> Self {
        Self {
            address: net.addr().to_string(),
            prefix_len: net.prefix_len(),
            is_ipv6: net.addr().is_ipv6(),
        }
    }
}

impl From<TunFraming> for Framing {
    fn from(f: TunFraming) -> Self {
        match f {
            TunFraming::RawIp => Framing::RawIp,
            TunFraming::AppleUtun => Framing::AppleUtun,
        }
    }
}

impl From<TunFdOwnership> for FdOwnership {
    fn from(o: TunFdOwnership) -> Self {
        match o {
            TunFdOwnership::Owned => FdOwnership::Owned,
            TunFdOwnership::Borrowed => FdOwnership::Borrowed,
        }
    }
}

/// Apple's utun prefixes each packet with its address family; Android's and Linux's tun don't.
fn platform_framing() -> Framing {
    if cfg!(target_vendor = "apple") {
        Framing::AppleUtun
    } else {
        Framing::RawIp
    }
}

/// Android hands the fd over with `detachFd()`; Apple's extension owns its utun.
fn platform_fd_ownership() -> FdOwnership {
    if cfg!(target_vendor = "apple") {
        FdOwnership::Borrowed
    } else {
        FdOwnership::Owned
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn config() -> EngineConfig {
        EngineConfig {
            private_key: generate_key_pair().private_key,
            addresses: vec!["100.64.0.1/16".into(), "fd00::1/64".into()],
            mtu: None,
            listen_port: 0,
            peers: vec![PeerConfig {
                public_key: generate_key_pair().public_key,
                allowed_ips: vec!["100.64.0.2/32".into(), "10.1.0.0/24".into(), "fd00::2/128".into()],
                preshared_key: None,
                endpoint: Some("127.0.0.1:51820".into()),
                persistent_keepalive: Some(25),
                always_on: false,
            }],
            dns_servers: vec!["100.64.0.53".into()],
            framing: None,
            fd_ownership: None,
            signal: None,
            relay: None,
            ice: None,
            management: None,
            lazy_disabled: false,
            inactivity_threshold_secs: None,
        }
    }

    fn servers() -> EngineConfig {
        EngineConfig {
            signal: Some(SignalConfig {
                url: "https://signal.example:443".into(),
                ca_pem: None,
            }),
            relay: Some(RelayConfig {
                urls: vec!["rels://relay.example:443".into()],
                token_payload: None,
                token_signature: None,
                secret: Some("relay-secret".into()),
                ca_pem: None,
            }),
            ice: Some(IceConfig {
                stun: vec!["stun:stun.example:3478".into()],
                turn: vec![TurnServer {
                    url: "turn:turn.example:3478".into(),
                    username: "user".into(),
                    credential: "turn-credential".into(),
                }],
                force_turn: true,
                interfaces: Some(vec!["lo".into()]),
            }),
            ..config()
        }
    }

    #[test]
    fn a_valid_config_maps_onto_core_with_platform_defaults() {
        let v = Validated::new(&config()).unwrap();
        assert_eq!(v.core.mtu, 1280);
        assert_eq!(v.core.peers.len(), 1);
        assert_eq!(v.core.peers[0].endpoint, Some("127.0.0.1:51820".parse().unwrap()));
        assert_eq!(v.core.peers[0].persistent_keepalive, Some(25));
        assert_eq!(v.framing, Framing::RawIp);
        assert_eq!(v.fd_ownership, FdOwnership::Owned);
        let mut c = config();
        c.framing = Some(TunFraming::AppleUtun);
        c.fd_ownership = Some(TunFdOwnership::Borrowed);
        let v = Validated::new(&c).unwrap();
        assert_eq!(
            (v.framing, v.fd_ownership),
            (Framing::AppleUtun, FdOwnership::Borrowed)
        );
    }

    #[test]
    fn a_bad_peer_field_is_named_in_the_error() {
        let mut c = config();
        c.peers[0].allowed_ips.push("300.1.1.1/32".into());
        let e = Validated::new(&c).unwrap_err();
        assert!(
            matches!(&e, PeerlinkError::Config { field, .. } if field == "peers[0].allowed_ips[3]"),
            "{e:?}"
        );
        let mut c = config();
        c.peers[0].endpoint = Some("example.com:1".into());
        let e = Validated::new(&c).unwrap_err();
        assert!(
            matches!(&e, PeerlinkError::Config { field, .. } if field == "peers[0].endpoint"),
            "{e:?}"
        );
    }

    #[test]
    fn servers_map_onto_core_and_default_to_none() {
        let v = Validated::new(&config()).unwrap();
        assert!(v.core.signal.is_none() && v.core.relay.is_none() && v.core.ice.is_none());
        let v = Validated::new(&servers()).unwrap();
        assert_eq!(
            v.core.signal.as_ref().map(|s| s.url.as_str()),
            Some("https://signal.example:443")
        );
        assert_eq!(v.core.relay.as_ref().map(|r| r.urls.len()), Some(1));
        let ice = v.core.ice.as_ref().unwrap();
        assert_eq!(ice.stun, ["stun:stun.example:3478"]);
        assert_eq!(ice.turn[0].credential, "turn-credential");
        assert!(ice.force_turn);
        assert_eq!(ice.interfaces.as_deref(), Some(&["lo".to_owned()][..]));
    }

    #[test]
    fn a_bad_server_field_is_named_in_the_error() {
        let field = |change: fn(&mut EngineConfig)| {
            let mut c = servers();
            change(&mut c);
            match Validated::new(&c) {
                Err(PeerlinkError::Config { field, .. }) => field,
                other => panic!("not a config error: {other:?}"),
            }
        };
        assert_eq!(
            field(|c| c.signal.as_mut().unwrap().url = "signal.example".into()),
            "signal.url"
        );
        assert_eq!(
            field(|c| c.relay.as_mut().unwrap().urls = vec!["https://relay".into()]),
            "relay.urls[0]"
        );
        assert_eq!(field(|c| c.relay.as_mut().unwrap().secret = None), "relay");
        assert_eq!(
            field(|c| c.ice.as_mut().unwrap().stun = vec!["stun.example".into()]),
            "ice.stun[0]"
        );
        assert_eq!(
            field(|c| c.ice.as_mut().unwrap().turn[0].url = "turns:turn.example:443".into()),
            "ice.turn[0].url"
        );
        assert_eq!(field(|c| c.signal = None), "ice");
    }

    #[test]
    fn debug_output_shows_no_secrets() {
        let mut c = servers();
        c.peers[0].preshared_key = Some(generate_key_pair().private_key);
        if let Some(r) = c.relay.as_mut() {
            r.token_signature = Some("token-signature".into());
        }
        let text = format!("{c:?}");
        let secrets = [
            c.private_key.as_str(),
            c.peers[0].preshared_key.as_deref().unwrap(),
            "relay-secret",
            "token-signature",
            "turn-credential",
        ];
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("rels://relay.example:443"), "{text}");
    }

    #[test]
    fn a_bad_dns_server_is_named_in_the_error() {
        let mut c = config();
        c.dns_servers.push("dns.example".into());
        let e = Validated::new(&c).unwrap_err();
        assert!(
            matches!(&e, PeerlinkError::Config { field, .. } if field == "dns_servers[1]"),
            "{e:?}"
        );
    }

    #[test]
    fn routes_are_the_networks_of_addresses_and_allowed_ips_without_duplicates() {
        let mut c = config();
        c.peers.push(PeerConfig {
            public_key: generate_key_pair().public_key,
            allowed_ips: vec!["10.2.0.7/16".into(), "100.64.9.9/32".into()],
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            always_on: false,
        });
        let s = interface_settings(c).unwrap();
        let text = |v: &[IpPrefix]| {
            v.iter()
                .map(|p| format!("{}/{}", p.address, p.prefix_len))
                .collect::<Vec<_>>()
        };
        assert_eq!(text(&s.addresses), ["100.64.0.1/16", "fd00::1/64"]);
        assert_eq!(
            text(&s.routes),
            // 100.64.0.2/32 and 100.64.9.9/32 are inside 100.64.0.0/16 but stay: a route per
            // prefix is harmless and keeps the list easy to compare after an update.
            [
                "100.64.0.0/16",
                "fd00::/64",
                "100.64.0.2/32",
                "10.1.0.0/24",
                "fd00::2/128",
                "10.2.0.0/16",
                "100.64.9.9/32"
            ]
        );
        assert_eq!(
            (s.mtu, s.dns_servers.as_slice()),
            (1280, &["100.64.0.53".to_owned()][..])
        );
        assert!(s.routes[1].is_ipv6 && !s.routes[0].is_ipv6);
    }

    #[test]
    fn key_helpers_round_trip() {
        let pair = generate_key_pair();
        assert_eq!(public_key_of(pair.private_key.clone()).unwrap(), pair.public_key);
        assert!(!format!("{pair:?}").contains(&pair.private_key));
        assert!(matches!(
            public_key_of("nope".into()),
            Err(PeerlinkError::Config { .. })
        ));
    }
}
