//! The relay client against a scripted server on loopback: what it puts on the wire, and how it
//! survives input NetBird's server would never send.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

mod common;
mod relay_support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use peerlink_core::path::{Path, PathError, PathId};
use peerlink_core::relay::messages::{
    decode_client, encode_auth_response, encode_peer_list, encode_transport, ClientMessage, PeerId,
    PeerListKind,
};
use peerlink_core::relay::{ClientOptions, DisconnectReason, RelayClient, RelayEvent, RelayToken};
use peerlink_core::PrivateKey;
use relay_support::{init_tracing, wait_event, wait_until, WAIT};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const INSTANCE: &str = "rel://scripted.invalid:1";

type Ws = WebSocketStream<TcpStream>;

/// Accepts one client and answers its Auth; returns the socket and the Auth message's parts.
async fn accept(listener: &TcpListener) -> (Ws, PeerId, Vec<u8>) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let auth = next_binary(&mut ws).await;
    let ClientMessage::Auth { id, token } = decode_client(&auth).unwrap() else {
        panic!("not auth: {auth:?}")
    };
    let token = token.to_vec();
    ws.send(Message::Binary(encode_auth_response(INSTANCE)))
        .await
        .unwrap();
    (ws, id, token)
}

async fn next_binary(ws: &mut Ws) -> Bytes {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("client message within WAIT")
        {
            Some(Ok(Message::Binary(b))) => return b,
            Some(Ok(_)) => continue,
            other => panic!("client went away: {other:?}"),
        }
    }
}

async fn listener() -> (TcpListener, peerlink_core::relay::RelayUrl) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("rel://{}", l.local_addr().unwrap()).parse().unwrap();
    (l, url)
}

