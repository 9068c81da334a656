//! ICE workers on loopback: two agents exchange candidates over channels and connect with host
//! candidates; WireGuard crosses two real engines over the ICE paths; bad input is ignored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{peer, spec, start, Node, WAIT};
use peerlink_core::ice::{
    is_controlling, CandidateKind, ConnectedPath, IceConfig, IceCredentials, IceError, IceEvent, IcePath,
    IceSession, IceState, IceWorker, InterfaceFilter, PairInfo, PathBinding, Rejection, SessionChange,
    ICE_EVENT_CAPACITY,
};
use peerlink_core::packet::{echo_reply_to, icmp_echo_request, parse_echo};
use peerlink_core::path::{Inbound, Path, PathId, PathKind, INBOUND_CAPACITY};
use peerlink_core::{PrivateKey, PublicKey};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_connect_with_host_candidates_and_carry_datagrams() {
    let (mut a, mut b) = Side::pair().await;
    let (pa, pb) = connect(&mut a, &mut b).await;
    for (info, who) in [(pa.info(), "a"), (pb.info(), "b")] {
        assert_eq!(info.path_kind(), PathKind::IceP2p, "{who}: {info}");
        assert_eq!(info.local.kind, CandidateKind::Host, "{who}: {info}");
        assert!(info.local.addr.ip().is_loopback(), "{who}: {info}");
        assert!(info.time_to_connect < WAIT, "{who}: {info:?}");
    }
    assert_eq!(pa.kind(), PathKind::IceP2p);
    assert_eq!(
        pa.remote(),
        pb.info().local.addr.to_string(),
        "a's remote is b's local candidate"
    );

    pa.send(b"from a").unwrap();
    let got = b.recv_inbound().await;
    assert_eq!(
        (got.peer, got.path, &got.datagram[..]),
        (a.key, b.plan.path_id, &b"from a"[..])
    );
    pb.send(b"from b").unwrap();
    let got = a.recv_inbound().await;
    assert_eq!(
        (got.peer, got.path, &got.datagram[..]),
        (b.key, a.plan.path_id, &b"from b"[..])
    );

    a.worker.close().await;
    assert!(!pa.is_open());
    assert!(matches!(
        pa.send(b"late"),
        Err(peerlink_core::path::PathError::Closed)
    ));
    while !matches!(a.next_event().await, IceEvent::State(IceState::Closed)) {}
    b.worker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wireguard_crosses_two_engines_over_ice_both_ways() {
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let mut sa = spec(&ka, 1);
    sa.peers.push(peer(&kb, 2, None));
    let mut sb = spec(&kb, 2);
    sb.peers.push(peer(&ka, 1, None));
    let (ea, oa) = start(sa);
    let (eb, ob) = start(sb);
    let node = |engine, os, key, n: u8| Node {
        engine,
        os,
        key,
        v4: format!("10.99.0.{n}").parse().unwrap(),
        v6: format!("fd99::{n}").parse().unwrap(),
    };
    let (na, nb) = (node(ea, oa, ka, 1), node(eb, ob, kb, 2));
    let (pka, pkb) = (na.key.public_key(), nb.key.public_key());
    let (ida, idb) = (na.engine.new_path_id(), nb.engine.new_path_id());
    let mut plan_a = Plan::new(pka, pkb, ida, na.engine.inbound());
    let mut plan_b = Plan::new(pkb, pka, idb, nb.engine.inbound());
    cross(&mut plan_a, &mut plan_b);
    let (mut a, mut b) = (plan_a.start().await, plan_b.start().await);
    let (pa, pb) = connect(&mut a, &mut b).await;
    na.engine.attach_path(&pkb, ida, pa.clone()).unwrap();
    nb.engine.attach_path(&pka, idb, pb.clone()).unwrap();

    // Either side may initiate the WireGuard handshake, and the first packets may wait for it:
    // each direction is proven by a request that arrives, whoever shook hands first.
    let a_to_b = ping_through(&na, &nb).await;
    let b_to_a = ping_through(&nb, &na).await;
    nb.os.send(&echo_reply_to(&a_to_b).unwrap()).await.unwrap();
    let reply = na
        .recv_matching(|p| parse_echo(p).is_some_and(|e| e.reply && e.src == nb.v4))
        .await;
    assert_eq!(parse_echo(&reply).unwrap().seq, parse_echo(&a_to_b).unwrap().seq);
    assert_eq!(parse_echo(&b_to_a).unwrap().dst, na.v4);

    for (engine, who) in [(&na.engine, "a"), (&nb.engine, "b")] {
        let status = engine.status();
        let p = &status.peers[0];
        assert_eq!(p.active_path, Some(PathKind::IceP2p), "{who}: {p:#?}");
        assert!(p.is_connected(), "{who}: {p:#?}");
    }
    assert!(
        pa.rtt().is_some() || pb.rtt().is_some(),
        "the side that initiated the handshake timed it on its ICE path: a {:?}, b {:?}",
        pa.rtt(),
        pb.rtt()
    );

    a.worker.close().await;
    b.worker.close().await;
    na.engine.stop().await;
    nb.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_remote_input_is_ignored_counted_and_the_agent_keeps_working() {
    let (mut a, mut b) = Side::pair().await;
    let w = &b.worker;
    let bad = [
        ("garbage", "malformed"),
        ("1 1 udp 1 not-an-ip 5 typ host", "malformed"),
        (
            "1 1 tcp 2128609279 127.0.0.1 9 typ host tcptype active",
            "unsupported",
        ),
        ("1 1 udp 1 abcdef.local 5 typ host", "unsupported"),
    ];
    for (raw, why) in bad {
        assert!(
            matches!(w.add_remote_candidate(raw), Err(IceError::Rejected(_))),
            "{why}: {raw}"
        );
    }
    let stale = w.add_remote_candidate_for("someoldufrag", "1 1 udp 1 127.0.0.1 5 typ host");
    assert!(matches!(
        stale,
        Err(IceError::Rejected(Rejection::StaleSession { .. }))
    ));
    let empty = b.plan.session_with(IceCredentials::new("", ""));
    assert!(matches!(
        w.restart(empty).await,
        Err(IceError::InvalidRemoteCredentials)
    ));
    let c = w.counters();
    assert_eq!(
        (c.malformed, c.unsupported, c.stale_session, c.bad_credentials),
        (2, 2, 1, 1),
        "{c:?}"
    );

    // The agent is unharmed: the pair connects, and a repeated candidate is a duplicate.
    let (pa, _pb) = connect_with(&mut a, &mut b, |to, cand| {
        to.worker.add_remote_candidate(cand).unwrap();
        assert!(matches!(
            to.worker.add_remote_candidate(cand),
            Err(IceError::Rejected(Rejection::Duplicate))
        ));
    })
    .await;
    assert_eq!(pa.kind(), PathKind::IceP2p);
    assert!(b.worker.counters().duplicate >= 1);
    a.worker.close().await;
    b.worker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_empty_remote_credentials() {
    let (a, _) = Plan::pair();
    let (tx, _rx) = mpsc::channel(ICE_EVENT_CAPACITY);
    let session = a.session_with(IceCredentials::new("", ""));
    assert!(matches!(
        IceWorker::start(test_config(), session, tx).await,
        Err(IceError::InvalidRemoteCredentials)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_session_keeps_the_agent_and_a_new_one_restarts_it() {
    let (mut a, mut b) = Side::pair().await;
    let (pa, _pb) = connect(&mut a, &mut b).await;

    let same = a.plan.session();
    assert_eq!(a.worker.restart(same).await.unwrap(), SessionChange::Same);
    assert!(pa.is_open(), "the same session leaves the path alone");

    // Both sides start a new session with fresh credentials and new path ids.
    for side in [&mut a, &mut b] {
        side.plan.local_creds = IceCredentials::generate();
        side.plan.path_id = PathId(side.plan.path_id.0 + 100);
    }
    cross(&mut a.plan, &mut b.plan);
    assert_eq!(
        a.worker.restart(a.plan.session()).await.unwrap(),
        SessionChange::New
    );
    assert_eq!(
        b.worker.restart(b.plan.session()).await.unwrap(),
        SessionChange::New
    );
    assert!(!pa.is_open(), "the old session's path is closed");
    assert_eq!(
        a.worker.remote_ufrag().as_deref(),
        Some(b.plan.local_creds.ufrag.as_str())
    );

    let (pa2, _) = connect(&mut a, &mut b).await;
    pa2.send(b"new session").unwrap();
    let got = b.recv_inbound().await;
    assert_eq!(
        (got.path, &got.datagram[..]),
        (b.plan.path_id, &b"new session"[..])
    );
    a.worker.close().await;
    b.worker.close().await;
}

/// Loopback candidates only, IPv4 only, NetBird's timings.
fn test_config() -> IceConfig {
    IceConfig {
        interfaces: InterfaceFilter::loopback_only(),
        udp6: false,
        ..IceConfig::default()
    }
}

/// What one side of a session is made of, before its worker starts.
struct Plan {
    key: PublicKey,
    remote_key: PublicKey,
    path_id: PathId,
    local_creds: IceCredentials,
    remote_creds: IceCredentials,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound: Option<mpsc::Receiver<Inbound>>,
}

impl Plan {
    fn new(
        key: PublicKey,
        remote_key: PublicKey,
        path_id: PathId,
        inbound_tx: mpsc::Sender<Inbound>,
    ) -> Plan {
        Plan {
            key,
            remote_key,
            path_id,
            local_creds: IceCredentials::generate(),
            remote_creds: IceCredentials::new("", ""),
            inbound_tx,
            inbound: None,
        }
    }

    /// Two plans on test channels that know each other's credentials.
    fn pair() -> (Plan, Plan) {
        let (ka, kb) = (
            PrivateKey::generate().public_key(),
            PrivateKey::generate().public_key(),
        );
        let (a_tx, a_rx) = mpsc::channel(INBOUND_CAPACITY);
        let (b_tx, b_rx) = mpsc::channel(INBOUND_CAPACITY);
        let mut a = Plan::new(ka, kb, PathId(1), a_tx);
        let mut b = Plan::new(kb, ka, PathId(2), b_tx);
        a.inbound = Some(a_rx);
        b.inbound = Some(b_rx);
        cross(&mut a, &mut b);
        (a, b)
    }

    fn session_with(&self, remote: IceCredentials) -> IceSession {
        IceSession {
            local: self.local_creds.clone(),
            remote,
            controlling: is_controlling(&self.key, &self.remote_key),
            use_turn: false,
            path: PathBinding {
                peer: self.remote_key,
                id: self.path_id,
                inbound: self.inbound_tx.clone(),
            },
        }
    }

    fn session(&self) -> IceSession {
        self.session_with(self.remote_creds.clone())
    }

    async fn start(mut self) -> Side {
        let (events_tx, events) = mpsc::channel(ICE_EVENT_CAPACITY);
        let worker = IceWorker::start(test_config(), self.session(), events_tx)
            .await
            .expect("worker starts");
        Side {
            key: self.key,
            inbound: self.inbound.take(),
            plan: self,
            worker,
            events,
            log: Vec::new(),
        }
    }
}

fn cross(a: &mut Plan, b: &mut Plan) {
    a.remote_creds = b.local_creds.clone();
    b.remote_creds = a.local_creds.clone();
}

/// One started side: its worker, its events and what its path delivers.
struct Side {
    key: PublicKey,
    plan: Plan,
    worker: IceWorker,
    events: mpsc::Receiver<IceEvent>,
    inbound: Option<mpsc::Receiver<Inbound>>,
    /// Events seen so far, for failure reports.
    log: Vec<String>,
}

impl Side {
    async fn pair() -> (Side, Side) {
        let (a, b) = Plan::pair();
        (a.start().await, b.start().await)
    }

    async fn next_event(&mut self) -> IceEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .unwrap_or_else(|_| panic!("no ICE event within {WAIT:?}; seen: {:?}", self.log))
            .expect("event channel open")
    }

    async fn recv_inbound(&mut self) -> Inbound {
        let rx = self
            .inbound
            .as_mut()
            .expect("this side's inbound is a test channel");
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a datagram within WAIT")
            .expect("inbound open")
    }
}

/// Relays candidates between the two sides (as signal would) until both are connected.
async fn connect(a: &mut Side, b: &mut Side) -> (Arc<IcePath>, Arc<IcePath>) {
    connect_with(a, b, |to, cand| {
        to.worker.add_remote_candidate(cand).unwrap();
    })
    .await
}

async fn connect_with(
    a: &mut Side,
    b: &mut Side,
    deliver: impl Fn(&Side, &str),
) -> (Arc<IcePath>, Arc<IcePath>) {
    let mut paths: (Option<Arc<IcePath>>, Option<Arc<IcePath>>) = (None, None);
    let deadline = tokio::time::Instant::now() + WAIT;
    while paths.0.is_none() || paths.1.is_none() {
        let (event, from_a) = tokio::select! {
            e = a.events.recv() => (e, true),
            e = b.events.recv() => (e, false),
            _ = tokio::time::sleep_until(deadline) => panic!(
                "not connected within {WAIT:?}; a saw {:?}; b saw {:?}", a.log, b.log
            ),
        };
        let event = event.expect("event channel open");
        let (from, to) = if from_a { (&mut *a, &*b) } else { (&mut *b, &*a) };
        from.log.push(format!("{event:?}"));
        match event {
            IceEvent::LocalCandidate(c) => deliver(to, &c),
            IceEvent::Connected { path, info } => {
                check_info(&info);
                let ConnectedPath::Agent(path) = path else {
                    panic!("a worker with sockets of its own connected on a shared one")
                };
                if from_a {
                    paths.0 = Some(path);
                } else {
                    paths.1 = Some(path);
                }
            }
            IceEvent::State(IceState::Failed) => panic!("ICE failed; log {:?}", from.log),
            IceEvent::GatheringComplete | IceEvent::State(_) => {}
        }
    }
    (paths.0.unwrap(), paths.1.unwrap())
}

/// Two of WireGuard's REKEY_TIMEOUT (5 s) retries plus slack for a loaded machine: the first
/// handshake may be lost while the paths are being attached.
const THROUGH: Duration = Duration::from_secs(30);
/// How often `ping_through` sends another request while no packet has arrived.
const RESEND: Duration = Duration::from_millis(100);

/// Sends echo requests from `from` to `to` until one arrives at `to`'s tun (returned), failing
/// after THROUGH with both engines' status.
async fn ping_through(from: &Node, to: &Node) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + THROUGH;
    for seq in 1u16.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no echo request from {} reached {} within {THROUGH:?}; sender: {:#?}; receiver: {:#?}",
            from.v4,
            to.v4,
            from.engine.status(),
            to.engine.status()
        );
        let request = icmp_echo_request(from.v4, to.v4, 7, seq, 64).unwrap();
        from.os.send(&request).await.unwrap();
        let resend = tokio::time::Instant::now() + RESEND;
        while let Ok(got) = tokio::time::timeout_at(resend, to.os.recv(&mut buf)).await {
            let got = got.expect("tun read").expect("framing");
            if parse_echo(got).is_some_and(|e| !e.reply && e.src == from.v4) {
                return got.to_vec();
            }
        }
    }
    unreachable!("u16 sequence numbers ran out before THROUGH passed")
}

fn check_info(info: &PairInfo) {
    assert_ne!(info.local.addr.port(), 0, "{info}");
    assert_ne!(info.remote.addr.port(), 0, "{info}");
}
