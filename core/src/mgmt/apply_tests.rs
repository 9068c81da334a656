use super::*;
use crate::keys::PrivateKey;
use proto::{HostConfig, RelayConfig, RemotePeerConfig, Route};

fn key() -> PublicKey {
    PrivateKey::generate().public_key()
}

fn peer(k: &PublicKey, ips: &[&str]) -> RemotePeerConfig {
    RemotePeerConfig {
        wg_pub_key: k.to_base64(),
        allowed_ips: ips.iter().map(|s| s.to_string()).collect(),
        fqdn: "p.netbird.selfhosted".into(),
        ..Default::default()
    }
}

fn config() -> NetbirdConfig {
    NetbirdConfig {
        stuns: vec![HostConfig {
            uri: "stun:10.0.0.1:3478".into(),
            protocol: HostProtocol::Udp as i32,
        }],
        turns: vec![],
        signal: Some(HostConfig {
            uri: "10.0.0.1:80".into(),
            protocol: HostProtocol::Http as i32,
        }),
        relay: Some(RelayConfig {
            urls: vec!["rel://10.0.0.1:80/relay".into()],
            token_payload: "p".into(),
            token_signature: "s".into(),
        }),
    }
}

fn map(serial: u64, peers: Vec<RemotePeerConfig>) -> NetworkMap {
    NetworkMap {
        serial,
        peer_config: Some(proto::PeerConfig {
            address: "100.64.0.5/16".into(),
            fqdn: "me.netbird.selfhosted".into(),
            ..Default::default()
        }),
        remote_peers_is_empty: peers.is_empty(),
        remote_peers: peers,
        ..Default::default()
    }
}

fn sync(config: Option<NetbirdConfig>, map: Option<NetworkMap>) -> SyncResponse {
    SyncResponse {
        netbird_config: config,
        network_map: map,
    }
}

fn keys_of(delta: &Delta) -> Vec<PublicKey> {
    delta
        .peers
        .as_ref()
        .map(|p| p.iter().map(|p| p.public_key).collect())
        .unwrap_or_default()
}

#[test]
fn first_sync_gives_interface_peers_and_servers() {
    let (own, a) = (key(), key());
    let mut state = NetworkState::default();

    let delta = state.apply(
        &sync(Some(config()), Some(map(1, vec![peer(&a, &["100.64.0.6/32"])]))),
        &own,
        &HashSet::new(),
    );

    let interface = delta.interface.clone().expect("interface");
    assert_eq!(interface.addresses, vec!["100.64.0.5/16".parse().unwrap()]);
    assert_eq!(interface.mtu, DEFAULT_MTU);
    assert_eq!(keys_of(&delta), vec![a]);
    let servers = delta.servers.clone().expect("servers");
    assert_eq!(servers.signal.unwrap().url, "http://10.0.0.1:80");
    assert_eq!(servers.ice.stun, vec!["stun:10.0.0.1:3478".to_owned()]);
    let relay = servers.relay.unwrap();
    assert_eq!(relay.token_payload.as_deref(), Some("p"));
    assert_eq!(delta.names.clone().unwrap()[0].fqdn, "p.netbird.selfhosted");
    assert_eq!(delta.skipped, 0);
}

#[test]
fn an_older_map_is_ignored_and_an_equal_serial_changes_nothing() {
    let (own, a, b) = (key(), key(), key());
    let mut state = NetworkState::default();
    state.apply(
        &sync(None, Some(map(5, vec![peer(&a, &["100.64.0.6/32"])]))),
        &own,
        &HashSet::new(),
    );

    let older = state.apply(
        &sync(None, Some(map(4, vec![peer(&b, &["100.64.0.7/32"])]))),
        &own,
        &HashSet::new(),
    );
    let same = state.apply(
        &sync(None, Some(map(5, vec![peer(&a, &["100.64.0.6/32"])]))),
        &own,
        &HashSet::new(),
    );

    assert!(older.stale_map && older.is_empty(), "{older:?}");
    assert!(!same.stale_map && same.is_empty(), "{same:?}");
    assert_eq!(state.serial, Some(5));
}

#[test]
fn a_config_only_update_changes_only_what_it_carries() {
    let (own, a) = (key(), key());
    let mut state = NetworkState::default();
    state.apply(
        &sync(Some(config()), Some(map(1, vec![peer(&a, &["100.64.0.6/32"])]))),
        &own,
        &HashSet::new(),
    );
    let mut refreshed = config();
    refreshed.relay = Some(RelayConfig {
        token_payload: "p2".into(),
        token_signature: "s2".into(),
        ..refreshed.relay.unwrap()
    });

    let delta = state.apply(&sync(Some(refreshed), None), &own, &HashSet::new());

    let servers = delta.servers.clone().expect("the new token");
    assert_eq!(servers.relay.unwrap().token_payload.as_deref(), Some("p2"));
    assert!(
        delta.peers.is_none() && delta.interface.is_none() && delta.dns.is_none(),
        "{delta:?}"
    );
    assert_eq!(state.serial, Some(1));
}

