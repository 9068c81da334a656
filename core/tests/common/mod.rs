//! Two engines on loopback, each on a socketpair standing in for its tun.
#![allow(dead_code)]

pub mod lab;
pub mod pki;

use std::net::IpAddr;
use std::time::Duration;

use peerlink_core::tun::{packet_socketpair, FdOwnership, Framing, Tun};
use peerlink_core::{Engine, EngineOptions, EngineSpec, PeerSpec, PrivateKey};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct Node {
    pub engine: Engine,
    /// The operating system's side of the tun.
    pub os: Tun,
    pub key: PrivateKey,
    pub v4: IpAddr,
    pub v6: IpAddr,
}

impl Node {
    /// Node `n` of the test network: tunnel addresses 10.99.0.n and fd99::n.
    pub fn new(engine: Engine, os: Tun, key: PrivateKey, n: u8) -> Self {
        Node {
            engine,
            os,
            key,
            v4: format!("10.99.0.{n}").parse().unwrap(),
            v6: format!("fd99::{n}").parse().unwrap(),
        }
    }

    /// Reads packets from the OS side until one satisfies `pred`, or fails after WAIT.
    pub async fn recv_matching(&self, mut pred: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
        let mut buf = vec![0u8; 65536];
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = tokio::time::timeout_at(deadline, self.os.recv(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no matching packet within {WAIT:?}; status: {:#?}",
                        self.engine.status()
                    )
                })
                .expect("tun read")
                .expect("framing")
                .to_vec();
            if pred(&got) {
                return got;
            }
        }
    }

    /// An ICMP echo from this node's OS side to `to`'s, answered there, and the reply awaited
    /// here: traffic through the tunnel both ways.
    pub async fn ping(&self, to: &Node, seq: u16) {
        use peerlink_core::packet::{echo_reply_to, icmp_echo_request, parse_echo};
        self.os
            .send(&icmp_echo_request(self.v4, to.v4, 5, seq, 32).expect("echo request"))
            .await
            .expect("tun write");
        let req = to
            .recv_matching(|p| parse_echo(p).is_some_and(|e| !e.reply && e.seq == seq))
            .await;
        to.os
            .send(&echo_reply_to(&req).expect("echo reply"))
            .await
            .expect("tun write");
        self.recv_matching(|p| parse_echo(p).is_some_and(|e| e.reply && e.seq == seq))
            .await;
    }
}

pub fn spec(key: &PrivateKey, n: u8) -> EngineSpec {
    EngineSpec {
        private_key: key.to_base64(),
        addresses: vec![format!("10.99.0.{n}/24"), format!("fd99::{n}/64")],
        ..Default::default()
    }
}

pub fn peer(key: &PrivateKey, n: u8, endpoint: Option<std::net::SocketAddr>) -> PeerSpec {
    PeerSpec {
        public_key: key.public_key().to_base64(),
        allowed_ips: vec![format!("10.99.0.{n}/32"), format!("fd99::{n}/128")],
        endpoint: endpoint.map(|e| e.to_string()),
        ..Default::default()
    }
}

pub fn start(spec: EngineSpec) -> (Engine, Tun) {
    start_with(spec, None)
}

/// An engine on loopback with a socketpair for its tun, finding its peers through `hub` when
/// given; returns the engine and the OS side of its tun.
pub fn start_with(spec: EngineSpec, hub: Option<&peerlink_core::signal::SignalHub>) -> (Engine, Tun) {
    let (engine_end, os_end) = packet_socketpair().expect("socketpair");
    let tun = Tun::from_fd(engine_end, Framing::RawIp, FdOwnership::Owned).expect("tun");
    let os = Tun::from_fd(os_end, Framing::RawIp, FdOwnership::Owned).expect("os tun");
    let options = EngineOptions {
        listen_ip: "127.0.0.1".parse().unwrap(),
        signal: hub.map(|h| peerlink_core::conn::SignalSource::Hub(h.clone())),
        ..Default::default()
    };
    let engine = Engine::start(spec.validate().expect("valid spec"), tun, options).expect("engine starts");
    (engine, os)
}

/// Two engines, 10.99.0.1 and 10.99.0.2. `a` knows `b`'s endpoint; `b` learns `a`'s by roaming
/// when `b_knows_a` is false.
pub fn pair(b_knows_a: bool) -> (Node, Node) {
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let (b_engine, b_os) = start(spec(&kb, 2));
    let b_addr = b_engine.listen_addr();
    let mut sa = spec(&ka, 1);
    sa.peers.push(peer(&kb, 2, Some(b_addr)));
    let (a_engine, a_os) = start(sa);
    let mut sb = spec(&kb, 2);
    sb.peers
        .push(peer(&ka, 1, b_knows_a.then(|| a_engine.listen_addr())));
    b_engine.update_peers(sb.validate().unwrap().peers);
    (Node::new(a_engine, a_os, ka, 1), Node::new(b_engine, b_os, kb, 2))
}
