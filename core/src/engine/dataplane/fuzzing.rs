//! A real data plane for the fuzz targets `udp_demux` and `ip_packet`: an engine on a loopback
//! UDP socket with a socketpair for its tun and one peer, whose WireGuard side the rig plays
//! from its own UDP socket, and firewall rules so that the filter runs. The targets call the
//! data plane's receive and send paths directly, without the sockets' wakeups in between.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::LazyLock;
use std::time::Duration;

use boringtun::noise::{Tunn, TunnResult};
use parking_lot::Mutex;

use super::demux::{classify, Datagram};
use super::{Rx, SendBatch, Source};
use crate::config::{EngineSpec, PeerSpec};
use crate::engine::{Engine, EngineOptions};
use crate::filter::RuleSet;
use crate::keys::{PrivateKey, PublicKey};
use crate::mgmt::proto::{FirewallRule, RuleAction, RuleDirection, RuleProtocol};
use crate::path::PathId;
use crate::tun::{packet_socketpair, FdOwnership, Framing, Tun};
use crate::wg::PACKET_BUFFER;

/// WireGuard's message types (the first byte of a datagram).
const HANDSHAKE_INITIATION: u8 = 1;
const HANDSHAKE_RESPONSE: u8 = 2;
/// How long the rig waits for the engine's handshake response on loopback: generous, it comes
/// in microseconds.
const RESPONSE_WAIT: Duration = Duration::from_secs(2);

/// The engine's private key in the rig, and its peer's; fixed so that seeds can carry real
/// handshakes and a finding replays.
pub const ENGINE_KEY: [u8; 32] = [0x33; 32];
pub const PEER_KEY: [u8; 32] = [0x44; 32];

/// `datagram` from the network: its first byte picks where it came from (the engine's socket,
/// a path of the peer) or makes the rest an IP packet that the peer seals in a valid session.
pub fn udp_demux(data: &[u8]) {
    let Some((&mode, datagram)) = data.split_first() else {
        return;
    };
    let rig = &*RIG;
    let kind = classify(datagram);
    assert_eq!(kind == Datagram::NetbirdPunch, datagram == b"nb");
    if kind == Datagram::Stun {
        // What ICE's side of the socket reads: our Binding's answer, else the agents' traffic.
        let _ = crate::ice::stun::response_transaction(datagram);
        let _ = crate::ice::stun::mapped_address(datagram);
    }
    match mode % 3 {
        0 => {
            let before = rig.engine.shared.counters.snapshot().net_garbage;
            rig.receive(datagram, Source::Direct(rig.peer_addr));
            let garbage = rig.engine.shared.counters.snapshot().net_garbage - before;
            let wireguard = Tunn::parse_incoming_packet(datagram).is_ok();
            // Counted as garbage exactly when it is neither WireGuard, STUN for ICE nor
            // NetBird's punch.
            let expected = match kind {
                Datagram::WireGuard => !wireguard,
                Datagram::Stun | Datagram::NetbirdPunch => false,
                Datagram::Other => true,
            };
            assert_eq!(garbage == 1, expected);
        }
        1 => rig.receive(
            datagram,
            Source::Path {
                peer: rig.peer,
                path: PathId(u64::from(mode)),
            },
        ),
        _ => rig.sealed_by_peer(datagram),
    }
    rig.drain_tun();
}

/// An IP packet from the tun through the router to the peer, and the same bytes sealed by the
/// peer through WireGuard, the source check and the filter to the tun.
pub fn ip_packet_through_router(packet: &[u8]) {
    let rig = &*RIG;
    let mut out = vec![0u8; PACKET_BUFFER];
    let mut batch = SendBatch::new();
    if !packet.is_empty() && packet.len() <= PACKET_BUFFER - 32 {
        rig.engine.shared.send_to_peer(packet, &mut out, &mut batch);
        batch.flush(&rig.engine.shared.udp, crate::clock::Instant::now());
    }
    let before = rig.peer_rx_packets();
    rig.sealed_by_peer(packet);
    rig.drain_tun();
    // A ping from the peer's address to ours, as a host builds it, passes every check (the
    // rules accept ICMP): proof that the rig's session and the path to the tun work.
    if is_ping_from_peer(packet) {
        assert_eq!(
            rig.peer_rx_packets(),
            before + 1,
            "a ping from the peer did not reach the tun"
        );
    }
}

fn is_ping_from_peer(packet: &[u8]) -> bool {
    let Some(echo) = crate::packet::parse_echo(packet) else {
        return false;
    };
    let Some(len) = packet.len().checked_sub(28) else {
        return false;
    };
    let (peer, own) = (IpAddr::from([10, 98, 0, 2]), IpAddr::from([10, 98, 0, 1]));
    let canonical = crate::packet::icmp_echo_request(peer, own, echo.id, echo.seq, len);
    !echo.reply && canonical.is_some_and(|c| c == packet)
}

static RIG: LazyLock<Rig> = LazyLock::new(Rig::start);

struct Rig {
    /// Runs the engine's own tasks, and the I/O driver its sockets need.
    _runtime: tokio::runtime::Runtime,
    engine: Engine,
    /// The other end of the engine's tun.
    os: Tun,
    peer: PublicKey,
    /// The peer's WireGuard, and the socket it speaks from.
    remote: Mutex<Tunn>,
    socket: UdpSocket,
    peer_addr: SocketAddr,
}

