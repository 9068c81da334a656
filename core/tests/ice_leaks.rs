//! webrtc-ice frees sockets only when the last reference drops and has leaks reported
//! (DESIGN 12): start and close many agents and check that descriptors, threads and tasks
//! come back to where they were. Alone in its own test binary so nothing else moves the counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::time::Duration;

use peerlink_core::ice::{
    is_controlling, IceConfig, IceCredentials, IceEvent, IceSession, IceWorker, InterfaceFilter, PathBinding,
    ICE_EVENT_CAPACITY,
};
use peerlink_core::path::{PathId, INBOUND_CAPACITY};
use peerlink_core::{PrivateKey, PublicKey};
use tokio::sync::mpsc;

/// Agents started and closed without a peer.
const LONELY_AGENTS: usize = 200;
/// Pairs that connect before they close (a connected agent runs more tasks).
const CONNECTED_PAIRS: usize = 20;
/// Generous: a few descriptors or tasks may be in flight in the runtime when we count.
const TOLERANCE: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_and_closing_many_agents_leaks_no_descriptors_threads_or_tasks() {
    // One round first, so that lazily created runtime threads and statics exist at baseline.
    lonely_round().await;
    connected_round().await;
    let before = Usage::now();

    for _ in 0..LONELY_AGENTS {
        lonely_round().await;
    }
    for _ in 0..CONNECTED_PAIRS {
        connected_round().await;
    }

    let after = settle(&before).await;
    eprintln!("before {before:?}, after {after:?}");
    assert!(
        after.fds <= before.fds + TOLERANCE
            && after.threads <= before.threads + TOLERANCE
            && after.tasks <= before.tasks + TOLERANCE,
        "after {LONELY_AGENTS} lonely agents and {CONNECTED_PAIRS} connected pairs: before {before:?}, after {after:?}"
    );
}

async fn lonely_round() {
    let key = PrivateKey::generate().public_key();
    let (tx, mut rx) = mpsc::channel(ICE_EVENT_CAPACITY);
    let worker = IceWorker::start(config(), session(key, key, IceCredentials::generate()), tx)
        .await
        .expect("worker starts");
    // Wait for gathering to end, as a real session would before it is closed.
    while !matches!(rx.recv().await, Some(IceEvent::GatheringComplete) | None) {}
    worker.close().await;
}

async fn connected_round() {
    let (ka, kb) = (
        PrivateKey::generate().public_key(),
        PrivateKey::generate().public_key(),
    );
    let (ca, cb) = (IceCredentials::generate(), IceCredentials::generate());
    let (ta, mut ra) = mpsc::channel(ICE_EVENT_CAPACITY);
    let (tb, mut rb) = mpsc::channel(ICE_EVENT_CAPACITY);
    let mut sa = session(ka, kb, cb.clone());
    sa.local = ca.clone();
    let mut sb = session(kb, ka, ca);
    sb.local = cb;
    let a = IceWorker::start(config(), sa, ta).await.unwrap();
    let b = IceWorker::start(config(), sb, tb).await.unwrap();
    let mut connected = (false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(connected.0 && connected.1) {
        tokio::select! {
            Some(e) = ra.recv() => match e {
                IceEvent::LocalCandidate(c) => b.add_remote_candidate(&c).unwrap(),
                IceEvent::Connected { .. } => connected.0 = true,
                IceEvent::GatheringComplete | IceEvent::State(_) => {}
            },
            Some(e) = rb.recv() => match e {
                IceEvent::LocalCandidate(c) => a.add_remote_candidate(&c).unwrap(),
                IceEvent::Connected { .. } => connected.1 = true,
                IceEvent::GatheringComplete | IceEvent::State(_) => {}
            },
            _ = tokio::time::sleep_until(deadline) => panic!("pair did not connect: {connected:?}"),
        }
    }
    a.close().await;
    b.close().await;
}

fn config() -> IceConfig {
    IceConfig {
        interfaces: InterfaceFilter::loopback_only(),
        udp6: false,
        ..IceConfig::default()
    }
}

fn session(own: PublicKey, remote: PublicKey, remote_creds: IceCredentials) -> IceSession {
    let (inbound, _) = mpsc::channel(INBOUND_CAPACITY);
    IceSession {
        local: IceCredentials::generate(),
        remote: remote_creds,
        controlling: is_controlling(&own, &remote),
        use_turn: false,
        path: PathBinding {
            peer: remote,
            id: PathId(1),
            inbound,
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: usize,
    threads: usize,
    tasks: usize,
}

impl Usage {
    fn now() -> Usage {
        Usage {
            fds: std::fs::read_dir("/proc/self/fd").unwrap().count(),
            threads: std::fs::read_dir("/proc/self/task").unwrap().count(),
            tasks: tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        }
    }
}

/// Aborted tasks end at their next poll and sockets close when their last owner drops, so the
/// counts fall back a little after the last close: poll them (nothing to subscribe to), bounded.
async fn settle(before: &Usage) -> Usage {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = Usage::now();
        let settled = now.fds <= before.fds + TOLERANCE
            && now.threads <= before.threads + TOLERANCE
            && now.tasks <= before.tasks + TOLERANCE;
        if settled || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
