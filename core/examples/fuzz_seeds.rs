//! Writes the fuzz targets' seed corpus: real encoded messages of each kind, made with the
//! engine's own encoders, so that the fuzzer starts from what the network sends.
//!
//!     cargo run -p peerlink-core --features fuzzing --example fuzz_seeds -- fuzz/corpus

use std::net::IpAddr;
use std::path::Path;

use boringtun::noise::{Tunn, TunnResult};
use peerlink_core::fuzzing::{ENGINE_KEY, PEER_KEY};
use peerlink_core::mgmt::proto::{
    DnsConfig, FirewallRule, HostConfig, LoginResponse, NetbirdConfig, NetworkMap, PeerConfig, PortInfo,
    PortRange, PortSelection, ProtectedHostConfig, RelayConfig, RemotePeerConfig, Route, SyncResponse,
};
use peerlink_core::relay::messages::{self, PeerId, PeerListKind};
use peerlink_core::relay::RelayToken;
use peerlink_core::signal::{IceCredentials, OfferAnswer, SessionId, SignalMessage};
use peerlink_core::{packet, PrivateKey};
use prost::Message as _;

fn main() -> std::io::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".to_owned());
    let out = Path::new(&out);
    let mut seeds = Seeds { out, count: 0 };
    signal(&mut seeds)?;
    relay(&mut seeds)?;
    ice(&mut seeds)?;
    ip(&mut seeds)?;
    filter(&mut seeds)?;
    mgmt(&mut seeds)?;
    udp(&mut seeds)?;
    config(&mut seeds)?;
    conn(&mut seeds)?;
    println!("{} seeds written under {}", seeds.count, out.display());
    Ok(())
}

struct Seeds<'a> {
    out: &'a Path,
    count: usize,
}

impl Seeds<'_> {
    fn put(&mut self, target: &str, name: &str, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        let dir = self.out.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        self.count += 1;
        Ok(())
    }
}

const HOST: &str = "1052353102 1 udp 2130706431 192.168.1.2 51820 typ host";
const SRFLX: &str = "2130706431 1 udp 1694498815 203.0.113.5 40000 typ srflx raddr 0.0.0.0 rport 40000";
const RELAYED: &str = "1 1 udp 16777215 198.51.100.9 3478 typ relay raddr 203.0.113.5 rport 40000";
const V6: &str = "candidate:3 1 UDP 2130706431 2001:db8::5 51820 typ host generation 0";

fn offer() -> OfferAnswer {
    OfferAnswer {
        ice: Some(IceCredentials {
            ufrag: "AbCdEfGhIjKlMnOp".into(),
            pwd: "QrStUvWxYzAbCdEfGhIjKlMnOpQrStUv".into(),
        }),
        wg_listen_port: 51820,
        version: "0.77.1".into(),
        relay_server_address: Some("rels://relay.example:443".into()),
        relay_server_ip: Some(IpAddr::from([192, 0, 2, 7])),
        session_id: Some(SessionId([1, 2, 3, 4, 5])),
    }
}

fn signal(s: &mut Seeds) -> std::io::Result<()> {
    let messages = [
        ("offer", SignalMessage::Offer(offer())),
        (
            "answer",
            SignalMessage::Answer(OfferAnswer { ice: None, ..offer() }),
        ),
        ("candidate", SignalMessage::Candidate(SRFLX.into())),
        ("mode", SignalMessage::Mode { direct: Some(true) }),
        ("go_idle", SignalMessage::GoIdle),
        ("heartbeat", SignalMessage::Heartbeat),
    ];
    for (name, m) in messages {
        s.put("signal_body", name, m.to_body().encode_to_vec())?;
    }
    s.put(
        "signal_body",
        "credentials",
        "AbCdEfGhIjKlMnOp:QrStUvWxYzAbCdEfGhIjKlMnOpQrStUv",
    )?;
    let sealed = peerlink_core::signal::seal::seal(
        &PrivateKey::from_bytes([9; 32]),
        &PrivateKey::from_bytes([8; 32]).public_key(),
        &SignalMessage::Heartbeat.to_body().encode_to_vec(),
    );
    s.put("signal_body", "sealed", sealed)
}

