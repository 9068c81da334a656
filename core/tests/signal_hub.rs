//! The in-process hub: the same handle, sealing and receive checks as the gRPC client.

// Test code: a panic is a failed test with its message, which is what these helpers want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use peerlink_core::signal::proto::EncryptedMessage;
use peerlink_core::signal::{
    seal, IceCredentials, Incoming, OfferAnswer, SessionId, SignalHub, SignalMessage, SignalState,
};
use peerlink_core::PrivateKey;
use prost::Message as _;
use tokio::sync::{mpsc, watch};

/// Generous: these are in-process channels; a timeout means a bug, not a slow machine.
const WAIT: Duration = Duration::from_secs(5);

fn offer() -> OfferAnswer {
    let mut rng = rand::thread_rng();
    OfferAnswer {
        ice: Some(IceCredentials::generate()),
        wg_listen_port: 51820,
        version: "peerlink-test".into(),
        relay_server_address: Some("rel://127.0.0.1:33080".into()),
        relay_server_ip: None,
        session_id: Some(SessionId::generate(&mut rng)),
    }
}

async fn recv(rx: &mut mpsc::Receiver<Incoming>) -> Incoming {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no message within the wait")
        .expect("receiver closed")
}

async fn state_becomes(rx: &mut watch::Receiver<SignalState>, want: SignalState) {
    let reached = tokio::time::timeout(WAIT, rx.wait_for(|s| *s == want))
        .await
        .is_ok();
    assert!(reached, "state never became {want:?}; it is {:?}", *rx.borrow());
}

#[tokio::test]
async fn two_hub_clients_exchange_offer_answer_and_candidates() {
    let hub = SignalHub::new();
    let (a_key, b_key) = (PrivateKey::generate(), PrivateKey::generate());
    let (a, mut a_rx) = hub.connect(a_key.clone());
    let (b, mut b_rx) = hub.connect(b_key.clone());
    assert_eq!(*a.state().borrow(), SignalState::Connected);

    let o = offer();
    a.send(b.public_key(), SignalMessage::Offer(o.clone()))
        .await
        .unwrap();
    assert_eq!(recv(&mut b_rx).await, (a.public_key(), SignalMessage::Offer(o)));
    let ans = offer();
    b.send(a.public_key(), SignalMessage::Answer(ans.clone()))
        .await
        .unwrap();
    b.send(
        a.public_key(),
        SignalMessage::Candidate("1 1 udp 1 127.0.0.1 5 typ host".into()),
    )
    .await
    .unwrap();
    assert_eq!(
        recv(&mut a_rx).await,
        (b.public_key(), SignalMessage::Answer(ans))
    );
    assert!(matches!(recv(&mut a_rx).await, (_, SignalMessage::Candidate(_))));
    assert_eq!(a.counters().sent, 1);
    assert_eq!(a.counters().delivered, 2);
}

#[tokio::test]
async fn sending_to_nobody_is_not_an_error() {
    let hub = SignalHub::new();
    let (a, _a_rx) = hub.connect(PrivateKey::generate());
    let nobody = PrivateKey::generate().public_key();
    a.send(nobody, SignalMessage::GoIdle).await.unwrap();
    assert_eq!(*a.state().borrow(), SignalState::Connected);
}

#[tokio::test]
async fn bad_input_is_dropped_counted_and_the_client_keeps_working() {
    let hub = SignalHub::new();
    let (me, peer) = (PrivateKey::generate(), PrivateKey::generate());
    let (client, mut rx) = hub.connect(me.clone());
    let (sender, _sender_rx) = hub.connect(peer.clone());
    let to = me.public_key().to_base64();
    let from = peer.public_key().to_base64();
    let sealed = |body: &[u8]| seal::seal(&peer, &me.public_key(), body);
    let bad_candidate = SignalMessage::Candidate(String::new()).to_body().encode_to_vec();
    for (key, body) in [
        (from.clone(), vec![0u8; 1 << 20]),              // 1 MiB body
        ("not base64 at all!".to_owned(), sealed(b"x")), // bad sender key
        ("AAAA".to_owned(), sealed(b"x")),               // base64 but 3 bytes
        (from.clone(), vec![0x42; 64]),                  // does not open
        (from.clone(), sealed(&[0xff, 0xff, 0xff])),     // opens to garbage protobuf
        (from.clone(), sealed(&bad_candidate)),          // a body we do not understand
    ] {
        hub.send_raw(EncryptedMessage {
            key,
            remote_key: to.clone(),
            body,
        });
    }
    sender
        .send(me.public_key(), SignalMessage::Offer(offer()))
        .await
        .unwrap();
    assert!(matches!(recv(&mut rx).await, (_, SignalMessage::Offer(_))));
    let c = client.counters();
    assert_eq!(
        (
            c.dropped_oversized,
            c.dropped_bad_sender,
            c.dropped_unopenable,
            c.dropped_bad_protobuf,
            c.dropped_bad_message
        ),
        (1, 2, 1, 1, 1),
        "{c:?}"
    );
    assert_eq!((c.received, c.delivered), (7, 1));
    assert_eq!(*client.state().borrow(), SignalState::Connected);
}

#[tokio::test]
async fn a_newer_client_with_the_same_key_takes_over_until_reconnect() {
    let hub = SignalHub::new();
    let key = PrivateKey::generate();
    let (old, mut old_rx) = hub.connect(key.clone());
    let mut old_state = old.state();
    let (new, mut new_rx) = hub.connect(key.clone());
    state_becomes(&mut old_state, SignalState::Replaced).await;

    let (peer, _peer_rx) = hub.connect(PrivateKey::generate());
    peer.send(key.public_key(), SignalMessage::GoIdle).await.unwrap();
    assert_eq!(recv(&mut new_rx).await.1, SignalMessage::GoIdle);
    assert!(old_rx.try_recv().is_err());

    old.reconnect();
    state_becomes(&mut old_state, SignalState::Connected).await;
    state_becomes(&mut new.state(), SignalState::Replaced).await;
    peer.send(key.public_key(), SignalMessage::GoIdle).await.unwrap();
    assert_eq!(recv(&mut old_rx).await.1, SignalMessage::GoIdle);
}

#[tokio::test]
async fn close_ends_the_receiver_and_deregisters() {
    let hub = SignalHub::new();
    let key = PrivateKey::generate();
    let (client, mut rx) = hub.connect(key.clone());
    let mut state = client.state();
    let other = client.clone();
    client.close().await;
    assert_eq!(*state.borrow_and_update(), SignalState::Closed);
    assert!(!hub.is_registered(&key.public_key()));
    assert!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap().is_none());
    assert!(other.send(key.public_key(), SignalMessage::GoIdle).await.is_err());
}

#[tokio::test]
async fn dropping_the_last_handle_ends_the_client() {
    let hub = SignalHub::new();
    let key = PrivateKey::generate();
    let (client, mut rx) = hub.connect(key.clone());
    let clone = client.clone();
    drop(client);
    assert!(hub.is_registered(&key.public_key()), "a clone still holds it");
    drop(clone);
    assert!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap().is_none());
}
