use std::net::IpAddr;
use std::time::Duration;

use super::flows::{TCP_ESTABLISHED_TIMEOUT, TCP_HANDSHAKE_TIMEOUT, UDP_TIMEOUT};
use super::header::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_SYN};
use super::*;
use crate::mgmt::proto::{self, PortInfo, PortRange, PortSelection, RuleAction, RuleDirection, RuleProtocol};

const ME: &str = "100.64.0.1";
const PEER: &str = "100.64.0.2";
const OTHER: &str = "100.64.0.3";
const ME6: &str = "fd00::1";
const PEER6: &str = "fd00::2";

#[test]
fn tcp_port_rule_admits_its_port_and_nothing_else() {
    let rules = set(vec![rule(PEER, RuleProtocol::Tcp, Some(port(22)))]);
    let f = PeerFilter::default();
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 40000, 22, TCP_SYN), t(0)),
        Verdict::Pass
    );
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 40000, 80, TCP_SYN), t(0)),
        Verdict::Drop(DropReason::NoRule)
    );
    assert_eq!(
        f.inbound(&rules, &udp(PEER, ME, 40000, 22), t(0)),
        Verdict::Drop(DropReason::NoRule)
    );
    assert_eq!(
        f.inbound(&rules, &tcp(OTHER, ME, 40000, 22, TCP_SYN), t(0)),
        Verdict::Drop(DropReason::NoRule),
        "the rule names its source"
    );
}

#[test]
fn port_range_is_inclusive_at_both_ends() {
    let rules = set(vec![rule(PEER, RuleProtocol::Udp, Some(range(1000, 1010)))]);
    let f = PeerFilter::default();
    let verdict = |f: &PeerFilter, p: u16| f.inbound(&rules, &udp(PEER, ME, 5000, p), t(0));
    assert_eq!(verdict(&f, 999), Verdict::Drop(DropReason::NoRule));
    assert_eq!(verdict(&f, 1000), Verdict::Pass);
    assert_eq!(verdict(&f, 1010), Verdict::Pass);
    assert_eq!(verdict(&f, 1011), Verdict::Drop(DropReason::NoRule));
}

#[test]
fn ipv6_rules_match_ipv6_sources() {
    let rules = set(vec![rule(PEER6, RuleProtocol::Udp, Some(port(53)))]);
    let f = PeerFilter::default();
    assert_eq!(f.inbound(&rules, &udp(PEER6, ME6, 5000, 53), t(0)), Verdict::Pass);
    assert_eq!(
        f.inbound(&rules, &udp(PEER, ME, 5000, 53), t(0)),
        Verdict::Drop(DropReason::NoRule)
    );
}

#[test]
fn wildcard_source_admits_every_peer_and_icmp_keeps_its_family() {
    let rules = set(vec![rule("0.0.0.0", RuleProtocol::Icmp, None)]);
    let f = PeerFilter::default();
    assert_eq!(f.inbound(&rules, &echo(PEER, ME, 8, 1), t(0)), Verdict::Pass);
    assert_eq!(f.inbound(&rules, &echo(OTHER, ME, 8, 1), t(0)), Verdict::Pass);
    assert_eq!(
        f.inbound(&rules, &echo(PEER6, ME6, 128, 1), t(0)),
        Verdict::Drop(DropReason::NoRule),
        "an IPv4 ICMP rule is not ICMPv6"
    );
}

#[test]
fn protocol_all_admits_every_protocol_from_its_source() {
    let rules = set(vec![rule(PEER, RuleProtocol::All, None)]);
    let f = PeerFilter::default();
    for packet in [
        tcp(PEER, ME, 1, 2, TCP_SYN),
        udp(PEER, ME, 1, 2),
        echo(PEER, ME, 8, 1),
        ip(PEER, ME, 47, &[0; 8]),
    ] {
        assert_eq!(f.inbound(&rules, &packet, t(0)), Verdict::Pass);
    }
}

