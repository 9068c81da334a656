//! Figures, printed not asserted: throughput and round-trip time through NetBird's relay server
//! on loopback against plain loopback UDP in the same run, and memory per relayed peer.
//!
//! `cargo test -p peerlink-core --release --test relay_bench -- --ignored --nocapture --test-threads 1`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

mod common;
mod relay_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use peerlink_core::path::{Path, PathError};
use peerlink_core::relay::{ClientOptions, RelayClient};
use peerlink_core::PrivateKey;
use relay_support::*;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Live heap bytes, for the memory estimate.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const PACKET: usize = 1400;
const PACKETS: usize = 200_000;
const PINGS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture in release"]
async fn relay_vs_udp_throughput_and_rtt() {
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let a = peer(&relay.url()).await;
    let mut b = peer(&relay.url()).await;
    let (a_to_b, b_to_a) = tokio::join!(a.open(b.key, 1), b.open(a.key, 2));

    // Throughput, relay: when the connection's queue is full the sender backs off for a timer
    // tick (spinning on yield_now would steal the writer's and the relay server's CPU).
    let data = payload(PACKET, 3);
    let receiver = tokio::spawn(async move {
        let mut got = 0usize;
        let mut first = None;
        while got < PACKETS {
            match tokio::time::timeout(Duration::from_secs(2), b.inbound.recv()).await {
                Ok(Some(_)) => {
                    first.get_or_insert_with(Instant::now);
                    got += 1;
                }
                Ok(None) | Err(_) => break,
            }
        }
        (got, first, Instant::now(), b)
    });
    let start = Instant::now();
    let mut congested = 0u64;
    for _ in 0..PACKETS {
        loop {
            match a_to_b.send(&data) {
                Ok(()) => break,
                Err(PathError::Congested) => {
                    congested += 1;
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    let (got, _, end, mut b) = receiver.await.unwrap();
    let relay_secs = end.duration_since(start).as_secs_f64() - if got < PACKETS { 2.0 } else { 0.0 };
    let relay_gbps = (got * PACKET * 8) as f64 / relay_secs / 1e9;
    println!(
        "relay throughput: {got}/{PACKETS} x {PACKET} B in {relay_secs:.2} s = {relay_gbps:.2} Gbit/s \
         ({congested} waits for a full queue, {} dropped at the sink)",
        b.client.counters().inbound_dropped
    );

    // Throughput, plain UDP on loopback with the same sender loop.
    let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    tx.connect(rx.local_addr().unwrap()).await.unwrap();
    let udp_receiver = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut got = 0usize;
        while got < PACKETS {
            match tokio::time::timeout(Duration::from_millis(500), rx.recv(&mut buf)).await {
                Ok(Ok(_)) => got += 1,
                Ok(Err(_)) | Err(_) => break,
            }
        }
        (got, Instant::now(), rx)
    });
    let start = Instant::now();
    for _ in 0..PACKETS {
        tx.send(&data).await.unwrap();
    }
    let (udp_got, end, rx) = udp_receiver.await.unwrap();
    let udp_secs = end.duration_since(start).as_secs_f64() - if udp_got < PACKETS { 0.5 } else { 0.0 };
    let udp_gbps = (udp_got * PACKET * 8) as f64 / udp_secs / 1e9;
    println!(
        "udp throughput:   {udp_got}/{PACKETS} x {PACKET} B in {udp_secs:.2} s = {udp_gbps:.2} Gbit/s (received; UDP drops the rest)"
    );

    // Round trip, relay: a sends, b echoes from its sink, a waits.
    let mut a = a;
    let echo = tokio::spawn(async move {
        for _ in 0..PINGS {
            let m = b.inbound.recv().await.unwrap();
            b_to_a.send(&m.datagram).unwrap();
        }
        b
    });
    let ping = payload(100, 1);
    let mut rtts = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let t = Instant::now();
        a_to_b.send(&ping).unwrap();
        a.inbound.recv().await.unwrap();
        rtts.push(t.elapsed());
    }
    let _b = echo.await.unwrap();
    let (relay_p50, relay_p99) = percentiles(&mut rtts);

    // Round trip, UDP.
    let echo_sock = rx;
    let echo_addr = echo_sock.local_addr().unwrap();
    let udp_echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        for _ in 0..PINGS {
            let (n, from) = echo_sock.recv_from(&mut buf).await.unwrap();
            echo_sock.send_to(&buf[..n], from).await.unwrap();
        }
    });
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(echo_addr).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let mut rtts = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let t = Instant::now();
        client.send(&ping).await.unwrap();
        client.recv(&mut buf).await.unwrap();
        rtts.push(t.elapsed());
    }
    udp_echo.await.unwrap();
    let (udp_p50, udp_p99) = percentiles(&mut rtts);
    println!("relay rtt: p50 {relay_p50:?} p99 {relay_p99:?} (100-byte payload, {PINGS} round trips)");
    println!("udp rtt:   p50 {udp_p50:?} p99 {udp_p99:?}");
    println!(
        "relay adds {:?} per round trip at the median ({:?} one way)",
        relay_p50.saturating_sub(udp_p50),
        relay_p50.saturating_sub(udp_p50) / 2
    );
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture in release"]
async fn memory_per_connection_and_per_relayed_peer() {
    const PEERS: usize = 200;
    let Some(relay) = NbRelay::start() else {
        return;
    };
    let mut spokes = Vec::with_capacity(PEERS);
    for _ in 0..PEERS {
        spokes.push(peer(&relay.url()).await);
    }
    let hub_key = PrivateKey::generate().public_key();
    let before_connect = live();
    let hub = RelayClient::connect(&relay.url(), ClientOptions::new(hub_key, token()))
        .await
        .unwrap();
    let per_connection = live() - before_connect;
    let (sink, _rx) = mpsc::channel(1024);
    let before_open = live();
    let mut paths = Vec::with_capacity(PEERS);
    for (i, s) in spokes.iter().enumerate() {
        paths.push(
            hub.open_peer(s.key, sink.clone(), peerlink_core::path::PathId(i as u64))
                .await
                .unwrap(),
        );
    }
    let per_peer = (live() - before_open) / PEERS as isize;
    println!("heap per relay connection (tungstenite buffers, queues, tasks): {per_connection} B");
    println!("heap per relayed peer on a connection ({PEERS} peers): {per_peer} B");
    assert_eq!(hub.peer_count(), PEERS);
}

fn percentiles(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}
