//! Memory budgets (issue 14): writing to one peer faster than its path drains costs a bounded
//! amount of memory, and the other peers keep flowing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

mod common;

use common::{peer, spec, start, Node};
use peerlink_core::packet::icmp_echo_request;
use peerlink_core::PrivateKey;

/// Packets written to the blackholed peer: far more than any of its queues holds (boringtun's
/// 256 during a handshake, one held datagram without a path).
const FLOOD: u32 = 60_000;
/// After this many the queues are full and the allocator has its working set.
const WARM: u32 = 10_000;
/// Bytes of each flooding packet: a full 1280-byte MTU.
const PAYLOAD: usize = 1280 - 28;
/// The growth allowed between the warm-up and the end: all of one peer's queues (≈ 0.7 MiB,
/// `engine::budget::PEER_PACKET_BYTES`) twice over; a leak of one buffer per packet would be
/// 60 MiB.
const MAX_GROWTH_KIB: u64 = 2048;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

async fn ping(from: &Node, to: &Node, seq: u16) {
    from.ping(to, seq).await;
}

/// A has two peers: B, alive, and C, whose endpoint is a socket nobody reads (a blackholed
/// path: C never answers a handshake, so everything for it queues or drops). The app floods C;
/// memory stays flat after the queues fill, and pings to B are answered throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_written_faster_than_its_path_drains_costs_bounded_memory_and_others_flow() {
    let (ka, kb, kc) = (
        PrivateKey::generate(),
        PrivateKey::generate(),
        PrivateKey::generate(),
    );
    let blackhole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (b_engine, b_os) = start(spec(&kb, 2));
    let mut sa = spec(&ka, 1);
    sa.peers.push(peer(&kb, 2, Some(b_engine.listen_addr())));
    sa.peers.push(peer(&kc, 3, Some(blackhole.local_addr().unwrap())));
    let (a_engine, a_os) = start(sa);
    let mut sb = spec(&kb, 2);
    sb.peers.push(peer(&ka, 1, Some(a_engine.listen_addr())));
    b_engine.update_peers(sb.validate().unwrap().peers);
    let a = Node::new(a_engine, a_os, ka, 1);
    let b = Node::new(b_engine, b_os, kb, 2);
    let c_ip = "10.99.0.3".parse().unwrap();
    ping(&a, &b, 0).await;

    let packet = icmp_echo_request(a.v4, c_ip, 6, 1, PAYLOAD).unwrap();
    let mut rss_warm = 0;
    let mut pings = 0u16;
    for i in 1..=FLOOD {
        a.os.send(&packet).await.unwrap();
        if i == WARM {
            rss_warm = rss_kib();
        }
        if i % 2000 == 0 {
            pings += 1;
            ping(&a, &b, pings).await;
        }
    }
    ping(&a, &b, pings + 1).await;
    let rss_end = rss_kib();
    let s = a.engine.status();
    let c = s.peers.iter().find(|p| p.public_key == kc.public_key()).unwrap();
    eprintln!(
        "{FLOOD} packets to a blackholed peer: RSS {rss_warm} KiB after {WARM}, {rss_end} KiB at the end; {} pings to the live peer answered; blackholed peer: {:?}",
        pings + 1,
        c.counters
    );
    assert!(c.last_handshake.is_none(), "the blackholed peer answered? {c:#?}");
    assert_eq!(c.counters.tx_packets, u64::from(FLOOD), "{c:#?}");
    assert!(
        rss_end.saturating_sub(rss_warm) <= MAX_GROWTH_KIB,
        "RSS grew {rss_warm} -> {rss_end} KiB"
    );
    a.engine.stop().await;
    b.engine.stop().await;
}