fn relay(s: &mut Seeds) -> std::io::Result<()> {
    let a = PeerId::of(&PrivateKey::from_bytes([1; 32]).public_key());
    let b = PeerId::of(&PrivateKey::from_bytes([2; 32]).public_key());
    let token = RelayToken::mint("secret", 1_900_000_000);
    let frames = [
        (
            "auth",
            messages::encode_auth(&a, token.as_bytes()).map(|b| b.to_vec()),
        ),
        (
            "auth_response",
            Ok(messages::encode_auth_response("rels://relay.example:443").to_vec()),
        ),
        (
            "transport",
            messages::encode_transport(&b, b"\x04\0\0\0payload").map(|b| b.to_vec()),
        ),
        ("health", Ok(messages::encode_health_check().to_vec())),
        ("close", Ok(messages::encode_close().to_vec())),
    ];
    for (name, frame) in frames {
        let Ok(frame) = frame else { continue };
        s.put("relay_frame", name, frame)?;
    }
    for kind in [PeerListKind::Subscribe, PeerListKind::Online] {
        if let Some(list) = messages::encode_peer_list(kind, &[a, b]).first() {
            s.put("relay_frame", &format!("{kind:?}").to_lowercase(), list)?;
        }
    }
    let (payload, signature) = RelayToken::management_pair("secret", 1_900_000_000);
    s.put("relay_frame", "token", format!("{payload}\n{signature}"))?;
    s.put("relay_frame", "url", "rel://[2001:db8::1]:33080/relay")
}

fn ice(s: &mut Seeds) -> std::io::Result<()> {
    s.put("ice_candidate", "host", HOST)?;
    s.put("ice_candidate", "srflx", SRFLX)?;
    s.put("ice_candidate", "relay", RELAYED)?;
    s.put(
        "ice_candidate",
        "session",
        [HOST, SRFLX, RELAYED, V6, HOST].join("\n"),
    )
}

/// Packets between the rig's peer (10.98.0.2, fd98::2) and the engine (10.98.0.1, fd98::1).
fn packets() -> Vec<(&'static str, Vec<u8>)> {
    let (peer4, own4): (IpAddr, IpAddr) = ([10, 98, 0, 2].into(), [10, 98, 0, 1].into());
    let peer6: IpAddr = "fd98::2".parse().unwrap_or(peer4);
    let own6: IpAddr = "fd98::1".parse().unwrap_or(own4);
    let mut tcp = packet::udp(peer4, own4, 40000, 22, &[0; 20]).unwrap_or_default();
    // The UDP packet made TCP: protocol 6, a SYN in a 20-byte header (checksums unchecked).
    for (at, value) in [(9, 6), (32, 0x50), (33, 0x02)] {
        if let Some(byte) = tcp.get_mut(at) {
            *byte = value;
        }
    }
    vec![
        (
            "echo4",
            packet::icmp_echo_request(peer4, own4, 7, 1, 56).unwrap_or_default(),
        ),
        (
            "echo6",
            packet::icmp_echo_request(peer6, own6, 7, 1, 56).unwrap_or_default(),
        ),
        (
            "udp4_dns",
            packet::udp(peer4, own4, 5353, 53, b"query").unwrap_or_default(),
        ),
        (
            "udp6",
            packet::udp(peer6, own6, 4000, 4001, b"data").unwrap_or_default(),
        ),
        ("tcp_syn", tcp),
        (
            "to_peer4",
            packet::udp(own4, peer4, 4000, 4001, b"out").unwrap_or_default(),
        ),
    ]
}

fn ip(s: &mut Seeds) -> std::io::Result<()> {
    for (name, p) in packets() {
        s.put("ip_packet", name, p)?;
    }
    Ok(())
}

