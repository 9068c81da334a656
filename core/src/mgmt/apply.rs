//! Applying what Sync says, as a pure function: the last applied state plus one
//! [`SyncResponse`] give the next state and a [`Delta`] of what changed, which the engine
//! carries out through its usual paths (`update_peers`, the relay's token, ICE's servers, an
//! event for the app). No I/O, no clock: everything it needs comes in.

use std::collections::{HashMap, HashSet};

use super::proto::{self, HostProtocol, NetbirdConfig, NetworkMap, SyncResponse};
use crate::config::{IceSpec, PeerConfig, RelaySpec, SignalSpec, TurnSpec, DEFAULT_MTU, MAX_MTU, MIN_MTU};
use crate::filter::RuleSet;
use crate::keys::PublicKey;
use crate::net::IpNet;

/// NetBird's keepalive for peers of a network: WireGuard's recommended 25 s, which also keeps
/// NAT mappings open (DESIGN 7).
pub const PEER_KEEPALIVE_SECS: u16 = 25;

/// The servers the control plane uses, as management last described them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Servers {
    pub signal: Option<SignalSpec>,
    /// `None`: relay disabled (management sent no relay section).
    pub relay: Option<RelaySpec>,
    pub ice: IceSpec,
}

/// The app's VPN interface: what it must rebuild its tun with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub addresses: Vec<IpNet>,
    pub mtu: u16,
    /// Networks routed through peers, besides the overlay network of `addresses`.
    pub routes: Vec<IpNet>,
    /// This peer's name in the network (e.g. `phone.netbird.cloud`).
    pub fqdn: String,
}

/// DNS settings for the app to apply (peerlink runs no resolver).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// Name servers as `ip:port`, primary groups first.
    pub servers: Vec<String>,
    /// Domains the name servers are for (empty: all).
    pub match_domains: Vec<String>,
    /// Search domains.
    pub search_domains: Vec<String>,
    /// Names management resolves itself (peers' FQDNs), as (name, address).
    pub records: Vec<(String, String)>,
}

/// A remote peer's name, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerName {
    pub key: PublicKey,
    pub fqdn: String,
}

/// What one Sync message changes. `None` fields are unchanged.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    pub interface: Option<InterfaceConfig>,
    /// The whole new peer list for `update_peers`.
    pub peers: Option<Vec<PeerConfig>>,
    pub names: Option<Vec<PeerName>>,
    pub servers: Option<Servers>,
    pub dns: Option<DnsSettings>,
    /// The firewall rules of the map, when they changed.
    pub firewall: Option<RuleSet>,
    /// The map was older than the last one applied and was ignored.
    pub stale_map: bool,
    /// Entries skipped as malformed (bad key or prefix, duplicate peer, unusable server URL).
    pub skipped: u32,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.interface.is_none()
            && self.peers.is_none()
            && self.servers.is_none()
            && self.dns.is_none()
            && self.names.is_none()
            && self.firewall.is_none()
    }
}

/// What has been applied so far.
#[derive(Debug, Clone, Default)]
pub struct NetworkState {
    pub serial: Option<u64>,
    pub servers: Servers,
    pub interface: Option<InterfaceConfig>,
    /// (key, allowed IPs) of the peers last handed to the engine, to tell a change.
    peers: Vec<(PublicKey, Vec<IpNet>)>,
    pub dns: Option<DnsSettings>,
    pub firewall: Option<RuleSet>,
}

impl NetworkState {
    /// Applies one Sync message. `own` is this peer's key (never a peer of its own);
    /// `connected` are the peers with a working path now, preferred as routing peers.
    pub fn apply(&mut self, sync: &SyncResponse, own: &PublicKey, connected: &HashSet<PublicKey>) -> Delta {
        let mut delta = Delta::default();
        if let Some(config) = &sync.netbird_config {
            let servers = servers_from(config, &self.servers, &mut delta.skipped);
            if servers != self.servers {
                self.servers = servers.clone();
                delta.servers = Some(servers);
            }
        }
        let Some(map) = &sync.network_map else {
            return delta;
        };
        if self.serial.is_some_and(|last| map.serial < last) {
            tracing::debug!(serial = map.serial, last = ?self.serial, "older network map ignored");
            delta.stale_map = true;
            return delta;
        }
        self.serial = Some(map.serial);
        self.apply_map(map, own, connected, &mut delta);
        delta
    }