#[test]
fn drop_rule_wins_over_accept_for_the_same_source() {
    let mut deny = rule(PEER, RuleProtocol::Tcp, Some(port(22)));
    deny.action = RuleAction::Drop as i32;
    let rules = set(vec![rule("0.0.0.0", RuleProtocol::All, None), deny]);
    let f = PeerFilter::default();
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 1, 22, TCP_SYN), t(0)),
        Verdict::Drop(DropReason::Denied)
    );
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 1, 23, TCP_SYN), t(0)),
        Verdict::Pass
    );
}

#[test]
fn an_old_server_without_rules_means_allow_all_and_an_empty_list_drops() {
    let old = RuleSet::from_map(&[], false);
    let empty = RuleSet::from_map(&[], true);
    let f = PeerFilter::default();
    assert_eq!(f.inbound(&old, &udp(PEER, ME, 1, 2), t(0)), Verdict::Pass);
    assert_eq!(
        f.inbound(&empty, &udp(PEER, ME, 1, 2), t(0)),
        Verdict::Drop(DropReason::NoRule)
    );
}

#[test]
fn outbound_rules_are_ignored_by_a_stateful_filter() {
    let mut out = rule(PEER, RuleProtocol::All, None);
    out.direction = RuleDirection::Out as i32;
    let rules = set(vec![out]);
    assert!(rules.is_empty());
    assert_eq!(rules.skipped, 0);
}

#[test]
fn icmp_errors_always_pass() {
    let rules = set(vec![]);
    let f = PeerFilter::default();
    assert_eq!(f.inbound(&rules, &echo(PEER, ME, 3, 0), t(0)), Verdict::Pass);
    assert_eq!(f.inbound(&rules, &echo(PEER6, ME6, 2, 0), t(0)), Verdict::Pass);
}

#[test]
fn replies_to_our_tcp_connection_pass_and_unsolicited_segments_do_not() {
    let rules = set(vec![]);
    let f = PeerFilter::default();
    assert!(matches!(
        f.outbound(&tcp(ME, PEER, 50000, 443, TCP_SYN), t(0)),
        Tracked::Yes { .. }
    ));
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 443, 50000, TCP_SYN | TCP_ACK), t(1)),
        Verdict::Pass
    );
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 443, 50001, TCP_ACK), t(1)),
        Verdict::Drop(DropReason::NoRule),
        "another port is another flow"
    );
    // Established: idle for almost three hours, still alive.
    let late = 1 + TCP_ESTABLISHED_TIMEOUT.as_secs() - 1;
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 443, 50000, TCP_ACK), t(late)),
        Verdict::Pass
    );
    let gone = late + TCP_ESTABLISHED_TIMEOUT.as_secs() + 1;
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 443, 50000, TCP_ACK), t(gone)),
        Verdict::Drop(DropReason::NoRule)
    );
}

#[test]
fn an_unanswered_syn_expires_after_the_handshake_timeout() {
    let rules = set(vec![]);
    let f = PeerFilter::default();
    f.outbound(&tcp(ME, PEER, 50000, 443, TCP_SYN), t(0));
    let after = TCP_HANDSHAKE_TIMEOUT.as_secs() + 1;
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 443, 50000, TCP_SYN | TCP_ACK), t(after)),
        Verdict::Drop(DropReason::NoRule)
    );
}

#[test]
fn a_closed_tcp_flow_lives_only_the_closing_timeout() {
    let rules = set(vec![]);
    let f = PeerFilter::default();
    f.outbound(&tcp(ME, PEER, 50000, 443, TCP_SYN), t(0));
    f.inbound(&rules, &tcp(PEER, ME, 443, 50000, TCP_SYN | TCP_ACK), t(0));
    f.outbound(&tcp(ME, PEER, 50000, 443, TCP_FIN | TCP_ACK), t(1));
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 443, 50000, TCP_ACK), t(30)),
        Verdict::Pass
    );
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 443, 50000, TCP_ACK), t(200)),
        Verdict::Drop(DropReason::NoRule)
    );
}