#[test]
fn empty_stun_and_turn_lists_keep_the_previous_ones() {
    let own = key();
    let mut state = NetworkState::default();
    let mut with_turn = config();
    with_turn.turns = vec![proto::ProtectedHostConfig {
        host_config: Some(HostConfig {
            uri: "turn:10.0.0.1:3478?transport=udp".into(),
            protocol: 0,
        }),
        user: "u".into(),
        password: "pw".into(),
    }];
    state.apply(&sync(Some(with_turn), None), &own, &HashSet::new());
    let mut empty = config();
    empty.stuns.clear();
    empty.turns.clear();

    let delta = state.apply(&sync(Some(empty), None), &own, &HashSet::new());

    assert!(delta.servers.is_none(), "nothing changed: {delta:?}");
    assert_eq!(state.servers.ice.stun.len(), 1);
    assert_eq!(state.servers.ice.turn[0].credential, "pw");
}

#[test]
fn a_missing_relay_section_disables_relay() {
    let own = key();
    let mut state = NetworkState::default();
    state.apply(&sync(Some(config()), None), &own, &HashSet::new());
    let mut without = config();
    without.relay = None;

    let delta = state.apply(&sync(Some(without), None), &own, &HashSet::new());

    let servers = delta.servers.expect("a change");
    assert!(servers.relay.is_none());
    assert!(servers.signal.is_some() && !servers.ice.stun.is_empty());
}

#[test]
fn malformed_allowed_ips_and_duplicate_keys_are_skipped_and_counted() {
    let (own, a, b) = (key(), key(), key());
    let mut state = NetworkState::default();
    let peers = vec![
        peer(&a, &["100.64.0.6/32", "100.64.0.300/32", "not a prefix"]),
        peer(&a, &["100.64.0.9/32"]),
        RemotePeerConfig {
            wg_pub_key: "garbage".into(),
            ..Default::default()
        },
        peer(&own, &["100.64.0.5/32"]),
        peer(&b, &["100.64.0.6/32", "100.64.0.7/32"]),
    ];

    let delta = state.apply(&sync(None, Some(map(1, peers))), &own, &HashSet::new());

    let peers = delta.peers.expect("the valid peers");
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert_eq!(peers[0].public_key, a);
    assert_eq!(peers[0].allowed_ips, vec!["100.64.0.6/32".parse().unwrap()]);
    assert_eq!(
        peers[1].allowed_ips,
        vec!["100.64.0.7/32".parse().unwrap()],
        "a's prefix stays a's"
    );
    // Two bad prefixes, one duplicate, one bad key, ourselves, one prefix of another peer.
    assert_eq!(delta.skipped, 6);
}

#[test]
fn a_map_without_peers_keeps_them_and_an_empty_flag_removes_them() {
    let (own, a) = (key(), key());
    let mut state = NetworkState::default();
    state.apply(
        &sync(None, Some(map(1, vec![peer(&a, &["100.64.0.6/32"])]))),
        &own,
        &HashSet::new(),
    );
    let mut silent = map(2, vec![]);
    silent.remote_peers_is_empty = false;

    let kept = state.apply(&sync(None, Some(silent)), &own, &HashSet::new());
    let removed = state.apply(&sync(None, Some(map(3, vec![]))), &own, &HashSet::new());

    assert!(kept.peers.is_none(), "{kept:?}");
    assert_eq!(removed.peers.map(|p| p.len()), Some(0));
}

#[test]
fn a_routed_network_becomes_an_allowed_ip_of_its_connected_routing_peer() {
    let (own, a, b) = (key(), key(), key());
    let mut state = NetworkState::default();
    let mut m = map(
        1,
        vec![peer(&a, &["100.64.0.6/32"]), peer(&b, &["100.64.0.7/32"])],
    );
    let route = |p: &PublicKey, metric| Route {
        id: "r".into(),
        network: "192.168.50.0/24".into(),
        peer: p.to_base64(),
        metric,
        net_id: "lan".into(),
        ..Default::default()
    };
    // a has the better metric, but only b is connected.
    m.routes = vec![route(&a, 1), route(&b, 9)];

    let delta = state.apply(&sync(None, Some(m)), &own, &HashSet::from([b]));

    let peers = delta.peers.expect("peers");
    let lan: IpNet = "192.168.50.0/24".parse().unwrap();
    assert!(!peers[0].allowed_ips.contains(&lan));
    assert!(peers[1].allowed_ips.contains(&lan));
    assert!(
        peers[1].always_on && !peers[0].always_on,
        "the routing peer stays connected"
    );
    assert_eq!(delta.interface.expect("interface").routes, vec![lan]);
}