    fn apply_map(
        &mut self,
        map: &NetworkMap,
        own: &PublicKey,
        connected: &HashSet<PublicKey>,
        delta: &mut Delta,
    ) {
        let carries_peers = !map.remote_peers.is_empty() || map.remote_peers_is_empty;
        let mut routes = Vec::new();
        if carries_peers {
            let (mut peers, names) = remote_peers(&map.remote_peers, own, &mut delta.skipped);
            routes = route_networks(&map.routes, &mut peers, connected, &mut delta.skipped);
            let summary: Vec<(PublicKey, Vec<IpNet>)> = peers
                .iter()
                .map(|p| (p.public_key, p.allowed_ips.clone()))
                .collect();
            if summary != self.peers {
                self.peers = summary;
                delta.peers = Some(peers);
                delta.names = Some(names);
            }
        }
        if let Some(own_config) = &map.peer_config {
            match interface_from(own_config, routes, self.interface.as_ref(), carries_peers) {
                Ok(interface) if self.interface.as_ref() != Some(&interface) => {
                    self.interface = Some(interface.clone());
                    delta.interface = Some(interface);
                }
                Ok(_) => {}
                Err(()) => delta.skipped += 1,
            }
        }
        // Every map carries the whole rule list, as NetBird's client reads it.
        let firewall = RuleSet::from_map(&map.firewall_rules, map.firewall_rules_is_empty);
        if self.firewall.as_ref() != Some(&firewall) {
            delta.skipped += firewall.skipped;
            self.firewall = Some(firewall.clone());
            delta.firewall = Some(firewall);
        }
        if let Some(dns) = &map.dns_config {
            let dns = dns_from(dns);
            if self.dns.as_ref() != Some(&dns) {
                self.dns = Some(dns.clone());
                delta.dns = Some(dns);
            }
        }
    }
}

/// The servers a config carries; what it leaves empty keeps its previous value, except the
/// relay, whose absence disables it (as NetBird's client does).
fn servers_from(config: &NetbirdConfig, previous: &Servers, skipped: &mut u32) -> Servers {
    let signal = config
        .signal
        .as_ref()
        .and_then(|s| signal_url(s, skipped))
        .map(|url| SignalSpec {
            url,
            ca_pem: previous.signal.as_ref().and_then(|s| s.ca_pem.clone()),
        })
        .or_else(|| previous.signal.clone());
    let relay = config
        .relay
        .as_ref()
        .filter(|r| !r.urls.is_empty())
        .map(|r| RelaySpec {
            urls: r.urls.clone(),
            token_payload: Some(r.token_payload.clone()),
            token_signature: Some(r.token_signature.clone()),
            secret: None,
            ca_pem: previous.relay.as_ref().and_then(|p| p.ca_pem.clone()),
        });
    let stun: Vec<String> = config
        .stuns
        .iter()
        .filter_map(|s| usable(&s.uri, "stun:", skipped))
        .collect();
    let turn: Vec<TurnSpec> = config
        .turns
        .iter()
        .filter_map(|t| {
            let uri = t.host_config.as_ref().map(|h| h.uri.as_str()).unwrap_or_default();
            let url = usable(uri, "turn:", skipped)?;
            Some(TurnSpec {
                url,
                username: t.user.clone(),
                credential: t.password.clone(),
            })
        })
        .collect();
    Servers {
        signal,
        relay,
        ice: IceSpec {
            stun: if stun.is_empty() {
                previous.ice.stun.clone()
            } else {
                stun
            },
            turn: if turn.is_empty() {
                previous.ice.turn.clone()
            } else {
                turn
            },
            ..previous.ice.clone()
        },
    }
}