fn options() -> ClientOptions {
    ClientOptions::new(
        PrivateKey::generate().public_key(),
        RelayToken::mint("s", 1_900_000_000),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_subscribe_transport_and_close_are_netbirds_bytes() {
    init_tracing();
    let (l, url) = listener().await;
    let opts = options();
    let (own, token) = (opts.own_key, opts.token.clone());
    let (client, (mut ws, id, sent_token)) = tokio::join!(RelayClient::connect(&url, opts), accept(&l));
    let client = client.unwrap();
    assert_eq!(client.instance_url(), INSTANCE);
    assert_eq!((id, sent_token.as_slice()), (PeerId::of(&own), token.as_bytes()));

    let remote = PrivateKey::generate().public_key();
    let (sink, mut rx) = mpsc::channel(8);
    let open = client.open_peer(remote, sink, PathId(5));
    let script = async {
        assert_eq!(
            next_binary(&mut ws).await,
            encode_peer_list(PeerListKind::Subscribe, &[PeerId::of(&remote)])[0]
        );
        ws.send(Message::Binary(
            encode_peer_list(PeerListKind::Online, &[PeerId::of(&remote)]).remove(0),
        ))
        .await
        .unwrap();
    };
    let (path, ()) = tokio::join!(open, script);
    let path = path.unwrap();
    path.send(b"to remote").unwrap();
    assert_eq!(
        next_binary(&mut ws).await,
        encode_transport(&PeerId::of(&remote), b"to remote").unwrap()
    );
    ws.send(Message::Binary(
        encode_transport(&PeerId::of(&remote), b"from remote").unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(
        &tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap()
            .datagram[..],
        b"from remote"
    );

    ws.send(Message::Binary(Bytes::from_static(&[1, 5])))
        .await
        .unwrap();
    assert_eq!(&next_binary(&mut ws).await[..], &[1, 5], "health check echoed");

    let too_big = vec![0u8; 8783];
    assert!(matches!(path.send(&too_big), Err(PathError::Io(_))));
    assert_eq!(client.counters().too_large, 1);

    path.close();
    assert_eq!(
        next_binary(&mut ws).await,
        encode_peer_list(PeerListKind::Unsubscribe, &[PeerId::of(&remote)])[0]
    );
    client.close().await;
    assert_eq!(
        &next_binary(&mut ws).await[..],
        &[1, 4],
        "Close message on the way out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_dropped_and_counted_and_the_connection_keeps_working() {
    init_tracing();
    let (l, url) = listener().await;
    let (client, (mut ws, _, _)) = tokio::join!(RelayClient::connect(&url, options()), accept(&l));
    let client = client.unwrap();
    let (good, other) = (
        PrivateKey::generate().public_key(),
        PrivateKey::generate().public_key(),
    );
    let good_id = PeerId::of(&good);
    let (sink, mut rx) = mpsc::channel(64);
    let (sink2, mut rx2) = mpsc::channel(64);

    let script = async {
        next_binary(&mut ws).await; // subscribe good
        let mut partial = encode_peer_list(PeerListKind::Online, &[good_id])
            .remove(0)
            .to_vec();
        partial.truncate(2 + 20);
        ws.send(Message::Binary(partial.into())).await.unwrap();
        ws.send(Message::Binary(
            encode_peer_list(PeerListKind::Online, &[good_id]).remove(0),
        ))
        .await
        .unwrap();
        next_binary(&mut ws).await; // subscribe other
        ws.send(Message::Binary(
            encode_peer_list(PeerListKind::Online, &[PeerId::of(&other)]).remove(0),
        ))
        .await
        .unwrap();
    };
    let (a, b, ()) = tokio::join!(
        client.open_peer(good, sink, PathId(1)),
        client.open_peer(other, sink2, PathId(2)),
        script
    );
    let (_a, b) = (a.unwrap(), b.unwrap());

    let mut oversize = encode_transport(&good_id, &[0; 8782]).unwrap().to_vec();
    oversize.push(0);
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        vec![2, 3, 0, 0],
        vec![1, 1],
        vec![1, 2],
        vec![1, 0],
        vec![1, 200],
        vec![1, 3, b's', b'h', b'a'],
        oversize,
        vec![1, 10, 0, 0, 0],
        vec![1, 11, 1],
        vec![1, 8],
        encode_auth_response("rel://again:1").to_vec(),
    ];
    let n_bad = bad.len() as u64;
    for m in bad {
        ws.send(Message::Binary(m.into())).await.unwrap();
    }
    ws.send(Message::Text("hello".into())).await.unwrap();
    ws.send(Message::Binary(
        encode_transport(&good_id, b"still here").unwrap(),
    ))
    .await
    .unwrap();
    let got = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(&got.datagram[..], b"still here");
    let c = client.counters();
    println!("{c:#?}");
    assert_eq!(
        c.refused_input(),
        n_bad + 1 + 1,
        "every bad message, the partial PeersOnline and the text"
    );
    assert_eq!(
        (c.truncated, c.bad_version, c.retired_type, c.unknown_type),
        (2, 1, 2, 2)
    );
    assert_eq!(
        (
            c.short_transport,
            c.oversize,
            c.partial_peer_id,
            c.wrong_direction
        ),
        (1, 1, 3, 1)
    );
    assert_eq!((c.unexpected_auth_response, c.not_binary), (1, 1));
    assert!(client.is_connected());
    assert_eq!(client.peer_count(), 2, "no peer was closed by bad input");

    // The other peer works too.
    ws.send(Message::Binary(
        encode_transport(&PeerId::of(&other), b"other").unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(
        &tokio::time::timeout(WAIT, rx2.recv())
            .await
            .unwrap()
            .unwrap()
            .datagram[..],
        b"other"
    );
    b.send(b"out").unwrap();
    assert_eq!(
        next_binary(&mut ws).await,
        encode_transport(&PeerId::of(&other), b"out").unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_past_the_health_timeout_ends_the_connection() {
    init_tracing();
    let (l, url) = listener().await;
    let mut opts = options();
    opts.health_timeout = Duration::from_millis(600);
    let mut events = opts.events.subscribe();
    let (client, (mut ws, _, _)) = tokio::join!(RelayClient::connect(&url, opts), accept(&l));
    let client = client.unwrap();
    // Health checks keep it alive past several timeouts...
    for _ in 0..6 {
        ws.send(Message::Binary(Bytes::from_static(&[1, 5])))
            .await
            .unwrap();
        assert_eq!(&next_binary(&mut ws).await[..], &[1, 5]);
        tokio::time::sleep(Duration::from_millis(250)).await; // the server's interval, scaled down
    }
    assert!(client.is_connected());
    // ...silence does not.
    let e = wait_event(&mut events, "Disconnected", |e| {
        matches!(e, RelayEvent::Disconnected { .. })
    })
    .await;
    assert!(
        matches!(
            e,
            RelayEvent::Disconnected {
                reason: DisconnectReason::HealthCheckTimeout,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!client.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_close_message_ends_the_connection_and_its_paths() {
    init_tracing();
    let (l, url) = listener().await;
    let opts = options();
    let mut events = opts.events.subscribe();
    let (client, (mut ws, _, _)) = tokio::join!(RelayClient::connect(&url, opts), accept(&l));
    let client = client.unwrap();
    let remote = PrivateKey::generate().public_key();
    let (sink, _rx) = mpsc::channel(8);
    let script = async {
        next_binary(&mut ws).await;
        ws.send(Message::Binary(
            encode_peer_list(PeerListKind::Online, &[PeerId::of(&remote)]).remove(0),
        ))
        .await
        .unwrap();
    };
    let (path, ()) = tokio::join!(client.open_peer(remote, sink, PathId(3)), script);
    let path = path.unwrap();
    ws.send(Message::Binary(Bytes::from_static(&[1, 4])))
        .await
        .unwrap();
    wait_event(&mut events, "PathClosed", |e| {
        matches!(e, RelayEvent::PathClosed { id: PathId(3), .. })
    })
    .await;
    let e = wait_event(&mut events, "Disconnected", |e| {
        matches!(e, RelayEvent::Disconnected { .. })
    })
    .await;
    assert!(
        matches!(
            e,
            RelayEvent::Disconnected {
                reason: DisconnectReason::ServerClose,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(path.is_closed());
    wait_until("client sees the end", || !client.is_connected()).await;
}
