//! Two engines that know only each other's keys find each other through an in-process signal
//! hub, negotiate ICE (host candidates on loopback) and carry WireGuard over it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

mod common;

use std::time::Duration;

use common::{peer, spec, Node, WAIT};
use peerlink_core::packet::{icmp_echo_request, parse_echo};
use peerlink_core::path::PathKind;
use peerlink_core::signal::SignalHub;
use peerlink_core::tun::Tun;
use peerlink_core::{Engine, EngineSpec, IceSpec, PrivateKey};

fn ice_spec() -> IceSpec {
    IceSpec {
        interfaces: Some(vec!["lo".into()]),
        ..Default::default()
    }
}

fn start(spec: EngineSpec, hub: &SignalHub) -> (Engine, Tun) {
    common::start_with(spec, Some(hub))
}

fn node(n: u8, own: &PrivateKey, other: &PrivateKey, other_n: u8, hub: &SignalHub) -> Node {
    let mut s = spec(own, n);
    s.peers.push(peer(other, other_n, None));
    s.ice = Some(ice_spec());
    s.signal = Some(peerlink_core::SignalSpec {
        url: "http://unused.invalid".into(),
        ca_pem: None,
    });
    let (engine, os) = start(s, hub);
    Node {
        engine,
        os,
        key: own.clone(),
        v4: format!("10.99.0.{n}").parse().unwrap(),
        v6: format!("fd99::{n}").parse().unwrap(),
    }
}

async fn wait_for_path(node: &Node, kind: PathKind) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut events = node.engine.subscribe();
    while node.engine.status().peers[0].active_path != Some(kind) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind} path: {:#?}",
            node.engine.status()
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), events.recv()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_endpoints_connect_over_ice_through_signal() {
    let hub = SignalHub::new();
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let a = node(1, &ka, &kb, 2, &hub);
    let b = node(2, &kb, &ka, 1, &hub);
    wait_for_path(&a, PathKind::IceP2p).await;
    wait_for_path(&b, PathKind::IceP2p).await;
    for (from, to, seq) in [(&a, &b, 1u16), (&b, &a, 2)] {
        from.ping(to, seq).await;
    }
    let s = a.engine.status();
    assert!(s.peers[0].is_connected(), "{s:#?}");
    assert_eq!(s.peers[0].active_path, Some(PathKind::IceP2p), "{s:#?}");
    eprintln!("{s}");
    a.engine.stop().await;
    b.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_from_strangers_and_bad_seals_is_counted_and_does_not_disturb_the_peers() {
    use peerlink_core::ice::IceCredentials;
    use peerlink_core::signal::proto::EncryptedMessage;
    use peerlink_core::signal::{seal, OfferAnswer, SignalMessage};
    use prost::Message as _;
    let hub = SignalHub::new();
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let a = node(1, &ka, &kb, 2, &hub);
    // A key that is not a configured peer floods `a` with offers and candidates.
    let (stranger, _inbox) = hub.connect(PrivateKey::generate());
    let offer = OfferAnswer {
        ice: Some(IceCredentials::generate()),
        wg_listen_port: 1,
        version: "x".into(),
        relay_server_address: None,
        relay_server_ip: None,
        session_id: None,
    };
    for _ in 0..50 {
        stranger
            .send(ka.public_key(), SignalMessage::Offer(offer.clone()))
            .await
            .unwrap();
        stranger
            .send(ka.public_key(), SignalMessage::Candidate("garbage".into()))
            .await
            .unwrap();
    }
    // Bodies sealed with the wrong key: one in the stranger's name for someone else, one in
    // the configured peer's name by a key that is not the peer's (an impersonation).
    let body = SignalMessage::Offer(offer.clone()).to_body().encode_to_vec();
    for (claimed, sealer) in [
        (stranger.public_key(), PrivateKey::generate()),
        (kb.public_key(), PrivateKey::generate()),
    ] {
        for _ in 0..10 {
            hub.send_raw(EncryptedMessage {
                key: claimed.to_base64(),
                remote_key: ka.public_key().to_base64(),
                body: seal::seal(&sealer, &ka.public_key(), &body),
            });
        }
    }
    let counted = |s: &peerlink_core::EngineStatus| {
        s.signal_unknown_senders >= 50 && s.signal_counters.is_some_and(|c| c.dropped_unopenable == 20)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !counted(&a.engine.status()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "strangers and bad seals not counted: {:#?}",
            a.engine.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // status has no change event to wait on
    }
    let text = a.engine.status().to_string();
    assert!(
        text.contains("from unknown senders, 20 unopenable"),
        "status text: {text}"
    );
    let b = node(2, &kb, &ka, 1, &hub);
    wait_for_path(&a, PathKind::IceP2p).await;
    wait_for_path(&b, PathKind::IceP2p).await;
    a.os.send(&icmp_echo_request(a.v4, b.v4, 3, 9, 32).unwrap())
        .await
        .unwrap();
    b.recv_matching(|p| parse_echo(p).is_some_and(|e| e.seq == 9))
        .await;
    assert_eq!(
        a.engine.status().peers.len(),
        1,
        "the stranger did not become a peer"
    );
    a.engine.stop().await;
    b.engine.stop().await;
}
