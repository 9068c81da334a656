//! The data plane's side of the seam: what the control plane may ask of it
//! ([`DataPlane`]), carried out on the peer table. It executes and reports; it never picks a
//! path.

use std::sync::Arc;

use boringtun::noise::TunnResult;

use super::{Shared, HANDSHAKE_BUFFER};
use crate::clock::Instant;
use crate::conn::plane::{DataPlane, PathObservation, PeerObservations};
use crate::keys::PublicKey;
use crate::path::{Path, PathId};

impl DataPlane for Shared {
    fn attach(&self, peer: &PublicKey, id: PathId, path: Arc<dyn Path>) -> bool {
        let table = self.table.load();
        let Some(p) = table.by_key.get(peer) else {
            return false;
        };
        tracing::debug!(peer = %peer, path = ?id, kind = %path.kind(), "path attached");
        p.attach(id, path);
        true
    }

    fn detach(&self, peer: &PublicKey, id: PathId) {
        let table = self.table.load();
        let Some(p) = table.by_key.get(peer) else { return };
        let before = p.active_path().map(|a| a.id);
        if p.detach(id) {
            tracing::debug!(peer = %peer, path = ?id, "path detached");
        }
        self.report_path_change(p, before);
    }

    fn activate(&self, peer: &PublicKey, id: Option<PathId>) -> bool {
        let table = self.table.load();
        let Some(p) = table.by_key.get(peer) else {
            return false;
        };
        let before = p.active_path().map(|a| a.id);
        let done = p.activate(id);
        self.report_path_change(p, before);
        // What WireGuard sent while there was no path (a reply, a handshake) goes out now.
        if let Some(active) = p.active_path() {
            let mut held = p.held.lock();
            if !held.is_empty() {
                if let Err(e) = active.send(Instant::now(), &held) {
                    tracing::trace!(peer = %peer, error = %e, "held datagram not sent");
                }
                held.clear();
            }
        }
        done
    }

    fn send_handshake(&self, peer: &PublicKey, id: PathId) -> bool {
        let table = self.table.load();
        let Some(p) = table.by_key.get(peer) else {
            return false;
        };
        let Some(path) = p.path(id) else {
            return false;
        };
        let mut buf = [0u8; HANDSHAKE_BUFFER];
        // Forced: a probe needs an initiation now, even while one is in flight (boringtun
        // would otherwise answer `Done` until its own retry). The new one supersedes it.
        let result = p.tunn.lock().format_handshake_initiation(&mut buf, true);
        let datagram = match result {
            TunnResult::WriteToNetwork(d) => d,
            TunnResult::Err(e) => {
                tracing::debug!(peer = %peer, path = ?id, error = ?e, "handshake initiation not formatted");
                return false;
            }
            TunnResult::Done | TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {
                return false
            }
        };
        match path.send(Instant::now(), datagram) {
            Ok(()) => {
                tracing::trace!(peer = %peer, path = ?id, "handshake initiation sent");
                true
            }
            Err(e) => {
                tracing::debug!(peer = %peer, path = ?id, error = %e, "handshake initiation not sent");
                p.counters.send_failed(1);
                false
            }
        }
    }

