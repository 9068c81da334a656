//! Bulk one-way transfer through two engines on loopback, each on a socketpair tun, against
//! plain loopback UDP measured in the same run (the anchor). Prints one line per figure.
//!
//!     cargo bench -p peerlink-core --bench throughput
//!
//! `PEERLINK_BENCH_SECS` sets the length of each run (default 3 s).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerlink_core::packet::udp;
use peerlink_core::tun::{packet_socketpair, FdOwnership, Framing, Tun};
use peerlink_core::{Engine, EngineOptions, EngineSpec, PeerSpec, PrivateKey};

/// The default tunnel MTU: the IP packets the bench sends are this long.
const MTU: usize = 1280;

fn main() {
    let secs: u64 = std::env::var("PEERLINK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dur = Duration::from_secs(secs);
        let (udp_pps, udp_gbps) = plain_udp(dur).await;
        let (pl_pps, pl_gbps) = through_engines(dur).await;
        println!("throughput plain loopback UDP ({MTU}-byte datagrams): {udp_gbps:.2} Gbit/s, {udp_pps:.0} packets/s");
        println!("throughput peerlink two engines, socketpair tuns, loopback ({MTU}-byte IP packets): {pl_gbps:.2} Gbit/s, {pl_pps:.0} packets/s");
        println!("throughput ratio peerlink / plain UDP: {:.2}", pl_gbps / udp_gbps);
    });
}

fn rate(packets: u64, bytes_each: usize, elapsed: Duration) -> (f64, f64) {
    let pps = packets as f64 / elapsed.as_secs_f64();
    (pps, pps * bytes_each as f64 * 8.0 / 1e9)
}

async fn plain_udp(dur: Duration) -> (f64, f64) {
    let rx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(rx.local_addr().unwrap()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let buf = vec![0u8; MTU];
            while !stop.load(Ordering::Relaxed) {
                let _ = tx.send(&buf);
            }
        })
    };
    let mut buf = vec![0u8; 65536];
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < dur {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), rx.recv(&mut buf)).await {
            n += 1;
        }
    }
    let received = (n, start.elapsed());
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    rate(received.0, MTU, received.1)
}

async fn through_engines(dur: Duration) -> (f64, f64) {
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let (b, b_os) = start(&kb, 2, vec![]);
    let (a, a_os) = start(&ka, 1, vec![peer(&kb, 2, Some(b.listen_addr().to_string()))]);
    b.update_peers(spec(&kb, 2, vec![peer(&ka, 1, None)]).validate().unwrap().peers);
    let src: IpAddr = "10.98.0.1".parse().unwrap();
    let dst: IpAddr = "10.98.0.2".parse().unwrap();
    let packet = udp(src, dst, 9, 9, &vec![0xa5; MTU - 28]).unwrap();
    // Warm up: the handshake, then a packet through.
    a_os.send(&packet).await.unwrap();
    let mut buf = vec![0u8; 65536];
    tokio::time::timeout(Duration::from_secs(5), b_os.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let a_os = Arc::new(a_os);
    let sender = {
        let (stop, sent, a_os) = (stop.clone(), sent.clone(), a_os.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if a_os.send(&packet).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < dur {
        if let Ok(Ok(Some(_))) = tokio::time::timeout(Duration::from_secs(1), b_os.recv(&mut buf)).await {
            n += 1;
        }
    }
    let received = (n, start.elapsed());
    stop.store(true, Ordering::Relaxed);
    let _ = sender.await;
    a.stop().await;
    b.stop().await;
    rate(received.0, MTU, received.1)
}

fn spec(key: &PrivateKey, n: u8, peers: Vec<PeerSpec>) -> EngineSpec {
    EngineSpec {
        private_key: key.to_base64(),
        addresses: vec![format!("10.98.0.{n}/24")],
        peers,
        ..Default::default()
    }
}

fn peer(key: &PrivateKey, n: u8, endpoint: Option<String>) -> PeerSpec {
    PeerSpec {
        public_key: key.public_key().to_base64(),
        allowed_ips: vec![format!("10.98.0.{n}/32")],
        endpoint,
        ..Default::default()
    }
}

fn start(key: &PrivateKey, n: u8, peers: Vec<PeerSpec>) -> (Engine, Tun) {
    let (e, o) = packet_socketpair().unwrap();
    let tun = Tun::from_fd(e, Framing::RawIp, FdOwnership::Owned).unwrap();
    let os = Tun::from_fd(o, Framing::RawIp, FdOwnership::Owned).unwrap();
    let options = EngineOptions {
        listen_ip: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    };
    (
        Engine::start(spec(key, n, peers).validate().unwrap(), tun, options).unwrap(),
        os,
    )
}
