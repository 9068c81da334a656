//! Resident memory of one engine with N connected peers (DESIGN §9), the way a phone runs it:
//! one engine on a runtime sized like the mobile bindings, every peer handshaken and a packet
//! through each. Two processes, so that only the measured engine is in the measured process:
//!
//! ```text
//! memory_peers peers N PORTFILE   # N engines, one peer each (the hub); writes PORTFILE
//! memory_peers hub N PORTFILE     # the measured engine, whose N peers are those engines
//! ```
//!
//! PORTFILE (written atomically by `peers`): `hub <private key>`, then one `peer <public key>
//! <udp port>` line per engine. `peers` answers nothing: it counts the echoes delivered to its
//! tuns, prints `peers: echo delivered on N/N` on stderr once all arrived, and exits after
//! `PEERLINK_MEMORY_LINGER_SECS` (default 300) or when killed. `hub` sends one ICMP echo to each
//! peer, waits until every peer is connected (handshake completed) with a packet sent and
//! WireGuard packets received, and prints the last stdout line, machine-readable:
//! `RESULT peers=100 baseline_kib=… rss_kib=… hwm_kib=… per_peer_kib=…`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a bench tool: a panic is a failure report

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerlink_core::packet::icmp_echo_request;
use peerlink_core::tun::{packet_socketpair, FdOwnership, Framing, Tun};
use peerlink_core::{Engine, EngineOptions, EngineSpec, PeerSpec, PeerStatus, PrivateKey, PublicKey};

/// The mobile bindings' runtime (bindings/src/engine/runtime.rs).
const WORKER_THREADS: usize = 2;
const MAX_BLOCKING_THREADS: usize = 2;
const THREAD_STACK_SIZE: usize = 256 * 1024;
/// How long the hub waits for every peer to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Echoes to peers not yet connected are sent again this often (a lost handshake initiation
/// is retried by WireGuard after 5 s anyway).
const RESEND: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);
/// The ICMP payload: `ping`'s default.
const ECHO_PAYLOAD: usize = 56;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        eprintln!("usage: memory_peers peers|hub N PORTFILE");
        ExitCode::from(2)
    };
    if args.len() != 4 {
        return usage();
    }
    let Ok(n) = args[2].parse::<usize>() else {
        return usage();
    };
    if n == 0 || n > 250 * 250 {
        eprintln!("N must be 1..=62500");
        return ExitCode::from(2);
    }
    let file = std::path::PathBuf::from(&args[3]);
    match args[1].as_str() {
        "peers" => peers(n, &file),
        "hub" => hub(n, &file),
        _ => usage(),
    }
}

fn hub_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1))
}

/// Peer `i` (0-based): 10.77.1.1, …, 10.77.1.250, 10.77.2.1, …
fn peer_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, (1 + i / 250) as u8, (1 + i % 250) as u8))
}

fn start(spec: EngineSpec) -> (Engine, Tun) {
    let (engine_end, os_end) = packet_socketpair().expect("socketpair");
    let tun = Tun::from_fd(engine_end, Framing::RawIp, FdOwnership::Owned).expect("tun");
    let os = Tun::from_fd(os_end, Framing::RawIp, FdOwnership::Owned).expect("os tun");
    let options = EngineOptions {
        listen_ip: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    };
    let engine = Engine::start(spec.validate().expect("valid spec"), tun, options).expect("engine starts");
    (engine, os)
}

/// N engines with the hub as their one peer (endpoint learned when the hub's handshake arrives).
fn peers(n: usize, file: &std::path::Path) -> ExitCode {
    let linger = std::env::var("PEERLINK_MEMORY_LINGER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hub_key = PrivateKey::generate();
        let hub_peer = PeerSpec {
            public_key: hub_key.public_key().to_base64(),
            allowed_ips: vec![format!("{}/32", hub_ip())],
            ..Default::default()
        };
        let mut text = format!("hub {}\n", hub_key.to_base64());
        let mut engines = Vec::with_capacity(n);
        let delivered = Arc::new(AtomicUsize::new(0));
        for i in 0..n {
            let key = PrivateKey::generate();
            let (engine, os) = start(EngineSpec {
                private_key: key.to_base64(),
                addresses: vec![format!("{}/16", peer_ip(i))],
                peers: vec![hub_peer.clone()],
                ..Default::default()
            });
            text.push_str(&format!(
                "peer {} {}\n",
                key.public_key().to_base64(),
                engine.listen_addr().port()
            ));
            // The OS side reads and drops; it counts the first echo from the hub.
            let delivered = delivered.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut counted = false;
                while let Ok(Some(packet)) = os.recv(&mut buf).await {
                    let echo = peerlink_core::packet::parse_echo(packet);
                    if !counted && echo.is_some() {
                        counted = true;
                        let now = delivered.fetch_add(1, Ordering::Relaxed) + 1;
                        if now == n {
                            eprintln!("peers: echo delivered on {now}/{n}");
                        }
                    }
                }
            });
            engines.push(engine);
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write the port file");
        std::fs::rename(&tmp, file).expect("rename the port file");
        eprintln!("peers: {n} engines listening");
        tokio::time::sleep(Duration::from_secs(linger)).await;
        eprintln!(
            "peers: exiting after {linger} s; echo delivered on {}/{n}",
            delivered.load(Ordering::Relaxed)
        );
        // Dropping the engines aborts their tasks; nothing else to wait for.
        drop(engines);
    });
    ExitCode::SUCCESS
}