#[test]
fn udp_replies_pass_until_the_flow_is_idle_for_its_timeout() {
    let rules = set(vec![]);
    let f = PeerFilter::default();
    f.outbound(&udp(ME6, PEER6, 5353, 53), t(0));
    assert_eq!(
        f.inbound(&rules, &udp(PEER6, ME6, 53, 5353), t(10)),
        Verdict::Pass
    );
    // Each reply refreshes the flow.
    let still = 10 + UDP_TIMEOUT.as_secs();
    assert_eq!(
        f.inbound(&rules, &udp(PEER6, ME6, 53, 5353), t(still)),
        Verdict::Pass
    );
    let idle = still + UDP_TIMEOUT.as_secs() + 1;
    assert_eq!(
        f.inbound(&rules, &udp(PEER6, ME6, 53, 5353), t(idle)),
        Verdict::Drop(DropReason::NoRule)
    );
}

#[test]
fn echo_replies_pass_for_our_pings_only_v4_and_v6() {
    let rules = set(vec![]);
    let f = PeerFilter::default();
    f.outbound(&echo(ME, PEER, 8, 7), t(0));
    f.outbound(&echo(ME6, PEER6, 128, 7), t(0));
    assert_eq!(f.inbound(&rules, &echo(PEER, ME, 0, 7), t(1)), Verdict::Pass);
    assert_eq!(f.inbound(&rules, &echo(PEER6, ME6, 129, 7), t(1)), Verdict::Pass);
    assert_eq!(
        f.inbound(&rules, &echo(PEER, ME, 0, 8), t(1)),
        Verdict::Drop(DropReason::NoRule),
        "another identifier"
    );
    assert_eq!(
        f.inbound(&rules, &echo(PEER, ME, 8, 7), t(1)),
        Verdict::Drop(DropReason::NoRule),
        "a request from the peer is not a reply"
    );
    assert_eq!(
        f.inbound(&rules, &echo(PEER, ME, 0, 7), t(40)),
        Verdict::Drop(DropReason::NoRule),
        "ICMP flows expire after 30 s"
    );
}

#[test]
fn the_flow_table_stays_within_its_bound_under_a_flood() {
    let f = PeerFilter::new(16);
    let mut evicted = 0;
    for p in 0..1000u16 {
        if let Tracked::Yes { evicted: true } = f.outbound(&udp(ME, PEER, 10000 + p, 53), t(u64::from(p))) {
            evicted += 1;
        }
    }
    assert_eq!(f.flows(), 16);
    assert_eq!(evicted, 1000 - 16);
}

#[test]
fn a_busy_flow_is_settled_without_the_table_for_at_most_fresh() {
    let rules = set(vec![]);
    // A table of one flow: the second evicts the first.
    let f = PeerFilter::new(1);
    f.outbound(&udp(ME, PEER, 5000, 53), t(0));
    f.outbound(&udp(ME, PEER, 5001, 53), t(0));
    assert_eq!(f.flows(), 1);
    let reply = udp(PEER, ME, 53, 5000);
    assert_eq!(
        f.inbound(&rules, &reply, t(0) + Duration::from_millis(900)),
        Verdict::Pass,
        "confirmed by the table less than FRESH ago: no lock taken"
    );
    assert_eq!(
        f.inbound(&rules, &reply, t(0) + recent::FRESH),
        Verdict::Drop(DropReason::NoRule),
        "after FRESH the table decides, and it has evicted the flow"
    );
}

