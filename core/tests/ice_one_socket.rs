//! One UDP socket per engine (DESIGN 2): however many peers run ICE sessions, an engine holds
//! exactly one UDP socket, its host candidates carry its WireGuard port, and the P2P pair's
//! WireGuard goes over that socket. Alone in its test binary, so the process's sockets are
//! these engines' only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{peer, spec, Node, WAIT};
use peerlink_core::path::PathKind;
use peerlink_core::signal::SignalHub;
use peerlink_core::{IceSpec, PrivateKey};

/// Engines that peer with A: A runs one ICE session per peer, all on its one socket.
const SPOKES: u8 = 5;

fn node(n: u8, own: &PrivateKey, others: &[(PrivateKey, u8)], hub: &SignalHub) -> Node {
    let mut s = spec(own, n);
    for (key, m) in others {
        s.peers.push(peer(key, *m, None));
    }
    s.ice = Some(IceSpec {
        interfaces: Some(vec!["lo".into()]),
        ..Default::default()
    });
    s.signal = Some(peerlink_core::SignalSpec {
        url: "http://unused.invalid".into(),
        ca_pem: None,
    });
    let (engine, os) = common::start_with(s, Some(hub));
    Node::new(engine, os, own.clone(), n)
}

/// The UDP sockets this process holds: its descriptors' socket inodes that the kernel lists
/// as UDP.
fn udp_sockets() -> usize {
    let mut udp_inodes = HashSet::new();
    for table in ["/proc/self/net/udp", "/proc/self/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // Column 10 is the inode.
            if let Some(inode) = line.split_whitespace().nth(9) {
                udp_inodes.insert(inode.to_owned());
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|link| {
            let s = link.to_string_lossy().into_owned();
            Some(s.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .filter(|inode| udp_inodes.contains(inode))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_runs_wireguard_ice_and_every_peers_session_on_one_udp_socket() {
    if !std::path::Path::new("/proc/self/net/udp").exists() {
        common::lab::skip("no /proc/self/net/udp (not Linux)");
        return;
    }
    let hub = SignalHub::new();
    let ka = PrivateKey::generate();
    let spoke_keys: Vec<(PrivateKey, u8)> = (0..SPOKES).map(|i| (PrivateKey::generate(), 2 + i)).collect();
    let a = node(1, &ka, &spoke_keys, &hub);
    let spokes: Vec<Node> = spoke_keys
        .iter()
        .map(|(k, n)| node(*n, k, &[(ka.clone(), 1)], &hub))
        .collect();

    // Every session of A connects, each pair's remote being that spoke's WireGuard socket
    // (host candidates carry the WireGuard port).
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    let mut events = a.engine.subscribe();
    let all_p2p =
        |s: &peerlink_core::EngineStatus| s.peers.iter().all(|p| p.active_path == Some(PathKind::IceP2p));
    while !all_p2p(&a.engine.status()) {
        assert!(tokio::time::Instant::now() < deadline, "{:#?}", a.engine.status());
        let _ = tokio::time::timeout(Duration::from_millis(200), events.recv()).await;
    }
    let status = a.engine.status();
    for spoke in &spokes {
        let to = status
            .peers
            .iter()
            .find(|p| p.public_key == spoke.key.public_key())
            .unwrap();
        assert_eq!(
            to.remote,
            Some(spoke.engine.status().listen_addr.to_string()),
            "{status:#?}"
        );
    }

    // WireGuard over one of them, both ways.
    let b = &spokes[0];
    for (from, to, seq) in [(&a, b, 1u16), (b, &a, 2)] {
        from.ping(to, seq).await;
    }

    // Six engines, ten ICE sessions between them: six UDP sockets.
    assert_eq!(
        udp_sockets(),
        usize::from(SPOKES) + 1,
        "one UDP socket per engine"
    );
    a.engine.stop().await;
    for s in spokes {
        s.engine.stop().await;
    }
}