#[test]
fn without_a_connected_routing_peer_the_lowest_metric_wins() {
    let (own, a, b) = (key(), key(), key());
    let mut state = NetworkState::default();
    let mut m = map(
        1,
        vec![peer(&a, &["100.64.0.6/32"]), peer(&b, &["100.64.0.7/32"])],
    );
    let route = |p: &PublicKey, metric| Route {
        network: "10.9.0.0/16".into(),
        peer: p.to_base64(),
        metric,
        ..Default::default()
    };
    m.routes = vec![
        route(&a, 5),
        route(&b, 1),
        Route {
            network: "bad".into(),
            peer: a.to_base64(),
            ..Default::default()
        },
    ];

    let delta = state.apply(&sync(None, Some(m)), &own, &HashSet::new());

    let peers = delta.peers.expect("peers");
    assert!(peers[1].allowed_ips.contains(&"10.9.0.0/16".parse().unwrap()));
    assert_eq!(delta.skipped, 1);
}

#[test]
fn dns_settings_change_once() {
    let own = key();
    let mut state = NetworkState::default();
    let mut m = map(1, vec![]);
    m.dns_config = Some(proto::DnsConfig {
        service_enable: true,
        name_server_groups: vec![proto::NameServerGroup {
            name_servers: vec![proto::NameServer {
                ip: "100.64.0.1".into(),
                ns_type: 1,
                port: 0,
            }],
            primary: true,
            domains: vec![],
            search_domains_enabled: false,
        }],
        custom_zones: vec![proto::CustomZone {
            domain: "netbird.selfhosted".into(),
            records: vec![proto::SimpleRecord {
                name: "p.netbird.selfhosted".into(),
                r#type: 1,
                class: "IN".into(),
                ttl: 300,
                r_data: "100.64.0.6".into(),
            }],
        }],
    });

    let first = state.apply(&sync(None, Some(m.clone())), &own, &HashSet::new());
    m.serial = 2;
    let again = state.apply(&sync(None, Some(m)), &own, &HashSet::new());

    let dns = first.dns.expect("dns");
    assert_eq!(dns.servers, vec!["100.64.0.1:53".to_owned()]);
    assert_eq!(
        dns.records,
        vec![("p.netbird.selfhosted".to_owned(), "100.64.0.6".to_owned())]
    );
    assert!(again.dns.is_none());
}

#[test]
fn unusable_servers_are_skipped_and_the_signal_url_gets_its_scheme() {
    let own = key();
    let mut state = NetworkState::default();
    let mut c = config();
    c.signal = Some(HostConfig {
        uri: "signal.example:443".into(),
        protocol: HostProtocol::Https as i32,
    });
    c.stuns.push(HostConfig {
        uri: "stuns:10.0.0.1:5349".into(),
        protocol: 0,
    });
    c.turns = vec![proto::ProtectedHostConfig {
        host_config: Some(HostConfig {
            uri: "turn:10.0.0.1:3478?transport=tcp".into(),
            protocol: 1,
        }),
        ..Default::default()
    }];

    let delta = state.apply(&sync(Some(c), None), &own, &HashSet::new());

    let servers = delta.servers.expect("servers");
    assert_eq!(servers.signal.unwrap().url, "https://signal.example:443");
    assert_eq!(servers.ice.stun.len(), 1);
    assert!(servers.ice.turn.is_empty());
    assert_eq!(delta.skipped, 2);
}

#[test]
fn firewall_rules_arrive_with_a_map_once_and_bad_ones_are_counted() {
    let own = key();
    let mut state = NetworkState::default();
    let good = proto::FirewallRule {
        peer_ip: "100.64.0.2".into(),
        protocol: proto::RuleProtocol::Tcp as i32,
        port: "22".into(),
        ..Default::default()
    };
    let bad = proto::FirewallRule {
        peer_ip: "not an ip".into(),
        protocol: proto::RuleProtocol::Tcp as i32,
        ..Default::default()
    };
    let mut m = map(1, vec![]);
    m.firewall_rules = vec![good.clone(), bad];
    let delta = state.apply(&sync(None, Some(m.clone())), &own, &HashSet::new());
    let rules = delta.firewall.expect("the first map's rules");
    assert_eq!((rules.len(), rules.skipped, rules.allow_all), (1, 1, false));
    assert_eq!(delta.skipped, 1);

    m.serial = 2;
    let delta = state.apply(&sync(None, Some(m.clone())), &own, &HashSet::new());
    assert!(delta.firewall.is_none(), "unchanged rules are not applied again");
    assert_eq!(delta.skipped, 0);

    // An older server sends no rule and no "empty" flag: everything is allowed.
    m.serial = 3;
    m.firewall_rules.clear();
    let delta = state.apply(&sync(None, Some(m)), &own, &HashSet::new());
    assert!(delta.firewall.expect("changed").allow_all);
}