/// `host:port` with its protocol, or a URL with a scheme, as `http(s)://host:port`.
fn signal_url(host: &proto::HostConfig, skipped: &mut u32) -> Option<String> {
    let uri = host.uri.trim();
    if uri.is_empty() {
        return None;
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Some(uri.to_owned());
    }
    match host.protocol() {
        HostProtocol::Http => Some(format!("http://{uri}")),
        HostProtocol::Https => Some(format!("https://{uri}")),
        HostProtocol::Udp | HostProtocol::Tcp | HostProtocol::Dtls => {
            tracing::warn!(
                uri,
                protocol = host.protocol,
                "signal server with an unusable protocol skipped"
            );
            *skipped += 1;
            None
        }
    }
}

/// A STUN or TURN URL peerlink can use: the scheme it needs, over UDP (webrtc-ice 0.17 has no
/// TURN over TCP or TLS).
fn usable(uri: &str, scheme: &str, skipped: &mut u32) -> Option<String> {
    let uri = uri.trim();
    if uri.starts_with(scheme) && !uri.contains("transport=tcp") {
        return Some(uri.to_owned());
    }
    tracing::debug!(uri, "STUN/TURN server peerlink cannot use skipped");
    *skipped += 1;
    None
}

/// The map's peers as the engine's peer list, each malformed entry skipped and counted.
fn remote_peers(
    remote: &[proto::RemotePeerConfig],
    own: &PublicKey,
    skipped: &mut u32,
) -> (Vec<PeerConfig>, Vec<PeerName>) {
    let mut seen = HashSet::new();
    let mut owners: HashMap<IpNet, PublicKey> = HashMap::new();
    let mut peers = Vec::with_capacity(remote.len());
    let mut names = Vec::with_capacity(remote.len());
    for r in remote {
        let Ok(key) = PublicKey::from_base64(&r.wg_pub_key) else {
            tracing::warn!(key = %r.wg_pub_key, "network map peer with an invalid key skipped");
            *skipped += 1;
            continue;
        };
        if key == *own || !seen.insert(key) {
            tracing::warn!(peer = %key, "network map peer listed twice (or as ourselves) skipped");
            *skipped += 1;
            continue;
        }
        let mut allowed_ips = Vec::with_capacity(r.allowed_ips.len());
        for text in &r.allowed_ips {
            let Ok(prefix) = text.parse::<IpNet>().map(|p| p.network()) else {
                tracing::warn!(peer = %key, prefix = %text, "malformed allowed IP skipped");
                *skipped += 1;
                continue;
            };
            if owners.get(&prefix).is_some_and(|o| o != &key) {
                tracing::warn!(peer = %key, %prefix, "allowed IP of another peer skipped");
                *skipped += 1;
                continue;
            }
            owners.insert(prefix, key);
            if !allowed_ips.contains(&prefix) {
                allowed_ips.push(prefix);
            }
        }
        peers.push(PeerConfig {
            public_key: key,
            allowed_ips,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: Some(PEER_KEEPALIVE_SECS),
            // Routing peers are marked below; the rest may idle (lazy connections).
            always_on: false,
        });
        names.push(PeerName {
            key,
            fqdn: r.fqdn.clone(),
        });
    }
    (peers, names)
}