fn rules() -> Vec<FirewallRule> {
    let rule = |protocol: i32, action: i32, port_info: Option<PortInfo>| FirewallRule {
        direction: 0,
        action,
        protocol,
        port_info,
        source_prefixes: vec![vec![10, 98, 0, 0, 24]],
        ..FirewallRule::default()
    };
    let port = |p| {
        Some(PortInfo {
            port_selection: Some(PortSelection::Port(p)),
        })
    };
    let range = Some(PortInfo {
        port_selection: Some(PortSelection::Range(PortRange {
            start: 1000,
            end: 2000,
        })),
    });
    vec![
        rule(2, 0, port(22)),
        rule(3, 1, port(53)),
        rule(3, 0, range),
        rule(4, 0, None),
        FirewallRule {
            peer_ip: "fd98::2".into(),
            protocol: 1,
            ..FirewallRule::default()
        },
    ]
}

fn prefixed(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
    out
}

fn filter(s: &mut Seeds) -> std::io::Result<()> {
    let map = NetworkMap {
        firewall_rules: rules(),
        ..NetworkMap::default()
    };
    let mut seed = prefixed(&map.encode_to_vec());
    for (i, (_, p)) in packets().into_iter().enumerate() {
        let flag = if i % 2 == 0 { 0x80 } else { 0 };
        seed.extend(prefixed(&[&[flag][..], &p].concat()));
    }
    s.put("filter", "rules_and_packets", seed)?;
    let empty = NetworkMap {
        firewall_rules_is_empty: true,
        ..NetworkMap::default()
    };
    let (_, echo) = packets().remove(0);
    let mut deny_all = prefixed(&empty.encode_to_vec());
    deny_all.extend(prefixed(&[&[0x80][..], &echo].concat()));
    s.put("filter", "deny_all", deny_all)
}

fn mgmt(s: &mut Seeds) -> std::io::Result<()> {
    let (payload, signature) = RelayToken::management_pair("secret", 1_900_000_000);
    let config = NetbirdConfig {
        stuns: vec![HostConfig {
            uri: "stun:stun.example.internal:3478".into(),
            protocol: 0,
        }],
        turns: vec![ProtectedHostConfig {
            host_config: Some(HostConfig {
                uri: "turn:turn.example.internal:3478?transport=udp".into(),
                protocol: 0,
            }),
            user: "user".into(),
            password: "pass".into(),
        }],
        signal: Some(HostConfig {
            uri: "signal.example.internal:10000".into(),
            protocol: 1,
        }),
        relay: Some(RelayConfig {
            urls: vec!["rels://relay.example.internal:443".into()],
            token_payload: payload,
            token_signature: signature,
        }),
    };
    let peer = |n: u8, ip: &str| RemotePeerConfig {
        wg_pub_key: PrivateKey::from_bytes([n; 32]).public_key().to_base64(),
        allowed_ips: vec![ip.into()],
        fqdn: format!("peer{n}.netbird.cloud"),
        agent_version: "0.77.1".into(),
    };
    let map = NetworkMap {
        serial: 7,
        peer_config: Some(PeerConfig {
            address: "100.64.0.1/16".into(),
            fqdn: "me.netbird.cloud".into(),
            mtu: 1280,
        }),
        remote_peers: vec![peer(2, "100.64.0.2/32"), peer(3, "100.64.0.3/32")],
        routes: vec![Route {
            id: "r1".into(),
            network: "192.168.10.0/24".into(),
            peer: PrivateKey::from_bytes([2; 32]).public_key().to_base64(),
            metric: 9999,
            net_id: "lan".into(),
            ..Route::default()
        }],
        dns_config: Some(DnsConfig {
            service_enable: true,
            ..DnsConfig::default()
        }),
        firewall_rules: rules(),
        ..NetworkMap::default()
    };
    let sync = SyncResponse {
        netbird_config: Some(config.clone()),
        network_map: Some(map),
    };
    s.put("mgmt", "sync", sync.encode_to_vec())?;
    let login = LoginResponse {
        netbird_config: Some(config),
        peer_config: None,
    };
    s.put("mgmt", "login", login.encode_to_vec())?;
    let empty = SyncResponse {
        netbird_config: None,
        network_map: Some(NetworkMap {
            serial: 8,
            remote_peers_is_empty: true,
            firewall_rules_is_empty: true,
            ..NetworkMap::default()
        }),
    };
    s.put("mgmt", "empty_map", empty.encode_to_vec())
}