    fn observe(&self, peer: &PublicKey) -> Option<PeerObservations> {
        let table = self.table.load();
        let p = table.by_key.get(peer)?;
        let paths = p
            .paths()
            .iter()
            .map(|a| PathObservation {
                id: a.id,
                kind: a.path.kind(),
                observations: a.stats.snapshot(),
            })
            .collect();
        let since_handshake = p.tunn.lock().time_since_last_handshake();
        let counters = p.counters.snapshot();
        Some(PeerObservations {
            paths,
            since_handshake,
            no_path_drops: counters.no_path,
            tx_packets: counters.tx_packets,
            rx_packets: counters.rx_packets,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use boringtun::noise::Tunn;
    use parking_lot::Mutex;

    use super::*;
    use crate::conn::plane::PlaneEvent;
    use crate::engine::{Engine, EngineOptions};
    use crate::keys::PrivateKey;
    use crate::path::{Inbound, PathError, PathKind};
    use crate::tun::{packet_socketpair, FdOwnership, Framing, Tun};
    use crate::{EngineSpec, PeerSpec};

    const HANDSHAKE_INITIATION: u8 = 1;
    const HANDSHAKE_RESPONSE: u8 = 2;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_initiation_on_a_standby_path_is_answered_on_that_path() {
        let mut lab = Lab::start();
        let (relay, ice) = (lab.attach(PathKind::Relay), lab.attach(PathKind::IceP2p));
        assert!(lab.shared().activate(&lab.peer, Some(relay.0)));
        let mut buf = [0u8; HANDSHAKE_BUFFER];
        let TunnResult::WriteToNetwork(init) = lab.remote.format_handshake_initiation(&mut buf, false) else {
            panic!("the remote formats an initiation")
        };
        lab.deliver(ice.0, init).await;
        lab.until("the response leaves on the ICE path", || {
            ice.1.sent_types().contains(&HANDSHAKE_RESPONSE).then_some(())
        })
        .await;
        assert!(
            !relay.1.sent_types().contains(&HANDSHAKE_RESPONSE),
            "the active relay sent {:?}",
            relay.1.sent_types()
        );
        let seen = lab.path_observations(ice.0);
        assert!(
            seen.last_handshake_rx.is_some() && seen.last_data_rx.is_none(),
            "{seen:#?}"
        );
        lab.engine.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_probe_is_a_fresh_initiation_on_its_path_alone_and_its_answer_measures_the_rtt() {
        let mut lab = Lab::start();
        let (relay, ice) = (lab.attach(PathKind::Relay), lab.attach(PathKind::IceP2p));
        lab.shared().activate(&lab.peer, Some(relay.0));
        assert!(lab.shared().send_handshake(&lab.peer, ice.0));
        assert!(
            lab.shared().send_handshake(&lab.peer, ice.0),
            "a second probe while the first is in flight"
        );
        let sent = ice.1.sent();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent.iter().all(|d| d.first() == Some(&HANDSHAKE_INITIATION)));
        assert_ne!(sent.first(), sent.get(1), "each probe is a fresh initiation");
        assert!(relay.1.sent().is_empty(), "{:?}", relay.1.sent_types());

        let mut out = [0u8; 2048];
        let last = sent.get(1).expect("two initiations");
        let TunnResult::WriteToNetwork(response) = lab.remote.decapsulate(None, last, &mut out) else {
            panic!("the remote answers the newest initiation")
        };
        let response = response.to_vec();
        lab.deliver(ice.0, &response).await;
        let rtt = lab
            .until("the response measures the ICE path's rtt", || {
                lab.path_observations(ice.0).rtt
            })
            .await;
        assert!(rtt < Duration::from_secs(5), "{rtt:?}");
        let seen = lab.shared().observe(&lab.peer).expect("configured");
        assert!(seen.since_handshake.is_some(), "{seen:#?}");
        assert_eq!(lab.path_observations(relay.0).rtt, None);
        lab.engine.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attach_activate_and_detach_leave_the_choice_to_the_caller() {
        let mut lab = Lab::start();
        let relay = lab.attach(PathKind::Relay);
        let ice = lab.attach(PathKind::IceP2p);
        let active = |lab: &Lab| lab.engine.status().peers.first().and_then(|p| p.active_path);
        assert_eq!(active(&lab), None, "attaching activates nothing");
        assert!(lab.shared().activate(&lab.peer, Some(ice.0)));
        assert!(!lab.shared().activate(&lab.peer, Some(PathId(999))));
        assert!(!lab.shared().send_handshake(&lab.peer, PathId(999)));
        lab.shared().detach(&lab.peer, ice.0);
        assert_eq!(active(&lab), None, "the relay is not picked by the data plane");
        let kinds: Vec<_> = lab
            .shared()
            .observe(&lab.peer)
            .expect("configured")
            .paths
            .iter()
            .map(|p| (p.id, p.kind))
            .collect();
        assert_eq!(kinds, vec![(relay.0, PathKind::Relay)]);
        let stranger = PrivateKey::generate().public_key();
        assert!(lab.shared().observe(&stranger).is_none());
        assert!(!lab
            .shared()
            .attach(&stranger, PathId(1000), Recorder::new(PathKind::Relay)));
        lab.engine.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_endpoint_on_the_engine_socket_is_reported_as_a_direct_path() {
        let mut lab = Lab::start();
        let mut events = lab.shared().take_plane_events().expect("first take");
        assert!(lab.shared().take_plane_events().is_none(), "taken once");
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut buf = [0u8; HANDSHAKE_BUFFER];
        let TunnResult::WriteToNetwork(init) = lab.remote.format_handshake_initiation(&mut buf, false) else {
            panic!("the remote formats an initiation")
        };
        socket
            .send_to(init, lab.engine.listen_addr())
            .await
            .expect("send");
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("reported within 5 s")
            .expect("channel open");
        let PlaneEvent::PathAdded { peer, id } = event else {
            panic!("a new path is reported first: {event:?}")
        };
        assert_eq!(peer, lab.peer);
        let mut reply = [0u8; 256];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut reply))
            .await
            .expect("answered within 5 s")
            .expect("recv");
        assert_eq!(reply.get(..n).and_then(|r| r.first()), Some(&HANDSHAKE_RESPONSE));
        let seen = lab.shared().observe(&lab.peer).expect("configured");
        let direct = seen.paths.iter().find(|p| p.id == id).expect("attached");
        assert_eq!(direct.kind, PathKind::Direct);
        assert!(direct.observations.last_handshake_rx.is_some(), "{seen:#?}");
        lab.engine.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_initiation_sent_without_a_path_is_not_replayed_when_one_is_activated() {
        let mut lab = Lab::start();
        let (id, path) = lab.attach(PathKind::Relay);
        let request = crate::packet::icmp_echo_request(
            "10.98.0.1".parse().expect("address"),
            "10.98.0.2".parse().expect("address"),
            1,
            1,
            8,
        )
        .expect("packet");
        lab._os.send(&request).await.expect("tun write");
        // No path is active: boringtun's handshake initiation has nowhere to go.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while lab
            .engine
            .status()
            .peers
            .first()
            .map_or(0, |p| p.counters.no_path)
            == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the initiation met no path within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(path.sent().is_empty(), "nothing goes out on an inactive path");
        assert!(lab.shared().activate(&lab.peer, Some(id)));
        // The control plane sends a fresh initiation itself; an older one replayed here would
        // be answered and then rejected as superseded.
        assert!(path.sent().is_empty(), "{:?}", path.sent_types());
        lab.engine.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_update_that_adds_an_endpoint_attaches_a_direct_path_to_the_kept_peer() {
        let lab = Lab::start();
        let own = lab.engine.public_key();
        let endpoint: std::net::SocketAddr = "127.0.0.1:9".parse().expect("address");
        let update = |endpoint: Option<std::net::SocketAddr>| {
            crate::config::validate_peers(
                &[PeerSpec {
                    public_key: lab.peer.to_base64(),
                    allowed_ips: vec!["10.98.0.2/32".into()],
                    endpoint: endpoint.map(|e| e.to_string()),
                    ..Default::default()
                }],
                own,
            )
            .expect("valid")
        };
        lab.engine.update_peers(update(Some(endpoint)));
        let direct: Vec<_> = lab
            .shared()
            .observe(&lab.peer)
            .expect("configured")
            .paths
            .into_iter()
            .filter(|p| p.kind == PathKind::Direct)
            .collect();
        assert_eq!(direct.len(), 1, "{direct:?}");
        let kept = lab.shared().table.load().by_key.get(&lab.peer).map(|p| p.index);
        lab.engine.update_peers(update(Some(endpoint)));
        assert_eq!(
            lab.shared().table.load().by_key.get(&lab.peer).map(|p| p.index),
            kept,
            "the peer (and its session) is kept"
        );
        lab.engine.stop().await;
    }

    /// An engine whose one peer, `remote`, has no endpoint.
    struct Lab {
        engine: Engine,
        _os: Tun,
        peer: PublicKey,
        remote: Tunn,
    }

    impl Lab {
        fn start() -> Lab {
            let (own, theirs) = (PrivateKey::generate(), PrivateKey::generate());
            let spec = EngineSpec {
                private_key: own.to_base64(),
                addresses: vec!["10.98.0.1/24".into()],
                peers: vec![PeerSpec {
                    public_key: theirs.public_key().to_base64(),
                    allowed_ips: vec!["10.98.0.2/32".into()],
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
            let engine =
                Engine::start_data_plane(spec.validate().expect("valid"), tun, options).expect("starts");
            let remote = Tunn::new(
                theirs.to_x25519(),
                own.public_key().to_x25519(),
                None,
                None,
                1,
                None,
            );
            Lab {
                engine,
                _os: os,
                peer: theirs.public_key(),
                remote,
            }
        }

        fn shared(&self) -> &Shared {
            &self.engine.shared
        }

        fn attach(&mut self, kind: PathKind) -> (PathId, Arc<Recorder>) {
            let id = self.shared().next_path_id();
            let path = Recorder::new(kind);
            assert!(self.shared().attach(&self.peer, id, path.clone()));
            (id, path)
        }

        async fn deliver(&self, path: PathId, datagram: &[u8]) {
            let inbound = Inbound {
                peer: self.peer,
                path,
                datagram: bytes::Bytes::copy_from_slice(datagram),
            };
            self.shared().inbound.send(inbound).await.expect("inbound open");
        }

        fn path_observations(&self, id: PathId) -> crate::path::PathObservations {
            let seen = self.shared().observe(&self.peer).expect("configured");
            seen.paths
                .iter()
                .find(|p| p.id == id)
                .map(|p| p.observations)
                .unwrap_or_else(|| panic!("path {id:?} is attached: {seen:#?}"))
        }

        async fn until<T>(&self, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
            for _ in 0..500 {
                if let Some(t) = done() {
                    return t;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{what}: not within 5 s; {:#?}", self.shared().observe(&self.peer));
        }
    }

    /// A path that keeps what it is asked to send.
    #[derive(Debug)]
    struct Recorder {
        kind: PathKind,
        sent: Mutex<Vec<Vec<u8>>>,
    }

    impl Recorder {
        fn new(kind: PathKind) -> Arc<Recorder> {
            Arc::new(Recorder {
                kind,
                sent: Mutex::new(Vec::new()),
            })
        }

        fn sent(&self) -> Vec<Vec<u8>> {
            self.sent.lock().clone()
        }

        fn sent_types(&self) -> Vec<u8> {
            self.sent
                .lock()
                .iter()
                .filter_map(|d| d.first().copied())
                .collect()
        }
    }

    impl Path for Recorder {
        fn kind(&self) -> PathKind {
            self.kind
        }
        fn remote(&self) -> String {
            format!("recorder ({})", self.kind)
        }
        fn send(&self, datagram: &[u8]) -> Result<(), PathError> {
            self.sent.lock().push(datagram.to_vec());
            Ok(())
        }
    }
}