/// Adds each routed network to its routing peer's allowed IPs and returns the networks for the
/// app's interface. When several peers serve one network (same NetID, or the same prefix),
/// the first connected one wins, else the lowest metric, else the first listed.
fn route_networks(
    routes: &[proto::Route],
    peers: &mut [PeerConfig],
    connected: &HashSet<PublicKey>,
    skipped: &mut u32,
) -> Vec<IpNet> {
    let mut chosen: Vec<(String, IpNet, PublicKey, bool, i64)> = Vec::new();
    for route in routes {
        if route.network.is_empty() && !route.domains.is_empty() {
            // Domain routes need a resolver on the routing peer's side: not supported.
            tracing::debug!(id = %route.id, "domain route skipped");
            continue;
        }
        let (Ok(prefix), Ok(peer)) = (
            route.network.parse::<IpNet>().map(|p| p.network()),
            PublicKey::from_base64(&route.peer),
        ) else {
            tracing::warn!(id = %route.id, network = %route.network, "malformed route skipped");
            *skipped += 1;
            continue;
        };
        if !peers.iter().any(|p| p.public_key == peer) {
            continue;
        }
        let group = if route.net_id.is_empty() {
            prefix.to_string()
        } else {
            route.net_id.clone()
        };
        let is_connected = connected.contains(&peer);
        let candidate = (group, prefix, peer, is_connected, route.metric);
        match chosen
            .iter_mut()
            .find(|c| c.0 == candidate.0 && c.1 == candidate.1)
        {
            None => chosen.push(candidate),
            Some(current) => {
                let better =
                    (is_connected && !current.3) || (is_connected == current.3 && route.metric < current.4);
                if better {
                    *current = candidate;
                }
            }
        }
    }
    let mut networks = Vec::with_capacity(chosen.len());
    for (_, prefix, peer, _, _) in chosen {
        let owned_elsewhere = peers
            .iter()
            .any(|p| p.public_key != peer && p.allowed_ips.contains(&prefix));
        if owned_elsewhere {
            *skipped += 1;
            continue;
        }
        if let Some(p) = peers.iter_mut().find(|p| p.public_key == peer) {
            if !p.allowed_ips.contains(&prefix) {
                p.allowed_ips.push(prefix);
            }
            // A routed network's traffic must not wait for a lazy connection to wake.
            p.always_on = true;
        }
        if !networks.contains(&prefix) {
            networks.push(prefix);
        }
    }
    networks
}

/// The interface the map's own config describes. A map without peers keeps the routes it had.
fn interface_from(
    config: &proto::PeerConfig,
    routes: Vec<IpNet>,
    previous: Option<&InterfaceConfig>,
    carries_routes: bool,
) -> Result<InterfaceConfig, ()> {
    let address = config.address.parse::<IpNet>().map_err(|_| {
        tracing::warn!(address = %config.address, "network map with an invalid own address");
    })?;
    let mtu = u16::try_from(config.mtu)
        .ok()
        .filter(|m| (MIN_MTU..=MAX_MTU).contains(m))
        .unwrap_or(DEFAULT_MTU);
    let routes = if carries_routes {
        routes
    } else {
        previous.map(|p| p.routes.clone()).unwrap_or_default()
    };
    Ok(InterfaceConfig {
        addresses: vec![address],
        mtu,
        routes,
        fqdn: config.fqdn.clone(),
    })
}

fn dns_from(config: &proto::DnsConfig) -> DnsSettings {
    let mut dns = DnsSettings::default();
    let mut groups: Vec<&proto::NameServerGroup> = config.name_server_groups.iter().collect();
    groups.sort_by_key(|g| !g.primary);
    for group in groups {
        for ns in &group.name_servers {
            let port = if ns.port > 0 { ns.port } else { 53 };
            let server = match ns.ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
                Ok(std::net::IpAddr::V4(ip)) => format!("{ip}:{port}"),
                Err(_) => continue,
            };
            if !dns.servers.contains(&server) {
                dns.servers.push(server);
            }
        }
        dns.match_domains.extend(group.domains.iter().cloned());
        if group.search_domains_enabled {
            dns.search_domains.extend(group.domains.iter().cloned());
        }
    }
    for zone in &config.custom_zones {
        dns.search_domains.push(zone.domain.clone());
        for record in &zone.records {
            dns.records.push((record.name.clone(), record.r_data.clone()));
        }
    }
    dns
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