/// Real WireGuard messages from the rig's peer to its engine (`udp_demux`'s first byte: 0 for
/// the engine's socket, 2 for a packet the peer seals).
fn udp(s: &mut Seeds) -> std::io::Result<()> {
    let engine = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(ENGINE_KEY));
    let mut peer = Tunn::new(
        x25519_dalek::StaticSecret::from(PEER_KEY),
        engine,
        None,
        None,
        7,
        None,
    );
    let mut out = vec![0u8; 2048];
    if let TunnResult::WriteToNetwork(init) = peer.format_handshake_initiation(&mut out, false) {
        s.put("udp_demux", "handshake_init", [&[0][..], init].concat())?;
    }
    s.put("udp_demux", "netbird_punch", b"\0nb")?;
    // A data message's header for a session index nobody has, and a cookie reply's size.
    s.put(
        "udp_demux",
        "data_unknown_index",
        [&[0u8, 4, 0, 0, 0, 1, 0, 0, 0][..], &[0; 40]].concat(),
    )?;
    s.put(
        "udp_demux",
        "cookie_reply",
        [&[0u8, 3, 0, 0, 0][..], &[0; 60]].concat(),
    )?;
    for (name, p) in packets().into_iter().take(3) {
        s.put("udp_demux", &format!("sealed_{name}"), [&[2][..], &p].concat())?;
    }
    Ok(())
}

fn config(s: &mut Seeds) -> std::io::Result<()> {
    let own = PrivateKey::from_bytes([1; 32]).to_base64();
    let peer = PrivateKey::from_bytes([2; 32]).public_key().to_base64();
    let direct = format!(
        "interface = \"pl0\"\nprivate_key = \"{own}\"\naddresses = [\"100.64.0.1/24\", \"fd64::1/64\"]\n\
         listen_port = 51820\nmtu = 1280\n\n[[peers]]\npublic_key = \"{peer}\"\n\
         allowed_ips = [\"100.64.0.2/32\", \"fd64::2/128\"]\nendpoint = \"192.0.2.2:51820\"\n\
         persistent_keepalive = 25\n"
    );
    s.put("config", "direct", &direct)?;
    let servers = format!(
        "private_key = \"{own}\"\naddresses = [\"100.64.0.1/24\"]\n\n[signal]\n\
         url = \"http://signal.example.internal:10000\"\n\n[relay]\n\
         urls = [\"rel://relay.example.internal:33080\"]\nsecret = \"s\"\n\n[ice]\n\
         stun = [\"stun:stun.example.internal:3478\"]\n\n[[peers]]\npublic_key = \"{peer}\"\n\
         allowed_ips = [\"100.64.0.2/32\"]\n"
    );
    s.put("config", "servers", &servers)?;
    let management = format!(
        "private_key = \"{own}\"\n\n[management]\nurl = \"https://management.example.internal:443\"\n\
         setup_key = \"A1B2C3D4-0000-0000-0000-000000000000\"\nhostname = \"phone\"\n"
    );
    s.put("config", "management", management)
}

/// Event sequences for `conn_peer`, in `arbitrary`'s encoding: a u64 seed, the role, then
/// events (a byte picks the kind, `Run` takes a step count).
fn conn(s: &mut Seeds) -> std::io::Result<()> {
    let head = |controlling: u8| [&7u64.to_le_bytes()[..], &[controlling]].concat();
    // ICE connects, its path drops all WireGuard, the relay takes over, the fault clears.
    let ice_fault = [head(1), vec![0, 40, 1, 0, 0, 40, 1, 0, 0, 200]].concat();
    s.put("conn_peer", "ice_fault", ice_fault)?;
    // Offline for a while, the peer restarts ICE, the device sleeps.
    let weather = [head(0), vec![0, 40, 1, 60, 0, 20, 1, 70, 0, 40, 14, 0, 16, 0, 80]].concat();
    s.put("conn_peer", "weather", weather)?;
    // Relay events and a remote go-idle on whatever paths exist.
    let events = [
        head(1),
        vec![0, 20, 9, 0, 8, 0, 10, 1, 7, 0, 3, 4, 12, 13, 0, 100],
    ]
    .concat();
    s.put("conn_peer", "path_events", events)
}