#[test]
fn recent_flows_know_only_what_was_confirmed_and_only_for_fresh() {
    let recent = RecentFlows::default();
    let key = |port| flows::FlowKey {
        proto: PROTO_UDP,
        local: addr(ME),
        remote: addr(PEER),
        local_port: port,
        remote_port: 53,
    };
    assert!(!recent.is_fresh(&key(1), t(0)), "nothing confirmed yet");
    recent.confirm(&key(1), t(0));
    assert!(recent.is_fresh(&key(1), t(0) + Duration::from_millis(999)));
    assert!(!recent.is_fresh(&key(2), t(0)), "another flow");
    assert!(!recent.is_fresh(&key(1), t(0) + recent::FRESH));
    let before = t(0).checked_sub(Duration::from_millis(1)).unwrap();
    assert!(
        !recent.is_fresh(&key(1), before),
        "a confirmation from the future"
    );
}

#[test]
fn new_rules_keep_established_flows() {
    let f = PeerFilter::default();
    f.outbound(&udp(ME, PEER, 5000, 9000), t(0));
    let allow = set(vec![rule(PEER, RuleProtocol::All, None)]);
    assert_eq!(f.inbound(&allow, &udp(PEER, ME, 9000, 5000), t(1)), Verdict::Pass);
    let none = set(vec![]);
    assert_eq!(f.inbound(&none, &udp(PEER, ME, 9000, 5000), t(2)), Verdict::Pass);
    assert_eq!(
        f.inbound(&none, &udp(PEER, ME, 9000, 5001), t(2)),
        Verdict::Drop(DropReason::NoRule)
    );
}

#[test]
fn malformed_rules_are_skipped_and_counted_and_the_rest_applied() {
    let bad_ip = rule("100.64.0.999", RuleProtocol::Tcp, Some(port(22)));
    let mut unknown_proto = rule(PEER, RuleProtocol::Tcp, None);
    unknown_proto.protocol = RuleProtocol::Custom as i32;
    let mut enum_garbage = rule(PEER, RuleProtocol::Tcp, None);
    enum_garbage.protocol = 99;
    let port_zero = rule(PEER, RuleProtocol::Tcp, Some(port(0)));
    let empty_range = rule(PEER, RuleProtocol::Udp, Some(range(2000, 1000)));
    let mut short_prefix = rule(PEER, RuleProtocol::Tcp, None);
    short_prefix.source_prefixes = vec![vec![100, 64, 0]];
    let mut text_port = rule(PEER, RuleProtocol::Tcp, None);
    text_port.port = "http".into();
    let good = rule(PEER, RuleProtocol::Tcp, Some(port(22)));
    let rules = set(vec![
        bad_ip,
        unknown_proto,
        enum_garbage,
        port_zero,
        empty_range,
        short_prefix,
        text_port,
        good,
    ]);
    assert_eq!(rules.skipped, 7);
    assert_eq!(rules.len(), 1);
    let f = PeerFilter::default();
    assert_eq!(
        f.inbound(&rules, &tcp(PEER, ME, 1, 22, TCP_SYN), t(0)),
        Verdict::Pass
    );
}

#[test]
fn typed_errors_name_what_is_wrong() {
    let mut r = rule(PEER, RuleProtocol::Udp, Some(range(0, 10)));
    assert_eq!(rules::parse(&r), Err(RuleError::Range { start: 0, end: 10 }));
    r.port_info = None;
    r.protocol = RuleProtocol::NetbirdSsh as i32;
    assert_eq!(rules::parse(&r), Err(RuleError::Protocol(6)));
    r.protocol = RuleProtocol::Udp as i32;
    r.peer_ip = "nope".into();
    assert_eq!(rules::parse(&r), Err(RuleError::Address("nope".into())));
}

