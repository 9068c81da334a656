//! peerlink's relay client against NetBird's own relay server (and NetBird's Go relay client),
//! all on loopback. Skipped (`common::lab::skip`) when the NetBird binaries are not built.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

mod common;
mod relay_support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::lab::require_tool;
use common::pki::TestPki;
use peerlink_core::conn::ConnSetup;
use peerlink_core::path::{Path, PathError, PathId};
use peerlink_core::relay::RelayUrl;
use peerlink_core::relay::{
    ClientOptions, DisconnectReason, PathCloseReason, RelayClient, RelayError, RelayEvent, RelayManager,
    RelayManagerConfig, RelayState, RelayToken,
};
use peerlink_core::socket::SocketFactory;
use peerlink_core::{EngineSpec, PrivateKey, RelaySpec};
use relay_support::*;
use tokio::sync::{mpsc, watch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_exchange_transport_both_ways_up_to_1400_bytes() {
    init_tracing();
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let mut a = peer(&relay.url()).await;
    let mut b = peer(&relay.url()).await;
    assert_eq!(
        a.client.instance_url(),
        relay.url().as_str(),
        "AuthResponse carries the -e address"
    );
    let (a_to_b, b_to_a) = tokio::join!(a.open(b.key, 1), b.open(a.key, 2));
    let sizes: Vec<usize> = (1..=1400).step_by(13).chain([1400]).collect();
    for &len in &sizes {
        a_to_b.send(&payload(len, 1)).unwrap();
        let got = b.recv().await;
        assert_eq!((got.peer, got.path), (a.key, PathId(2)));
        assert_eq!(got.datagram, payload(len, 1), "a -> b, {len} bytes");
        b_to_a.send(&payload(len, 2)).unwrap();
        let got = a.recv().await;
        assert_eq!((got.peer, got.path), (b.key, PathId(1)));
        assert_eq!(got.datagram, payload(len, 2), "b -> a, {len} bytes");
    }
    for p in [&a, &b] {
        let c = p.client.counters();
        assert_eq!(
            (c.transport_in, c.transport_out),
            (sizes.len() as u64, sizes.len() as u64),
            "{c:?}"
        );
        assert_eq!(c.refused_input(), 0, "{c:?}");
        assert_eq!(p.protector.count(), 1, "one protected socket per connection");
    }
    assert_eq!(a_to_b.kind(), peerlink_core::path::PathKind::Relay);
    assert_eq!(a_to_b.remote(), relay.url().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_delivered_in_order_and_the_queue_reports_congestion() {
    init_tracing();
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let a = peer(&relay.url()).await;
    let mut b = peer(&relay.url()).await;
    let (a_to_b, _b_to_a) = tokio::join!(a.open(b.key, 1), b.open(a.key, 2));
    let mut sent = Vec::new();
    let mut congested = 0;
    for n in 0..2000u32 {
        match a_to_b.send(&n.to_be_bytes()) {
            Ok(()) => sent.push(n),
            Err(PathError::Congested) => congested += 1,
            Err(e) => panic!("send: {e}"),
        }
    }
    for &n in &sent {
        assert_eq!(b.recv().await.datagram, n.to_be_bytes().to_vec());
    }
    assert_eq!(a.client.counters().congested, congested);
    println!(
        "burst of 2000 without yielding: {} queued, {congested} congested",
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_sent_before_the_receiver_opens_is_held_and_delivered() {
    init_tracing();
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let a = peer(&relay.url()).await;
    let mut b = peer(&relay.url()).await;
    let a_to_b = a.open(b.key, 1).await;
    a_to_b.send(b"handshake initiation").unwrap();
    wait_until("b holds a's packet", || b.client.counters().held == 1).await;
    let _b_to_a = b.open(a.key, 2).await;
    let got = b.recv().await;
    assert_eq!(
        (got.peer, got.path, &got.datagram[..]),
        (a.key, PathId(2), &b"handshake initiation"[..])
    );
    assert_eq!(b.client.counters().held_delivered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_an_absent_peer_times_out_with_a_typed_error() {
    init_tracing();
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let mut options = ClientOptions::new(PrivateKey::generate().public_key(), token());
    options.open_timeout = Duration::from_millis(300);
    let client = RelayClient::connect(&relay.url(), options).await.unwrap();
    let absent = PrivateKey::generate().public_key();
    let (sink, _rx) = mpsc::channel(4);
    let err = client
        .open_peer(absent, sink.clone(), PathId(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RelayError::PeerNotOnline { peer, .. } if peer == absent),
        "{err}"
    );
    assert_eq!(client.peer_count(), 0, "the failed open released its slot");
    // The same peer can be tried again, and a second open of an open peer is refused.
    let b = peer(&relay.url()).await;
    let path = client.open_peer(b.key, sink.clone(), PathId(2)).await.unwrap();
    let again = client
        .open_peer(b.key, sink.clone(), PathId(3))
        .await
        .unwrap_err();
    assert!(matches!(again, RelayError::PeerAlreadyOpen { .. }), "{again}");
    path.close();
    assert_eq!(client.peer_count(), 0);
    client
        .open_peer(b.key, sink, PathId(4))
        .await
        .expect("reopens after close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_going_offline_closes_its_path_and_is_reported() {
    init_tracing();
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let mut a = peer(&relay.url()).await;
    let b = peer(&relay.url()).await;
    let (a_to_b, _b_to_a) = tokio::join!(a.open(b.key, 7), b.open(a.key, 8));
    let b_key = b.key;
    b.client.close().await;
    drop(b);
    let e = wait_event(&mut a.events, "PeerOffline", |e| {
        matches!(e, RelayEvent::PeerOffline { .. })
    })
    .await;
    assert!(matches!(e, RelayEvent::PeerOffline { peer, .. } if peer == b_key));
    let e = wait_event(&mut a.events, "PathClosed", |e| {
        matches!(e, RelayEvent::PathClosed { .. })
    })
    .await;
    assert!(
        matches!(
            e,
            RelayEvent::PathClosed {
                id: PathId(7),
                reason: PathCloseReason::PeerOffline,
                ..
            }
        ),
        "{e:?}"
    );
    tokio::time::timeout(WAIT, a_to_b.closed())
        .await
        .expect("path reports closed");
    assert!(matches!(a_to_b.send(b"x"), Err(PathError::Closed)));
    assert!(
        a.client.is_connected(),
        "the connection and other peers keep working"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrongly_signed_token_is_refused_with_a_typed_error() {
    init_tracing();
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let token = RelayToken::mint("not-the-relay-secret", relay_token_expiry(3600));
    let err = RelayClient::connect(
        &relay.url(),
        ClientOptions::new(PrivateKey::generate().public_key(), token),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RelayError::AuthRejected { .. }), "{err}");
    assert!(err.is_auth());
    println!("{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_with_a_typed_error() {
    init_tracing();
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let token = RelayToken::mint(SECRET, relay_token_expiry(0) - 60);
    let err = RelayClient::connect(
        &relay.url(),
        ClientOptions::new(PrivateKey::generate().public_key(), token),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RelayError::TokenExpired { .. }), "{err}");
    println!("{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_does_not_storm_and_a_new_token_connects_at_once() {
    init_tracing();
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let protector = Arc::new(CountingProtector::default());
    let expired = RelayToken::mint(SECRET, relay_token_expiry(0) - 60);
    let mut config = RelayManagerConfig::new(PrivateKey::generate().public_key(), vec![relay.url()], expired);
    config.sockets = SocketFactory::new(Some(protector.clone()));
    let manager = RelayManager::start(config);
    let mut state = manager.state();
    let failed = wait_state(&mut state, "Failed", |s| matches!(s, RelayState::Failed { .. })).await;
    assert!(
        matches!(
            &failed,
            RelayState::Failed {
                error: RelayError::TokenExpired { .. },
                failures: 1
            }
        ),
        "{failed:?}"
    );
    let seen_failures = failures_for_5s(&mut state, |e| matches!(e, RelayError::TokenExpired { .. })).await;
    let attempts = protector.count();
    println!(
        "refused token: {attempts} connection attempts in the first 5 s, {seen_failures} failures reported"
    );
    assert!(
        (1..=3).contains(&attempts),
        "{attempts} attempts in 5 s is a storm"
    );
    assert_eq!(attempts, seen_failures as usize);
    // A fresh token: the manager retries at once instead of waiting out its backoff.
    let asked = tokio::time::Instant::now();
    manager.set_token(token()).await;
    let s = wait_state(&mut state, "Connected", |s| {
        matches!(s, RelayState::Connected { .. })
    })
    .await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "connected {:?} after the new token",
        asked.elapsed()
    );
    assert_eq!(
        s,
        RelayState::Connected {
            server: relay.url().to_string(),
            instance_url: relay.url().to_string()
        }
    );
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_and_restarted_paths_close_and_managers_reconnect() {
    init_tracing();
    let Some(mut relay) = NbRelay::start() else {
        return;
    };
    let (ka, kb) = (
        PrivateKey::generate().public_key(),
        PrivateKey::generate().public_key(),
    );
    let start = |key, token| RelayManager::start(RelayManagerConfig::new(key, vec![relay.url()], token));
    // a's token lapses in a few seconds: the refresh below is what lets it reconnect.
    let short_expiry = relay_token_expiry(2);
    let short = RelayToken::mint(SECRET, short_expiry);
    let (ma, mb) = (start(ka, short), start(kb, token()));
    let (mut sa, mut sb) = (ma.state(), mb.state());
    for s in [&mut sa, &mut sb] {
        wait_state(s, "Connected", |s| matches!(s, RelayState::Connected { .. })).await;
    }
    let (mut ea, mut eb) = (ma.subscribe(), mb.subscribe());
    let (sink_a, mut in_a) = mpsc::channel(64);
    let (sink_b, mut in_b) = mpsc::channel(64);
    let (pa, pb) = tokio::join!(
        ma.open_peer(None, kb, sink_a.clone(), PathId(1)),
        mb.open_peer(None, ka, sink_b.clone(), PathId(2))
    );
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    pa.send(b"before").unwrap();
    assert_eq!(&recv(&mut in_b).await[..], b"before");

    // A new token while connected: the connection stays up and keeps carrying traffic.
    let home_before = ma.home().unwrap();
    ma.set_token(token()).await;
    pb.send(b"after refresh").unwrap();
    assert_eq!(&recv(&mut in_a).await[..], b"after refresh");
    assert!(
        Arc::ptr_eq(&home_before, &ma.home().unwrap()),
        "the token refresh kept the connection"
    );
    drop(home_before);
    // Let a's first token expire, so only the refreshed one can reconnect.
    wait_until("a's first token expires", || {
        peerlink_core::relay::unix_now() > short_expiry
    })
    .await;

    relay.kill();
    for (events, id) in [(&mut ea, PathId(1)), (&mut eb, PathId(2))] {
        let e = wait_event(events, "PathClosed", |e| {
            matches!(e, RelayEvent::PathClosed { .. })
        })
        .await;
        assert!(
            matches!(e, RelayEvent::PathClosed { id: i, reason: PathCloseReason::Disconnected, .. } if i == id),
            "{e:?}"
        );
        let e = wait_event(events, "Disconnected", |e| {
            matches!(e, RelayEvent::Disconnected { .. })
        })
        .await;
        assert!(
            matches!(
                &e,
                RelayEvent::Disconnected {
                    reason: DisconnectReason::ConnectionLost { .. },
                    ..
                }
            ),
            "{e:?}"
        );
    }
    assert!(pa.is_closed() && pb.is_closed());
    assert!(matches!(pa.send(b"x"), Err(PathError::Closed)));
    for s in [&mut sa, &mut sb] {
        wait_state(s, "not Connected", |s| !matches!(s, RelayState::Connected { .. })).await;
    }

    relay.restart();
    for s in [&mut sa, &mut sb] {
        wait_state(s, "Connected again", |s| {
            matches!(s, RelayState::Connected { .. })
        })
        .await;
    }
    for events in [&mut ea, &mut eb] {
        wait_event(events, "Connected", |e| matches!(e, RelayEvent::Connected { .. })).await;
    }
    let (pa, pb) = tokio::join!(
        ma.open_peer(None, kb, sink_a, PathId(3)),
        mb.open_peer(None, ka, sink_b, PathId(4))
    );
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    pa.send(b"again").unwrap();
    assert_eq!(&recv(&mut in_b).await[..], b"again");
    pb.send(b"and back").unwrap();
    assert_eq!(&recv(&mut in_a).await[..], b"and back");
    ma.stop().await;
    mb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_relay_carries_a_peer_and_closes_when_unused() {
    init_tracing();
    let Some(home_a) = NbRelay::start() else {
        return;
    };
    let Some(home_b) = NbRelay::start() else {
        return;
    };
    let (ka, kb) = (
        PrivateKey::generate().public_key(),
        PrivateKey::generate().public_key(),
    );
    let mut ca = RelayManagerConfig::new(ka, vec![home_a.url()], token());
    ca.foreign_linger = Duration::from_millis(300);
    let ma = RelayManager::start(ca);
    let mb = RelayManager::start(RelayManagerConfig::new(kb, vec![home_b.url()], token()));
    let mut sb = mb.state();
    let RelayState::Connected {
        instance_url: b_advertises,
        ..
    } = wait_state(&mut sb, "Connected", |s| {
        matches!(s, RelayState::Connected { .. })
    })
    .await
    else {
        unreachable!()
    };
    wait_state(&mut ma.state(), "Connected", |s| {
        matches!(s, RelayState::Connected { .. })
    })
    .await;
    let mut ea = ma.subscribe();
    let (sink_a, mut in_a) = mpsc::channel(64);
    let (sink_b, mut in_b) = mpsc::channel(64);
    // a dials b's relay (foreign to a); b uses its home relay, where a now appears.
    let (pa, pb) = tokio::join!(
        ma.open_peer(Some(&b_advertises), kb, sink_a, PathId(1)),
        mb.open_peer(None, ka, sink_b, PathId(2))
    );
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    assert_eq!(pa.instance_url(), home_b.url().as_str());
    assert_eq!(ma.foreign_relays(), vec![b_advertises.clone()]);
    pa.send(b"via b's relay").unwrap();
    assert_eq!(&recv(&mut in_b).await[..], b"via b's relay");
    pb.send(b"reply").unwrap();
    assert_eq!(&recv(&mut in_a).await[..], b"reply");

    pa.close();
    let e = wait_event(&mut ea, "foreign Disconnected", |e| {
        matches!(e, RelayEvent::Disconnected { .. })
    })
    .await;
    assert_eq!(
        e,
        RelayEvent::Disconnected {
            server: b_advertises,
            reason: DisconnectReason::ClosedLocally
        }
    );
    assert!(ma.foreign_relays().is_empty());
    assert!(ma.home().is_some(), "the home relay stays");
    ma.stop().await;
    mb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_with_netbirds_go_relay_client_both_directions() {
    init_tracing();
    let Some(go) = require_tool("nb-relay-peer", "PEERLINK_NB_RELAY_PEER") else {
        return;
    };
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let mut ours = peer(&relay.url()).await;
    let go_key = PrivateKey::generate().public_key();

    // 1. Ours sends first; NetBird's client prints what it got and echoes it back.
    let message = payload(1400, 9);
    let child = Command::new(&go)
        .args([
            "-url",
            relay.url().as_str(),
            "-secret",
            SECRET,
            "-key",
            &go_key.to_base64(),
        ])
        .args(["-peer", &ours.key.to_base64(), "-echo", "-timeout", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nb-relay-peer starts");
    let path = ours.open(go_key, 1).await;
    path.send(&message).unwrap();
    let echoed = ours.recv().await;
    assert_eq!(
        (echoed.peer, echoed.datagram.to_vec()),
        (go_key, message.clone()),
        "Go -> ours"
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nb-relay-peer failed: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        hex(&message),
        "ours -> Go"
    );
    assert!(
        stderr.contains(&format!("instance-url: {}", relay.url())),
        "{stderr}"
    );
    path.close();

    // 2. NetBird's client sends first (possibly before we open it: the held-packet case) and
    //    waits for our reply.
    let go_key = PrivateKey::generate().public_key();
    let child = Command::new(&go)
        .args([
            "-url",
            relay.url().as_str(),
            "-secret",
            SECRET,
            "-key",
            &go_key.to_base64(),
        ])
        .args([
            "-peer",
            &ours.key.to_base64(),
            "-send-hex",
            "0102030405",
            "-reply",
            "-timeout",
            "20s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nb-relay-peer starts");
    let path = ours.open(go_key, 2).await;
    let got = ours.recv().await;
    assert_eq!(
        (got.peer, got.path, &got.datagram[..]),
        (go_key, PathId(2), &[1u8, 2, 3, 4, 5][..])
    );
    path.send(b"pong").unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "nb-relay-peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hex(b"pong"));
    assert_eq!(ours.client.counters().refused_input(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rels_with_the_apps_ca_carries_transport_both_ways() {
    init_tracing();
    let Some(pki) = TestPki::create() else { return };
    let Some(relay) = NbRelay::start_tls(&pki.server_cert, &pki.server_key) else {
        return;
    };
    let ca = std::fs::read_to_string(&pki.ca_cert).unwrap();
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let ma = manager_from_spec(&relay.url(), &ka, Some(&ca), SocketFactory::default());
    let mb = manager_from_spec(&relay.url(), &kb, Some(&ca), SocketFactory::default());
    for m in [&ma, &mb] {
        let s = wait_state(&mut m.state(), "Connected", |s| {
            matches!(s, RelayState::Connected { .. })
        })
        .await;
        assert_eq!(
            s,
            RelayState::Connected {
                server: relay.url().to_string(),
                instance_url: relay.url().to_string()
            },
            "AuthResponse carries the -e address"
        );
    }
    let (sink_a, mut in_a) = mpsc::channel(64);
    let (sink_b, mut in_b) = mpsc::channel(64);
    let (pa, pb) = tokio::join!(
        ma.open_peer(None, kb.public_key(), sink_a, PathId(1)),
        mb.open_peer(None, ka.public_key(), sink_b, PathId(2))
    );
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    for len in [1, 700, 1400] {
        pa.send(&payload(len, 1)).unwrap();
        assert_eq!(
            recv(&mut in_b).await.to_vec(),
            payload(len, 1),
            "a -> b, {len} bytes"
        );
        pb.send(&payload(len, 2)).unwrap();
        assert_eq!(
            recv(&mut in_a).await.to_vec(),
            payload(len, 2),
            "b -> a, {len} bytes"
        );
    }
    for m in [&ma, &mb] {
        let c = m.counters();
        assert_eq!((c.transport_in, c.transport_out), (3, 3), "{c:?}");
    }
    ma.stop().await;
    mb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rels_without_the_apps_ca_fails_with_a_typed_certificate_error_and_no_storm() {
    init_tracing();
    let Some(pki) = TestPki::create() else { return };
    let Some(relay) = NbRelay::start_tls(&pki.server_cert, &pki.server_key) else {
        return;
    };
    let err = RelayClient::connect(
        &relay.url(),
        ClientOptions::new(PrivateKey::generate().public_key(), token()),
    )
    .await
    .unwrap_err();
    println!("without the CA: {err}");
    assert!(matches!(err, RelayError::CertificateRefused { .. }), "{err}");
    assert!(
        err.to_string().contains("supply the CA"),
        "says what to do: {err}"
    );

    let protector = Arc::new(CountingProtector::default());
    let key = PrivateKey::generate();
    let manager = manager_from_spec(
        &relay.url(),
        &key,
        None,
        SocketFactory::new(Some(protector.clone())),
    );
    let mut state = manager.state();
    let failed = wait_state(&mut state, "Failed", |s| matches!(s, RelayState::Failed { .. })).await;
    assert!(
        matches!(
            &failed,
            RelayState::Failed {
                error: RelayError::CertificateRefused { .. },
                failures: 1
            }
        ),
        "{failed:?}"
    );
    let seen_failures =
        failures_for_5s(&mut state, |e| matches!(e, RelayError::CertificateRefused { .. })).await;
    let attempts = protector.count();
    println!("refused certificate: {attempts} connection attempts in the first 5 s");
    assert!(
        (1..=3).contains(&attempts),
        "{attempts} attempts in 5 s is a storm"
    );
    assert_eq!(attempts, seen_failures as usize);
    manager.stop().await;
}

/// A manager built the way the engine builds it: `RelaySpec` (with `ca_pem`), validation, then
/// the control plane's setup.
fn manager_from_spec(
    url: &RelayUrl,
    key: &PrivateKey,
    ca_pem: Option<&str>,
    sockets: SocketFactory,
) -> RelayManager {
    let spec = EngineSpec {
        private_key: key.to_base64(),
        relay: Some(RelaySpec {
            urls: vec![url.to_string()],
            secret: Some(SECRET.into()),
            ca_pem: ca_pem.map(str::to_owned),
            ..Default::default()
        }),
        ..Default::default()
    };
    let config = spec.validate().expect("valid spec");
    let relay = ConnSetup::from_config(&config, &sockets, None)
        .relay
        .expect("relay configured");
    assert!(
        relay.tls.is_some(),
        "a rels:// relay gets the engine's TLS connector"
    );
    RelayManager::start(relay)
}

/// Watches a failed manager for 5 s and returns the failure count it reached; every state in
/// that time must be a failure that `expected` accepts. NetBird's schedule (2 s then 4 s,
/// ±50 %) allows at most two attempts after the first in that window.
async fn failures_for_5s(
    state: &mut watch::Receiver<RelayState>,
    expected: impl Fn(&RelayError) -> bool,
) -> u32 {
    let window = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(window);
    let mut seen_failures = 1;
    loop {
        tokio::select! {
            () = &mut window => return seen_failures,
            changed = state.changed() => {
                changed.unwrap();
                let s = state.borrow_and_update().clone();
                match s {
                    RelayState::Failed { error, failures } => {
                        assert!(expected(&error), "{error}");
                        seen_failures = failures;
                    }
                    other => panic!("unexpected state {other:?}"),
                }
            }
        }
    }
}

async fn recv(rx: &mut mpsc::Receiver<peerlink_core::path::Inbound>) -> bytes::Bytes {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("datagram within WAIT")
        .expect("channel open")
        .datagram
}

async fn wait_state(
    state: &mut watch::Receiver<RelayState>,
    what: &str,
    pred: impl FnMut(&RelayState) -> bool,
) -> RelayState {
    let result = match tokio::time::timeout(WAIT, state.wait_for(pred)).await {
        Ok(Ok(s)) => Some(s.clone()),
        Ok(Err(_)) => panic!("state channel closed waiting for {what}"),
        Err(_) => None,
    };
    result.unwrap_or_else(|| panic!("no {what} within {WAIT:?}; state is {:?}", *state.borrow()))
}

fn relay_token_expiry(from_now_secs: u64) -> u64 {
    peerlink_core::relay::unix_now() + from_now_secs
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_change_cuts_the_connection_and_reconnects_at_once() {
    init_tracing();
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let manager = RelayManager::start(RelayManagerConfig::new(
        PrivateKey::generate().public_key(),
        vec![relay.url()],
        token(),
    ));
    let mut state = manager.state();
    wait_state(&mut state, "Connected", |s| {
        matches!(s, RelayState::Connected { .. })
    })
    .await;
    let before = manager.home().unwrap();
    let mut events = manager.subscribe();
    let asked = tokio::time::Instant::now();
    manager.network_changed().await;
    let e = wait_event(&mut events, "Disconnected", |e| {
        matches!(e, RelayEvent::Disconnected { .. })
    })
    .await;
    assert!(
        matches!(
            e,
            RelayEvent::Disconnected {
                reason: DisconnectReason::ClosedLocally,
                ..
            }
        ),
        "{e:?}"
    );
    wait_event(&mut events, "Connected", |e| {
        matches!(e, RelayEvent::Connected { .. })
    })
    .await;
    println!("network change: reconnected in {:?}", asked.elapsed());
    assert!(asked.elapsed() < Duration::from_secs(2));
    wait_state(&mut state, "Connected", |s| {
        matches!(s, RelayState::Connected { .. })
    })
    .await;
    assert!(!Arc::ptr_eq(&before, &manager.home().unwrap()));
    manager.stop().await;
    assert_eq!(*state.borrow(), RelayState::Stopped);
}