/// The measured process: one engine, N peers.
fn hub(n: usize, file: &std::path::Path) -> ExitCode {
    let text = std::fs::read_to_string(file).expect("read the port file");
    let mut hub_key = None;
    let mut peer_specs = Vec::with_capacity(n);
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["hub", key] => hub_key = Some(PrivateKey::from_base64(key).expect("hub key")),
            ["peer", key, port] => {
                let i = peer_specs.len();
                let port: u16 = port.parse().expect("port");
                peer_specs.push(PeerSpec {
                    public_key: (*key).to_owned(),
                    allowed_ips: vec![format!("{}/32", peer_ip(i))],
                    endpoint: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)).to_string()),
                    ..Default::default()
                });
            }
            _ => panic!("bad port file line: {line}"),
        }
    }
    let hub_key = hub_key.expect("no hub line in the port file");
    let keys: Vec<PublicKey> = peer_specs
        .iter()
        .map(|p| PublicKey::from_base64(&p.public_key).expect("peer key"))
        .collect();
    assert_eq!(peer_specs.len(), n, "the port file lists another number of peers");
    let spec = EngineSpec {
        private_key: hub_key.to_base64(),
        addresses: vec![format!("{}/16", hub_ip())],
        peers: peer_specs,
        ..Default::default()
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_stack_size(THREAD_STACK_SIZE)
        .thread_name("peerlink-rt")
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // Let both workers start and park before the baseline is read.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let baseline = proc_status_kib("VmRSS");
        let started = Instant::now();
        let (engine, os) = start(spec);
        let mut last_sent: Vec<Option<Instant>> = vec![None; n];
        let status = loop {
            let status = engine.status();
            let by_key: HashMap<PublicKey, &PeerStatus> = status.peers.iter().map(|p| (p.public_key, p)).collect();
            let mut waiting = 0;
            for (i, key) in keys.iter().enumerate() {
                if by_key.get(key).is_some_and(|p| done(p)) {
                    continue;
                }
                waiting += 1;
                if last_sent[i].is_none_or(|t| t.elapsed() >= RESEND) {
                    let echo = icmp_echo_request(hub_ip(), peer_ip(i), 0x7070, i as u16, ECHO_PAYLOAD).unwrap();
                    os.send(&echo).await.expect("tun send");
                    last_sent[i] = Some(Instant::now());
                }
            }
            if waiting == 0 {
                break status;
            }
            if started.elapsed() > CONNECT_TIMEOUT {
                eprintln!("hub: {waiting}/{n} peers not connected after {CONNECT_TIMEOUT:?}");
                eprintln!("{status}");
                return ExitCode::FAILURE;
            }
            tokio::time::sleep(POLL).await;
        };
        let connect_ms = started.elapsed().as_millis();
        let rss = proc_status_kib("VmRSS");
        let hwm = proc_status_kib("VmHWM");
        let connected = status.peers.iter().filter(|p| p.is_connected()).count();
        let tx: u64 = status.peers.iter().map(|p| p.counters.tx_packets).sum();
        let per_peer = rss.saturating_sub(baseline) as f64 / n as f64;
        println!("hub: {connected}/{n} peers connected in {connect_ms} ms, {tx} packets sent through");
        println!("hub: VmRSS before the engine {baseline} KiB, with {n} connected peers {rss} KiB, VmHWM {hwm} KiB");
        println!("RESULT peers={n} baseline_kib={baseline} rss_kib={rss} hwm_kib={hwm} per_peer_kib={per_peer:.1} connect_ms={connect_ms}");
        engine.stop().await;
        ExitCode::SUCCESS
    })
}

/// Connected (handshake completed), our echo sent, and WireGuard packets received on its path.
fn done(p: &PeerStatus) -> bool {
    p.is_connected()
        && p.counters.tx_packets >= 1
        && p.paths.iter().any(|path| path.observations.rx_packets >= 1)
}

/// A field of /proc/self/status, in KiB.
fn proc_status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"))
}
