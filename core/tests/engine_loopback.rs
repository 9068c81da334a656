//! Two real engines over loopback UDP, each on a socketpair tun.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

mod common;

use std::net::IpAddr;

use common::{pair, WAIT};
use peerlink_core::packet::{echo_reply_to, icmp_echo_request, parse_echo, udp};
use peerlink_core::path::PathKind;
use peerlink_core::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_and_ipv6_packets_of_every_size_cross_both_ways() {
    let (a, b) = pair(false);
    let mtu = 1280usize;
    let mut sent_by_a = 0u64;
    for (src, dst, from, to, header) in [
        (a.v4, b.v4, &a, &b, 28usize),
        (b.v4, a.v4, &b, &a, 28),
        (a.v6, b.v6, &a, &b, 48),
        (b.v6, a.v6, &b, &a, 48),
    ] {
        for total in (header..=mtu).step_by(7).chain([mtu]) {
            let payload = vec![(total % 251) as u8; total - header];
            let packet = udp(src, dst, 4000, 5000, &payload).unwrap();
            assert_eq!(packet.len(), total);
            from.os.send(&packet).await.unwrap();
            sent_by_a += u64::from(src == a.v4 || src == a.v6);
            let got = to.recv_matching(|p| p.len() == total).await;
            assert_eq!(got, packet, "{src} -> {dst}, {total} bytes");
        }
    }
    let sa = a.engine.status();
    let peer = &sa.peers[0];
    assert!(peer.is_connected(), "{peer:#?}");
    assert_eq!(peer.active_path, Some(PathKind::Direct));
    assert_eq!(peer.counters.tx_packets, sent_by_a, "{peer:#?}");
    assert_eq!(
        peer.counters.rx_packets, sent_by_a,
        "b sent as many packets back: {peer:#?}"
    );
    assert_eq!(
        peer.counters.rejected + peer.counters.spoofed_source + peer.counters.send_failed,
        0
    );
    a.engine.stop().await;
    b.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responder_without_endpoint_learns_it_and_replies() {
    let (a, b) = pair(false);
    let mut events = b.engine.subscribe();
    let req = icmp_echo_request(a.v4, b.v4, 1, 1, 32).unwrap();
    a.os.send(&req).await.unwrap();
    let got = b.recv_matching(|p| parse_echo(p).is_some()).await;
    b.os.send(&echo_reply_to(&got).unwrap()).await.unwrap();
    let reply = a.recv_matching(|p| parse_echo(p).is_some_and(|e| e.reply)).await;
    assert_eq!(parse_echo(&reply).unwrap().seq, 1);
    let mut saw = (false, false);
    while let Ok(Ok(e)) = tokio::time::timeout(std::time::Duration::from_millis(10), events.recv()).await {
        match e {
            Event::HandshakeCompleted { .. } => saw.0 = true,
            Event::PathChanged {
                kind: Some(PathKind::Direct),
                ..
            } => saw.1 = true,
            _ => {}
        }
    }
    assert!(saw.1, "b learned a's endpoint by roaming and announced the path");
    let status = b.engine.status();
    assert_eq!(
        status.peers[0].remote.as_deref(),
        Some(a.engine.listen_addr().to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_destination_is_dropped_and_counted() {
    let (a, b) = pair(true);
    let stray: IpAddr = "10.200.0.1".parse().unwrap();
    a.os.send(&icmp_echo_request(a.v4, stray, 1, 1, 8).unwrap())
        .await
        .unwrap();
    // The next packet to a real peer proves the first was processed (the tun is read in order).
    a.os.send(&icmp_echo_request(a.v4, b.v4, 1, 2, 8).unwrap())
        .await
        .unwrap();
    b.recv_matching(|p| parse_echo(p).is_some_and(|e| e.seq == 2))
        .await;
    assert_eq!(a.engine.status().drops.no_route, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_source_is_dropped_and_counted() {
    let (a, b) = pair(true);
    let spoofed: IpAddr = "10.99.0.77".parse().unwrap();
    a.os.send(&icmp_echo_request(spoofed, b.v4, 1, 1, 8).unwrap())
        .await
        .unwrap();
    a.os.send(&icmp_echo_request(a.v4, b.v4, 1, 2, 8).unwrap())
        .await
        .unwrap();
    let got = b.recv_matching(|p| parse_echo(p).is_some()).await;
    assert_eq!(
        parse_echo(&got).unwrap().seq,
        2,
        "the spoofed packet must not reach the tun"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.engine.status().peers[0].counters.spoofed_source == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spoof not counted: {:#?}",
            b.engine.status()
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(b.engine.status().peers[0].counters.spoofed_source, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_tun_moves_traffic_to_the_new_device() {
    let (mut a, b) = pair(true);
    a.os.send(&icmp_echo_request(a.v4, b.v4, 1, 1, 8).unwrap())
        .await
        .unwrap();
    b.recv_matching(|p| parse_echo(p).is_some()).await;
    let (engine_end, os_end) = peerlink_core::tun::packet_socketpair().unwrap();
    use peerlink_core::tun::{FdOwnership, Framing, Tun};
    a.engine
        .set_tun(Tun::from_fd(engine_end, Framing::RawIp, FdOwnership::Owned).unwrap());
    let old_os = std::mem::replace(
        &mut a.os,
        Tun::from_fd(os_end, Framing::RawIp, FdOwnership::Owned).unwrap(),
    );
    // Out through the new tun, back in through it.
    a.os.send(&icmp_echo_request(a.v4, b.v4, 1, 2, 8).unwrap())
        .await
        .unwrap();
    let req = b
        .recv_matching(|p| parse_echo(p).is_some_and(|e| e.seq == 2))
        .await;
    b.os.send(&echo_reply_to(&req).unwrap()).await.unwrap();
    a.recv_matching(|p| parse_echo(p).is_some_and(|e| e.reply && e.seq == 2))
        .await;
    assert_eq!(
        a.engine.status().peers[0].counters.rx_packets,
        1,
        "the reply came in on the new tun"
    );
    drop(old_os);
}

/// b enforces "UDP 5000 from a only": a reaches it and nothing else, while the replies to
/// what b starts itself come back; each drop is counted by reason, and new rules keep b's flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_rules_drop_unsolicited_inbound_and_pass_replies_to_our_flows() {
    use peerlink_core::filter::RuleSet;
    use peerlink_core::mgmt::proto::{FirewallRule, RuleProtocol};
    let (a, b) = pair(false);
    let allow_udp_5000 = FirewallRule {
        peer_ip: a.v4.to_string(),
        protocol: RuleProtocol::Udp as i32,
        port: "5000".into(),
        ..Default::default()
    };
    b.engine
        .set_firewall_rules(Some(RuleSet::from_map(&[allow_udp_5000], false)));
    let to_b = |dport: u16, tag: u8| udp(a.v4, b.v4, 4000, dport, &[tag; 8]).unwrap();

    a.os.send(&to_b(5000, 1)).await.unwrap();
    b.recv_matching(|p| p.ends_with(&[1; 8])).await;
    // Refused: another port, then a ping; the allowed packet after them proves both were seen
    // (one peer's packets are handled in order).
    a.os.send(&to_b(6000, 2)).await.unwrap();
    a.os.send(&icmp_echo_request(a.v4, b.v4, 9, 1, 8).unwrap())
        .await
        .unwrap();
    a.os.send(&to_b(5000, 3)).await.unwrap();
    let got = b
        .recv_matching(|p| p.ends_with(&[3; 8]) || p.ends_with(&[2; 8]))
        .await;
    assert!(got.ends_with(&[3; 8]), "UDP 6000 must not reach b");

    // b's own flow to a: a's reply passes though no rule names it, also after new rules.
    b.os.send(&udp(b.v4, a.v4, 7000, 8000, &[4; 8]).unwrap())
        .await
        .unwrap();
    a.recv_matching(|p| p.ends_with(&[4; 8])).await;
    b.engine.set_firewall_rules(Some(RuleSet::from_map(&[], true)));
    a.os.send(&udp(a.v4, b.v4, 8000, 7000, &[5; 8]).unwrap())
        .await
        .unwrap();
    b.recv_matching(|p| p.ends_with(&[5; 8])).await;

    let c = b.engine.status().peers[0].counters;
    assert_eq!(
        (c.filter_no_rule, c.filter_denied, c.filter_malformed),
        (2, 0, 0),
        "{c:#?}"
    );
    assert!(b.engine.status().to_string().contains("filtered: 2 without rule"));
    a.engine.stop().await;
    b.engine.stop().await;
}

/// Without management and without rules set, nothing is filtered (the app's own peers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rules_every_inbound_packet_passes() {
    let (a, b) = pair(false);
    a.os.send(&udp(a.v4, b.v4, 1, 6000, &[6; 8]).unwrap())
        .await
        .unwrap();
    b.recv_matching(|p| p.ends_with(&[6; 8])).await;
    assert_eq!(b.engine.status().peers[0].counters.filter_no_rule, 0);
}