#[test]
fn source_prefixes_supersede_peer_ip_v4_and_v6() {
    let mut r = rule("0.0.0.0", RuleProtocol::Tcp, Some(port(22)));
    r.source_prefixes = vec![vec![100, 64, 0, 2, 32]];
    let v4 = rules::parse(&r).unwrap().unwrap();
    assert_eq!(v4.source, Some(addr(PEER)));
    let mut six: Vec<u8> = match addr(PEER6) {
        IpAddr::V6(a) => a.octets().to_vec(),
        IpAddr::V4(_) => unreachable!(),
    };
    six.push(128);
    r.source_prefixes = vec![six];
    let v6 = rules::parse(&r).unwrap().unwrap();
    assert_eq!((v6.source, v6.v6), (Some(addr(PEER6)), true));
    r.source_prefixes = vec![vec![100, 64, 0, 2, 33]];
    assert!(rules::parse(&r).is_err(), "a /33 is no IPv4 prefix");
}

#[test]
fn garbage_inbound_is_dropped_as_malformed_and_garbage_outbound_is_not_tracked() {
    let rules = set(vec![]);
    let f = PeerFilter::default();
    for garbage in [&[][..], &[0x45, 0, 0], &[0x60; 20], &[0x10; 40]] {
        assert_eq!(
            f.inbound(&rules, garbage, t(0)),
            Verdict::Drop(DropReason::Malformed),
            "{garbage:02x?}"
        );
        assert_eq!(f.outbound(garbage, t(0)), Tracked::No);
    }
}

#[test]
fn later_fragments_pass_without_a_transport_header() {
    let rules = set(vec![]);
    let f = PeerFilter::default();
    let mut frag = udp(PEER, ME, 1, 2);
    frag[7] = 0x10; // fragment offset 16 (x8 bytes)
    assert_eq!(f.inbound(&rules, &frag, t(0)), Verdict::Pass);
}

// --- helpers ---

fn t(secs: u64) -> Instant {
    Instant::from_epoch(Duration::from_secs(1_000) + Duration::from_secs(secs))
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn set(rules: Vec<proto::FirewallRule>) -> RuleSet {
    RuleSet::from_map(&rules, rules.is_empty())
}

fn rule(peer: &str, protocol: RuleProtocol, port_info: Option<PortInfo>) -> proto::FirewallRule {
    proto::FirewallRule {
        peer_ip: peer.into(),
        direction: RuleDirection::In as i32,
        action: RuleAction::Accept as i32,
        protocol: protocol as i32,
        port_info,
        ..Default::default()
    }
}

fn port(p: u32) -> PortInfo {
    PortInfo {
        port_selection: Some(PortSelection::Port(p)),
    }
}

fn range(start: u32, end: u32) -> PortInfo {
    PortInfo {
        port_selection: Some(PortSelection::Range(PortRange { start, end })),
    }
}

/// An IP packet around `l4`; checksums are not filled in (the filter reads none).
fn ip(src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (addr(src), addr(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + l4.len()).unwrap().to_be_bytes();
            let mut p = vec![0x45, 0, total[0], total[1], 0, 0, 0, 0, 64, proto, 0, 0];
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(l4);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = u16::try_from(l4.len()).unwrap().to_be_bytes();
            let mut p = vec![0x60, 0, 0, 0, len[0], len[1], proto, 64];
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(l4);
            p
        }
        _ => panic!("mixed families"),
    }
}

fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut l4 = [0u8; 20];
    l4[..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[12] = 5 << 4;
    l4[13] = flags;
    ip(src, dst, PROTO_TCP, &l4)
}

fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = [0u8; 12];
    l4[..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..6].copy_from_slice(&12u16.to_be_bytes());
    ip(src, dst, PROTO_UDP, &l4)
}

/// ICMP (or ICMPv6, by the addresses) of `kind` with echo identifier `id`.
fn echo(src: &str, dst: &str, kind: u8, id: u16) -> Vec<u8> {
    let mut l4 = [0u8; 8];
    l4[0] = kind;
    l4[4..6].copy_from_slice(&id.to_be_bytes());
    let proto = if addr(src).is_ipv6() {
        PROTO_ICMPV6
    } else {
        PROTO_ICMP
    };
    ip(src, dst, proto, &l4)
}
