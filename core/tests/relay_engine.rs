//! The Path contract end to end: two real engines, no UDP endpoints, WireGuard over NetBird's
//! relay server. An IP packet written to one tun comes out of the other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

mod common;
mod relay_support;

use std::net::Ipv4Addr;

use peerlink_core::path::PathKind;
use peerlink_core::relay::{ClientOptions, RelayClient};
use peerlink_core::tun::{packet_socketpair, FdOwnership, Framing, Tun};
use peerlink_core::{Engine, EngineOptions, EngineSpec, Event, PeerSpec, PrivateKey};
use relay_support::{init_tracing, token, NbRelay, WAIT};

struct Node {
    engine: Engine,
    os: Tun,
    key: PrivateKey,
    ip: Ipv4Addr,
}

fn node(key: PrivateKey, n: u8, peer: &PrivateKey, peer_n: u8) -> Node {
    let spec = EngineSpec {
        private_key: key.to_base64(),
        addresses: vec![format!("10.77.0.{n}/24")],
        peers: vec![PeerSpec {
            public_key: peer.public_key().to_base64(),
            allowed_ips: vec![format!("10.77.0.{peer_n}/32")],
            ..Default::default()
        }],
        ..Default::default()
    };
    let (engine_end, os_end) = packet_socketpair().unwrap();
    let tun = Tun::from_fd(engine_end, Framing::RawIp, FdOwnership::Owned).unwrap();
    let os = Tun::from_fd(os_end, Framing::RawIp, FdOwnership::Owned).unwrap();
    let options = EngineOptions {
        listen_ip: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    };
    let engine = Engine::start(spec.validate().unwrap(), tun, options).unwrap();
    Node {
        engine,
        os,
        key,
        ip: Ipv4Addr::new(10, 77, 0, n),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_packet_crosses_wireguard_over_the_real_relay_both_ways() {
    init_tracing();
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let a = node(ka.clone(), 1, &kb, 2);
    let b = node(kb.clone(), 2, &ka, 1);
    let ra = RelayClient::connect(&relay.url(), ClientOptions::new(a.key.public_key(), token()))
        .await
        .unwrap();
    let rb = RelayClient::connect(&relay.url(), ClientOptions::new(b.key.public_key(), token()))
        .await
        .unwrap();
    let (ida, idb) = (a.engine.new_path_id(), b.engine.new_path_id());
    let (pa, pb) = tokio::join!(
        ra.open_peer(b.key.public_key(), a.engine.inbound(), ida),
        rb.open_peer(a.key.public_key(), b.engine.inbound(), idb)
    );
    let mut events = a.engine.subscribe();
    a.engine
        .attach_path(&b.key.public_key(), ida, pa.unwrap())
        .unwrap();
    b.engine
        .attach_path(&a.key.public_key(), idb, pb.unwrap())
        .unwrap();
    let changed = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Event::PathChanged { kind, remote, .. }) = events.recv().await {
                return (kind, remote);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(changed, (Some(PathKind::Relay), Some(relay.url().to_string())));

    let ping = udp4(a.ip, b.ip, 4000, 5000, b"over the relay");
    a.os.send(&ping).await.unwrap();
    assert_eq!(recv(&b.os).await, ping, "a -> b through WireGuard and the relay");
    let pong = udp4(b.ip, a.ip, 5000, 4000, &[7u8; 1200]);
    b.os.send(&pong).await.unwrap();
    assert_eq!(recv(&a.os).await, pong, "b -> a");

    let status = a.engine.status();
    let peer = &status.peers[0];
    assert_eq!(peer.active_path, Some(PathKind::Relay), "{peer:#?}");
    assert!(
        ra.counters().transport_out >= 2,
        "handshake and data went through the relay: {:?}",
        ra.counters()
    );
    a.engine.stop().await;
    b.engine.stop().await;
}

async fn recv(tun: &Tun) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let got = tokio::time::timeout(WAIT, tun.recv(&mut buf))
        .await
        .expect("packet within WAIT")
        .unwrap()
        .unwrap();
    got.to_vec()
}

/// A minimal IPv4/UDP packet with a valid header checksum (UDP checksum 0: none).
fn udp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp_len = (8 + payload.len()) as u16;
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