impl Rig {
    #[allow(
        clippy::expect_used,
        reason = "the rig's setup; a fuzz run cannot start without it"
    )]
    fn start() -> Rig {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let _entered = runtime.enter();
        let (own, theirs) = (
            PrivateKey::from_bytes(ENGINE_KEY),
            PrivateKey::from_bytes(PEER_KEY),
        );
        let spec = EngineSpec {
            private_key: own.to_base64(),
            addresses: vec!["10.98.0.1/24".into(), "fd98::1/64".into()],
            peers: vec![PeerSpec {
                public_key: theirs.public_key().to_base64(),
                allowed_ips: vec!["10.98.0.2/32".into(), "fd98::2/128".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let (engine_end, os_end) = packet_socketpair().expect("socketpair");
        let tun = Tun::from_fd(engine_end, Framing::RawIp, FdOwnership::Owned).expect("tun");
        let os = Tun::from_fd(os_end, Framing::RawIp, FdOwnership::Owned).expect("os tun");
        let options = EngineOptions {
            listen_ip: "127.0.0.1".parse().expect("address"),
            ..Default::default()
        };
        let engine = Engine::start_data_plane(spec.validate().expect("valid"), tun, options).expect("starts");
        engine.set_firewall_rules(Some(rules()));
        let socket = UdpSocket::bind("127.0.0.1:0").expect("peer socket");
        socket.set_read_timeout(Some(RESPONSE_WAIT)).expect("timeout");
        let peer_addr = socket.local_addr().expect("address");
        let remote = Tunn::new(
            theirs.to_x25519(),
            own.public_key().to_x25519(),
            None,
            None,
            1,
            None,
        );
        let rig = Rig {
            _runtime: runtime,
            engine,
            os,
            peer: theirs.public_key(),
            remote: Mutex::new(remote),
            socket,
            peer_addr,
        };
        let mut out = vec![0u8; PACKET_BUFFER];
        let init = match rig.remote.lock().format_handshake_initiation(&mut out, false) {
            TunnResult::WriteToNetwork(init) => init.to_vec(),
            other => panic!("no handshake initiation: {other:?}"),
        };
        rig.handshake(&init);
        let direct = rig
            .engine
            .shared
            .table
            .load()
            .by_key
            .get(&rig.peer)
            .and_then(|p| {
                let id = p.paths().first().map(|path| path.id);
                id.map(|id| p.activate(Some(id)))
            });
        assert_eq!(direct, Some(true), "the handshake made no direct path");
        rig
    }

    fn peer_rx_packets(&self) -> u64 {
        let table = self.engine.shared.table.load();
        table
            .by_key
            .get(&self.peer)
            .map_or(0, |p| p.counters.snapshot().rx_packets)
    }

    fn receive(&self, datagram: &[u8], source: Source) {
        let mut rx = Rx::new();
        self.engine.shared.receive(datagram, source, &mut rx);
        self.engine.shared.flush_tun(&mut rx.tun);
    }

    /// `packet` sealed by the peer and received from its address; a new handshake first when
    /// the peer's session needs one.
    fn sealed_by_peer(&self, packet: &[u8]) {
        let mut out = vec![0u8; PACKET_BUFFER + 32];
        let sealed = match self.remote.lock().encapsulate(packet, &mut out) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            TunnResult::Done | TunnResult::Err(_) => return,
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => return,
        };
        if sealed.first() == Some(&HANDSHAKE_INITIATION) {
            // The session expired (a long run): boringtun queued the packet behind a handshake.
            self.handshake(&sealed);
            return;
        }
        self.receive(&sealed, Source::Direct(self.peer_addr));
    }

    /// Runs the peer's handshake `init` with the engine over the real sockets.
    #[allow(clippy::expect_used, reason = "a failed handshake on loopback is a finding")]
    fn handshake(&self, init: &[u8]) {
        self.receive(init, Source::Direct(self.peer_addr));
        let mut buf = vec![0u8; PACKET_BUFFER];
        let response = loop {
            let n = self
                .socket
                .recv(&mut buf)
                .expect("the engine answers a handshake");
            if buf.first() == Some(&HANDSHAKE_RESPONSE) {
                break buf.get(..n).unwrap_or_default().to_vec();
            }
        };
        let mut out = vec![0u8; PACKET_BUFFER];
        let mut remote = self.remote.lock();
        let mut result = remote.decapsulate(None, &response, &mut out);
        // The keepalive (or queued packet) that confirms the session to the engine.
        while let TunnResult::WriteToNetwork(d) = result {
            let d = d.to_vec();
            self.receive(&d, Source::Direct(self.peer_addr));
            result = remote.decapsulate(None, &[], &mut out);
        }
    }

    /// Reads what the engine wrote to its tun, so that it never fills.
    fn drain_tun(&self) {
        let mut buf = vec![0u8; PACKET_BUFFER];
        while let Ok(Some(_)) = self.os.try_recv(&mut buf) {}
    }
}

/// Accept TCP to port 22 and ICMP from the peer, drop UDP 53: every branch of the filter.
fn rules() -> RuleSet {
    let rule = |protocol: RuleProtocol, action: RuleAction, port: &str| FirewallRule {
        peer_ip: "10.98.0.2".into(),
        direction: RuleDirection::In as i32,
        action: action as i32,
        protocol: protocol as i32,
        port: port.into(),
        ..FirewallRule::default()
    };
    RuleSet::from_map(
        &[
            rule(RuleProtocol::Tcp, RuleAction::Accept, "22"),
            rule(RuleProtocol::Icmp, RuleAction::Accept, ""),
            rule(RuleProtocol::Udp, RuleAction::Drop, "53"),
        ],
        false,
    )
}
