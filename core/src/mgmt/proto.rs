//! The part of NetBird's management protocol peerlink speaks
//! (`shared/management/proto/management.proto`, v0.77.1): only the messages and fields a
//! setup-key login and a version-0 sync need, written by hand for prost as the signal messages
//! are (no `protoc` in the build). Field numbers and types must match that file; fields we do
//! not declare are skipped by prost when they arrive.

/// `rpc GetServerKey(Empty) returns (ServerKeyResponse)`.
pub const GET_SERVER_KEY_PATH: &str = "/management.ManagementService/GetServerKey";
/// `rpc Login(EncryptedMessage) returns (EncryptedMessage)`.
pub const LOGIN_PATH: &str = "/management.ManagementService/Login";
/// `rpc Sync(EncryptedMessage) returns (stream EncryptedMessage)`.
pub const SYNC_PATH: &str = "/management.ManagementService/Sync";

/// A body sealed for the server (or by it) with NaCl box, like signal's.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EncryptedMessage {
    /// The sender's WireGuard public key, base64.
    #[prost(string, tag = "1")]
    pub wg_pub_key: String,
    /// `nonce(24) || box` of an encoded request or response.
    #[prost(bytes = "vec", tag = "2")]
    pub body: Vec<u8>,
    /// Management protocol version; NetBird's client leaves it 0.
    #[prost(int32, tag = "3")]
    pub version: i32,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ServerKeyResponse {
    /// The server's WireGuard public key, base64.
    #[prost(string, tag = "1")]
    pub key: String,
    // 2: expiresAt (Timestamp), 3: version: not needed, the key is fetched before each call.
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LoginRequest {
    #[prost(string, tag = "1")]
    pub setup_key: String,
    #[prost(message, optional, tag = "2")]
    pub meta: Option<PeerSystemMeta>,
    // 3: jwtToken (SSO, out of scope).
    #[prost(message, optional, tag = "4")]
    pub peer_keys: Option<PeerKeys>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PeerKeys {
    #[prost(bytes = "vec", tag = "1")]
    pub ssh_pub_key: Vec<u8>,
    /// The WireGuard public key as its base64 text (what NetBird's client sends).
    #[prost(bytes = "vec", tag = "2")]
    pub wg_pub_key: Vec<u8>,
}

/// What the server records about the peer (its dashboard shows hostname, OS and versions).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PeerSystemMeta {
    #[prost(string, tag = "1")]
    pub hostname: String,
    #[prost(string, tag = "2")]
    pub go_os: String,
    #[prost(string, tag = "3")]
    pub kernel: String,
    #[prost(string, tag = "5")]
    pub platform: String,
    #[prost(string, tag = "6")]
    pub os: String,
    #[prost(string, tag = "7")]
    pub netbird_version: String,
    #[prost(string, tag = "8")]
    pub ui_version: String,
    #[prost(string, tag = "10")]
    pub os_version: String,
    #[prost(message, optional, tag = "17")]
    pub flags: Option<Flags>,
    /// 0: the server sends the plain, expanded `NetworkMap`.
    #[prost(int32, tag = "19")]
    pub sync_message_version: i32,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Flags {
    /// peerlink runs no DNS resolver of its own; the app gets the settings in an event.
    #[prost(bool, tag = "6")]
    pub disable_dns: bool,
    /// peerlink enforces management's firewall rules (`crate::filter`).
    #[prost(bool, tag = "7")]
    pub disable_firewall: bool,
    #[prost(bool, tag = "10")]
    pub lazy_connection_enabled: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LoginResponse {
    #[prost(message, optional, tag = "1")]
    pub netbird_config: Option<NetbirdConfig>,
    #[prost(message, optional, tag = "2")]
    pub peer_config: Option<PeerConfig>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SyncRequest {
    #[prost(message, optional, tag = "1")]
    pub meta: Option<PeerSystemMeta>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SyncResponse {
    #[prost(message, optional, tag = "1")]
    pub netbird_config: Option<NetbirdConfig>,
    // 2, 3, 4: deprecated copies of what NetworkMap carries.
    #[prost(message, optional, tag = "5")]
    pub network_map: Option<NetworkMap>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NetbirdConfig {
    #[prost(message, repeated, tag = "1")]
    pub stuns: Vec<HostConfig>,
    #[prost(message, repeated, tag = "2")]
    pub turns: Vec<ProtectedHostConfig>,
    #[prost(message, optional, tag = "3")]
    pub signal: Option<HostConfig>,
    #[prost(message, optional, tag = "4")]
    pub relay: Option<RelayConfig>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HostConfig {
    /// `stun:host:port`, `turn:host:port`, or `host:port` for signal.
    #[prost(string, tag = "1")]
    pub uri: String,
    #[prost(enumeration = "HostProtocol", tag = "2")]
    pub protocol: i32,
}

/// `HostConfig.Protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum HostProtocol {
    Udp = 0,
    Tcp = 1,
    Http = 2,
    Https = 3,
    Dtls = 4,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ProtectedHostConfig {
    #[prost(message, optional, tag = "1")]
    pub host_config: Option<HostConfig>,
    #[prost(string, tag = "2")]
    pub user: String,
    #[prost(string, tag = "3")]
    pub password: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RelayConfig {
    #[prost(string, repeated, tag = "1")]
    pub urls: Vec<String>,
    #[prost(string, tag = "2")]
    pub token_payload: String,
    #[prost(string, tag = "3")]
    pub token_signature: String,
}

/// This peer's own settings.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PeerConfig {
    /// The overlay address with its prefix, e.g. `100.64.0.5/16`.
    #[prost(string, tag = "1")]
    pub address: String,
    #[prost(string, tag = "4")]
    pub fqdn: String,
    #[prost(int32, tag = "7")]
    pub mtu: i32,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NetworkMap {
    /// Larger is newer; a map with a smaller serial than the last one applied is stale.
    #[prost(uint64, tag = "1")]
    pub serial: u64,
    #[prost(message, optional, tag = "2")]
    pub peer_config: Option<PeerConfig>,
    #[prost(message, repeated, tag = "3")]
    pub remote_peers: Vec<RemotePeerConfig>,
    /// Tells an empty peer list from an absent one (proto3 cannot).
    #[prost(bool, tag = "4")]
    pub remote_peers_is_empty: bool,
    #[prost(message, repeated, tag = "5")]
    pub routes: Vec<Route>,
    #[prost(message, optional, tag = "6")]
    pub dns_config: Option<DnsConfig>,
    // 7 offlinePeers: not connectable.
    /// Inbound access rules for this peer (`crate::filter`).
    #[prost(message, repeated, tag = "8")]
    pub firewall_rules: Vec<FirewallRule>,
    /// Tells "no rule: drop unsolicited inbound" from an old server that sends none (allow all).
    #[prost(bool, tag = "9")]
    pub firewall_rules_is_empty: bool,
    // 10, 11: routesFirewallRules (routing for others: out of scope); 12, 13: forwarding, SSH.
}

/// `FirewallRule`: one access rule, from the point of view of this peer.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FirewallRule {
    /// Deprecated by `source_prefixes`, still sent by older servers.
    #[prost(string, tag = "1")]
    pub peer_ip: String,
    #[prost(enumeration = "RuleDirection", tag = "2")]
    pub direction: i32,
    #[prost(enumeration = "RuleAction", tag = "3")]
    pub action: i32,
    #[prost(enumeration = "RuleProtocol", tag = "4")]
    pub protocol: i32,
    /// A single port as text, from servers older than `port_info`.
    #[prost(string, tag = "5")]
    pub port: String,
    #[prost(message, optional, tag = "6")]
    pub port_info: Option<PortInfo>,
    #[prost(bytes = "vec", tag = "7")]
    pub policy_id: Vec<u8>,
    #[prost(uint32, tag = "8")]
    pub custom_protocol: u32,
    /// `[ip bytes][prefix length]`: 5 bytes (IPv4) or 17 (IPv6); supersedes `peer_ip`.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub source_prefixes: Vec<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RuleDirection {
    In = 0,
    Out = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RuleAction {
    Accept = 0,
    Drop = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RuleProtocol {
    Unknown = 0,
    All = 1,
    Tcp = 2,
    Udp = 3,
    Icmp = 4,
    Custom = 5,
    NetbirdSsh = 6,
}

/// `PortInfo`: a port or a range (a `oneof`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PortInfo {
    #[prost(oneof = "PortSelection", tags = "1, 2")]
    pub port_selection: Option<PortSelection>,
}

#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum PortSelection {
    #[prost(uint32, tag = "1")]
    Port(u32),
    #[prost(message, tag = "2")]
    Range(PortRange),
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PortRange {
    #[prost(uint32, tag = "1")]
    pub start: u32,
    #[prost(uint32, tag = "2")]
    pub end: u32,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RemotePeerConfig {
    #[prost(string, tag = "1")]
    pub wg_pub_key: String,
    #[prost(string, repeated, tag = "2")]
    pub allowed_ips: Vec<String>,
    #[prost(string, tag = "4")]
    pub fqdn: String,
    #[prost(string, tag = "5")]
    pub agent_version: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Route {
    #[prost(string, tag = "1")]
    pub id: String,
    /// The routed prefix, e.g. `192.168.1.0/24` (empty for domain routes).
    #[prost(string, tag = "2")]
    pub network: String,
    /// The routing peer's WireGuard public key.
    #[prost(string, tag = "4")]
    pub peer: String,
    #[prost(int64, tag = "5")]
    pub metric: i64,
    /// The high-availability group: routes with the same NetID are one network.
    #[prost(string, tag = "7")]
    pub net_id: String,
    #[prost(string, repeated, tag = "8")]
    pub domains: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DnsConfig {
    #[prost(bool, tag = "1")]
    pub service_enable: bool,
    #[prost(message, repeated, tag = "2")]
    pub name_server_groups: Vec<NameServerGroup>,
    #[prost(message, repeated, tag = "3")]
    pub custom_zones: Vec<CustomZone>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NameServerGroup {
    #[prost(message, repeated, tag = "1")]
    pub name_servers: Vec<NameServer>,
    #[prost(bool, tag = "2")]
    pub primary: bool,
    #[prost(string, repeated, tag = "3")]
    pub domains: Vec<String>,
    #[prost(bool, tag = "4")]
    pub search_domains_enabled: bool,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NameServer {
    #[prost(string, tag = "1")]
    pub ip: String,
    #[prost(int64, tag = "2")]
    pub ns_type: i64,
    #[prost(int64, tag = "3")]
    pub port: i64,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CustomZone {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub records: Vec<SimpleRecord>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SimpleRecord {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "2")]
    pub r#type: i64,
    #[prost(string, tag = "3")]
    pub class: String,
    #[prost(int64, tag = "4")]
    pub ttl: i64,
    #[prost(string, tag = "5")]
    pub r_data: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn encrypted_message_uses_fields_1_2_3() {
        let msg = EncryptedMessage {
            wg_pub_key: "A".into(),
            body: vec![0xff],
            version: 1,
        };
        assert_eq!(hex(&msg.encode_to_vec()), ["0a0141", "1201ff", "1801"].concat());
    }

    /// Bytes derived by hand from management.proto's numbers: meta is field 2 of LoginRequest,
    /// netbirdVersion 7, uiVersion 8, syncMessageVersion 19 (0x98 0x01 as a tag).
    #[test]
    fn login_request_fields_carry_netbird_numbers() {
        let req = LoginRequest {
            setup_key: "k".into(),
            meta: Some(PeerSystemMeta {
                hostname: "h".into(),
                netbird_version: "v".into(),
                ui_version: "u".into(),
                sync_message_version: 1,
                ..Default::default()
            }),
            peer_keys: Some(PeerKeys {
                ssh_pub_key: vec![],
                wg_pub_key: b"w".to_vec(),
            }),
        };
        let expected = [
            "0a016b", // 1: setupKey "k"
            "120c",   // 2: meta, 12 bytes
            "0a0168", //   1: hostname "h"
            "3a0176", //   7: netbirdVersion "v"
            "420175", //   8: uiVersion "u"
            "980101", //   19: syncMessageVersion 1
            "2203", "120177", // 4: peerKeys { 2: "w" }
        ]
        .concat();
        assert_eq!(hex(&req.encode_to_vec()), expected);
    }

    /// Bytes derived by hand from management.proto: PeerIP 1, Direction 2, Action 3, Protocol 4,
    /// PortInfo 6 { port 1 }; NetworkMap's FirewallRules 8 (0x42), firewallRulesIsEmpty 9 (0x48).
    #[test]
    fn firewall_rules_carry_netbird_numbers() {
        let rule = FirewallRule {
            peer_ip: "a".into(),
            direction: RuleDirection::Out as i32,
            action: RuleAction::Drop as i32,
            protocol: RuleProtocol::Tcp as i32,
            port_info: Some(PortInfo {
                port_selection: Some(PortSelection::Port(22)),
            }),
            ..Default::default()
        };
        let rule_hex = ["0a0161", "1001", "1801", "2002", "3202", "0816"].concat();
        assert_eq!(hex(&rule.encode_to_vec()), rule_hex);
        let map = NetworkMap {
            firewall_rules: vec![rule],
            firewall_rules_is_empty: true,
            ..Default::default()
        };
        assert_eq!(hex(&map.encode_to_vec()), ["420d", &rule_hex, "4801"].concat());
    }

    #[test]
    fn network_map_decodes_serial_peers_and_routes() {
        let map = NetworkMap {
            serial: 7,
            remote_peers: vec![RemotePeerConfig {
                wg_pub_key: "k".into(),
                allowed_ips: vec!["100.64.0.2/32".into()],
                ..Default::default()
            }],
            routes: vec![Route {
                network: "10.1.0.0/16".into(),
                peer: "k".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = SyncResponse {
            network_map: Some(map.clone()),
            ..Default::default()
        }
        .encode_to_vec();
        // 0x2a = field 5 (NetworkMap), length-delimited; inside, 0x08 = field 1 (Serial).
        assert_eq!(&bytes[..1], &[0x2a]);
        assert_eq!(bytes.get(2), Some(&0x08));
        assert_eq!(SyncResponse::decode(&bytes[..]).unwrap().network_map, Some(map));
    }
}
