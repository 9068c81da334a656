//! Two engines that know only each other's keys, through NetBird's own signal server: they
//! connect over ICE; the server is killed and comes back; a network change on one side then
//! renegotiates ICE through the returned server and traffic flows again (the time is printed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{isolate_network, require_tool, skip};
use common::{peer, spec, Node};
use peerlink_core::packet::{icmp_echo_request, parse_echo};
use peerlink_core::path::PathKind;
use peerlink_core::signal::SignalState;
use peerlink_core::tun::{packet_socketpair, FdOwnership, Framing, Tun};
use peerlink_core::{Engine, EngineOptions, Event, IceSpec, PrivateKey, SignalSpec};

/// nb-signal always listens on :10000 besides `--port`; using 10000 itself keeps it to one port.
const PORT: u16 = 10000;
const WAIT: Duration = Duration::from_secs(20);

struct Signal(Child);

impl Signal {
    fn start(bin: &std::path::Path) -> Self {
        let child = Command::new(bin)
            .args([
                "run",
                "--port",
                &PORT.to_string(),
                "--metrics-port",
                "0",
                "--log-file",
                "console",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", PORT)).is_err() {
            assert!(Instant::now() < deadline, "nb-signal did not listen on {PORT}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node(n: u8, own: &PrivateKey, other: &PrivateKey, other_n: u8) -> Node {
    let mut s = spec(own, n);
    s.peers.push(peer(other, other_n, None));
    s.signal = Some(SignalSpec {
        url: format!("http://127.0.0.1:{PORT}"),
        ca_pem: None,
    });
    s.ice = Some(IceSpec {
        interfaces: Some(vec!["lo".into()]),
        ..Default::default()
    });
    let (e, o) = packet_socketpair().unwrap();
    let tun = Tun::from_fd(e, Framing::RawIp, FdOwnership::Owned).unwrap();
    let os = Tun::from_fd(o, Framing::RawIp, FdOwnership::Owned).unwrap();
    let options = EngineOptions {
        listen_ip: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    };
    let engine = Engine::start(s.validate().unwrap(), tun, options).unwrap();
    Node {
        engine,
        os,
        key: own.clone(),
        v4: format!("10.99.0.{n}").parse().unwrap(),
        v6: format!("fd99::{n}").parse().unwrap(),
    }
}

async fn wait_for(node: &Node, what: &str, mut done: impl FnMut(&peerlink_core::EngineStatus) -> bool) {
    let mut events = node.engine.subscribe();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(&node.engine.status()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what}: {:#?}",
            node.engine.status()
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
    }
}

/// Pings from `a` to `b` every 20 ms until one arrives; returns how long that took.
async fn ping_until_through(a: &Node, b: &Node) -> Duration {
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    for seq in 0.. {
        assert!(
            start.elapsed() < WAIT,
            "no packet through after {WAIT:?}: {:#?}",
            a.engine.status()
        );
        a.os.send(&icmp_echo_request(a.v4, b.v4, 5, seq, 16).unwrap())
            .await
            .unwrap();
        if let Ok(Ok(Some(p))) = tokio::time::timeout(Duration::from_millis(20), b.os.recv(&mut buf)).await {
            if parse_echo(p).is_some() {
                return start.elapsed();
            }
        }
    }
    unreachable!()
}

#[test]
fn engines_renegotiate_through_a_restarted_netbird_signal_server() {
    let Some(bin) = require_tool("nb-signal", "PEERLINK_NB_SIGNAL") else {
        return;
    };
    if let Err(why) = isolate_network() {
        // Port 10000 on the host's loopback may be taken by other tests; only run isolated.
        skip(&format!("needs a private network namespace (root): {why}"));
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = Signal::start(&bin);
        let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
        let started = Instant::now();
        let a = node(1, &ka, &kb, 2);
        let b = node(2, &kb, &ka, 1);
        let is_ice = |s: &peerlink_core::EngineStatus| s.peers[0].active_path == Some(PathKind::IceP2p);
        wait_for(&a, "ICE path", is_ice).await;
        let first = ping_until_through(&a, &b).await;
        println!(
            "figure start -> first packet through (signal server on loopback, ICE): {:?}",
            started.elapsed()
        );
        assert!(first < WAIT);

        drop(server);
        let signal_is = |want: fn(&SignalState) -> bool| {
            move |s: &peerlink_core::EngineStatus| s.signal.as_ref().is_some_and(want)
        };
        wait_for(
            &a,
            "signal loss",
            signal_is(|s| !matches!(s, SignalState::Connected)),
        )
        .await;
        let killed = Instant::now();
        let _server = Signal::start(&bin);
        wait_for(
            &a,
            "signal back",
            signal_is(|s| matches!(s, SignalState::Connected)),
        )
        .await;
        wait_for(
            &b,
            "signal back",
            signal_is(|s| matches!(s, SignalState::Connected)),
        )
        .await;
        println!(
            "figure server restart -> both peers registered again: {:?}",
            killed.elapsed()
        );

        // A network change restarts ICE: the old pair goes, new credentials go through the
        // restarted server, and a new pair carries the traffic.
        let mut events = a.engine.subscribe();
        let changed = Instant::now();
        a.engine.network_changed(true);
        let mut lost = false;
        loop {
            let e = tokio::time::timeout_at(tokio::time::Instant::now() + WAIT, events.recv()).await;
            match e {
                Ok(Ok(Event::PathChanged { kind: None, .. })) => lost = true,
                Ok(Ok(Event::PathChanged {
                    kind: Some(PathKind::IceP2p),
                    ..
                })) if lost => break,
                Ok(Ok(_)) => {}
                other => panic!("ICE not renegotiated after the network change: {other:?}"),
            }
        }
        ping_until_through(&a, &b).await;
        println!(
            "figure network change -> traffic flowing again (ICE only, no relay): {:?}",
            changed.elapsed()
        );
        a.engine.stop().await;
        b.engine.stop().await;
    });
}
