//! `peerlink demo`: two engines in this process, each on one end of a socketpair standing in for
//! its tun. They know only each other's public keys: they meet through an in-process signal hub
//! (NetBird's offer/answer/candidate messages, sealed as on the wire), connect with ICE over
//! loopback, and run WireGuard on the ICE path. The "operating system" behind each tun answers
//! pings, so ICMP echo crosses the tunnel both ways. No root, no servers.
//!
//! Then the second act ([`fault`]): the ICE pair runs through an in-process middlebox
//! ([`middlebox`]) that starts dropping WireGuard while STUN still passes, and the watcher moves
//! traffic to the direct path each engine also has (the other's listen address, configured as
//! its endpoint); the fault clears and ICE may take over again.

mod fault;
mod middlebox;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerlink_core::conn::SignalSource;
use peerlink_core::packet::{echo_reply_to, icmp_echo_request, parse_echo};
use peerlink_core::path::PathKind;
use peerlink_core::signal::SignalHub;
use peerlink_core::tun::{packet_socketpair, FdOwnership, Framing, Tun};
use peerlink_core::{Engine, EngineOptions, EngineSpec, Event, IceSpec, PeerConfig, PeerSpec, PrivateKey};
use tokio::sync::mpsc;

use self::fault::FaultReport;
use self::middlebox::Middlebox;

/// Pings per direction and family.
const PINGS: u16 = 5;
/// A reply slower than this counts as lost; loopback answers in well under a millisecond.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// ICMP echo payload, as `ping`'s default.
const PING_PAYLOAD: usize = 56;
/// ICMP echo identifier of every ping ("PL").
const PING_ID: u16 = 0x504c;
/// How long the engines may take to find each other; ICE on loopback needs well under a second.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error("socketpair: {0}")]
    Socketpair(std::io::Error),
    #[error("tun: {0}")]
    Tun(#[from] peerlink_core::tun::TunError),
    #[error("configuration: {0}")]
    Config(#[from] peerlink_core::ConfigError),
    #[error("engine: {0}")]
    Engine(#[from] peerlink_core::EngineError),
    #[error("writing to the tun: {0}")]
    TunWrite(std::io::Error),
    #[error("{lost} of {sent} pings got no reply")]
    Lost { lost: usize, sent: usize },
    #[error("the engines did not connect over ICE within {0:?}")]
    NotConnected(Duration),
    #[error("{got} of {wanted} pings answered within {within:?}")]
    NoReplies {
        wanted: usize,
        got: usize,
        within: Duration,
    },
    #[error(
        "traffic did not move off the faulty ICE path within {within:?} (switch: {}; a reply after the fault: {replied}); run with RUST_LOG=peerlink_core=debug to see the watcher",
        verdict.as_deref().unwrap_or("none")
    )]
    NoSwitch {
        within: Duration,
        verdict: Option<String>,
        replied: bool,
    },
    #[error("{0} stopped during the demo")]
    EngineGone(&'static str),
}

/// What the demo measured.
#[derive(Debug)]
pub struct DemoReport {
    pub pings: usize,
    pub fault: FaultReport,
}

struct Host {
    name: &'static str,
    engine: Engine,
    os: Arc<Tun>,
    replies: mpsc::Receiver<(u16, Instant)>,
    v4: IpAddr,
    v6: IpAddr,
}

pub fn run() -> Result<(), DemoError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)?;
    let report = runtime.block_on(demo())?;
    let f = &report.fault;
    let back = f.back_on_ice.map_or_else(
        || "stayed on the fallback".to_owned(),
        |t| format!("back on ice-p2p {:.2} s after it cleared", t.as_secs_f64()),
    );
    let lost_after = f.after.0.saturating_sub(f.after.1);
    println!(
        "demo ok: {} pings, all answered; fault on {}: {} by {}, replies again on {} after {:.2} s ({} of {} pings lost), {back} ({lost_after} of {} lost since)",
        report.pings,
        kind_name(f.verdict.from),
        f.verdict.reason,
        f.verdict.who,
        kind_name(f.verdict.to),
        f.gap.as_secs_f64(),
        f.during.0.saturating_sub(f.during.1),
        f.during.0,
        f.after.0,
    );
    Ok(())
}

async fn demo() -> Result<DemoReport, DemoError> {
    println!("peerlink demo: two engines that know only each other's keys");
    println!(
        "  signal: in-process hub   paths: ICE on loopback through a middlebox, direct   tuns: socketpairs\n"
    );
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let middlebox = Middlebox::new();
    let hub = SignalHub::with_filter(middlebox.hub_filter());
    let started = Instant::now();
    let mut a = host("alice", &ka, 1, vec![peer(&kb, 2, None)], &hub)?;
    let mut events = a.engine.subscribe();
    let mut b = host(
        "bob",
        &kb,
        2,
        vec![peer(&ka, 1, Some(a.engine.listen_addr()))],
        &hub,
    )?;
    let mut bob_events = b.engine.subscribe();
    // Bob's address is known only now: alice gets her direct path by a peer update, which keeps
    // the session and paths the peer already has.
    let direct_to_bob = validate_peers(vec![peer(&kb, 2, Some(b.engine.listen_addr()))], &ka)?;
    a.engine.update_peers(direct_to_bob);
    println!("  alice {} on {}", ka.public_key(), a.engine.listen_addr());
    println!("  bob   {} on {}", kb.public_key(), b.engine.listen_addr());
    println!("  engines up in {:.1} ms", ms(started.elapsed()));
    wait_for_ice(&mut events).await?;
    println!(
        "  offer/answer and candidates through signal, ICE connected {:.1} ms after start",
        ms(started.elapsed())
    );
    if let Some(p) = a.engine.status().peers.first() {
        let kind = p.active_path.map(|k| k.to_string()).unwrap_or_default();
        println!(
            "  alice -> bob path: {kind} {} (through the middlebox)",
            p.remote.clone().unwrap_or_default()
        );
        for standby in p.paths.iter().filter(|path| !path.active) {
            println!("  alice -> bob standby: {} {}", standby.kind, standby.remote);
        }
        println!();
    }
    let mut sent = 0;
    let mut lost = 0;
    for (from_is_a, v6) in [(true, false), (false, false), (true, true), (false, true)] {
        let (from, to) = if from_is_a { (&mut a, &b) } else { (&mut b, &a) };
        let (src, dst) = if v6 { (from.v6, to.v6) } else { (from.v4, to.v4) };
        let mut rtts = Vec::new();
        for seq in 0..PINGS {
            sent += 1;
            match ping(from, src, dst, seq).await? {
                Some(rtt) => rtts.push(rtt),
                None => lost += 1,
            }
        }
        let first = rtts.first().copied().unwrap_or_default();
        let rest: Vec<String> = rtts.iter().skip(1).map(|r| format!("{:.2}", ms(*r))).collect();
        println!(
            "  {} -> {} ({dst}): {}/{} replies, first {:.2} ms, then {} ms",
            from.name,
            to.name,
            rtts.len(),
            PINGS,
            ms(first),
            rest.join(" ")
        );
    }
    while let Ok(e) = events.try_recv() {
        if let Event::HandshakeCompleted { .. } = e {
            println!("\n  alice: WireGuard handshake completed with bob");
        }
    }
    if lost > 0 {
        a.engine.stop().await;
        b.engine.stop().await;
        return Err(DemoError::Lost { lost, sent });
    }
    let fault = fault::run(&mut a, &b, &middlebox, [&mut events, &mut bob_events]).await;
    println!("\n--- alice ---\n{}", a.engine.status());
    println!("--- bob ---\n{}", b.engine.status());
    a.engine.stop().await;
    b.engine.stop().await;
    Ok(DemoReport {
        pings: sent,
        fault: fault?,
    })
}

async fn wait_for_ice(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Result<(), DemoError> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(Event::PathChanged {
                kind: Some(PathKind::IceP2p),
                ..
            })) => return Ok(()),
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) | Err(_) => {
                return Err(DemoError::NotConnected(CONNECT_TIMEOUT))
            }
        }
    }
}

fn spec(key: &PrivateKey, n: u8, peers: Vec<PeerSpec>) -> EngineSpec {
    EngineSpec {
        private_key: key.to_base64(),
        addresses: vec![format!("100.64.0.{n}/24"), format!("fd64::{n}/64")],
        peers,
        // Loopback only: the demo must not reach beyond this machine.
        ice: Some(IceSpec {
            interfaces: Some(vec!["lo".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The peer `key`, reachable directly at `endpoint` (the fallback when ICE fails).
fn peer(key: &PrivateKey, n: u8, endpoint: Option<SocketAddr>) -> PeerSpec {
    PeerSpec {
        public_key: key.public_key().to_base64(),
        allowed_ips: vec![format!("100.64.0.{n}/32"), format!("fd64::{n}/128")],
        endpoint: endpoint.map(|e| e.to_string()),
        ..Default::default()
    }
}

fn validate_peers(peers: Vec<PeerSpec>, own: &PrivateKey) -> Result<Vec<PeerConfig>, DemoError> {
    Ok(peerlink_core::config::validate_peers(&peers, own.public_key())?)
}

fn host(
    name: &'static str,
    key: &PrivateKey,
    n: u8,
    peers: Vec<PeerSpec>,
    hub: &SignalHub,
) -> Result<Host, DemoError> {
    let (engine_end, os_end) = packet_socketpair().map_err(DemoError::Socketpair)?;
    let tun = Tun::from_fd(engine_end, Framing::RawIp, FdOwnership::Owned)?;
    let os = Arc::new(Tun::from_fd(os_end, Framing::RawIp, FdOwnership::Owned)?);
    let options = EngineOptions {
        listen_ip: IpAddr::from([127, 0, 0, 1]),
        signal: Some(SignalSource::Hub(hub.clone())),
        ..Default::default()
    };
    let engine = Engine::start(spec(key, n, peers).validate()?, tun, options)?;
    let (tx, replies) = mpsc::channel(64);
    tokio::spawn(operating_system(os.clone(), tx));
    Ok(Host {
        name,
        engine,
        os,
        replies,
        v4: IpAddr::from([100, 64, 0, n]),
        v6: format!("fd64::{n}").parse().unwrap_or(IpAddr::from([0u16; 8])),
    })
}

/// Plays the OS behind a tun: answers echo requests, reports echo replies.
async fn operating_system(os: Arc<Tun>, replies: mpsc::Sender<(u16, Instant)>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let packet = match os.recv(&mut buf).await {
            Ok(Some(p)) if !p.is_empty() => p,
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => continue,
        };
        let Some(echo) = parse_echo(packet) else { continue };
        if echo.reply {
            let _ = replies.send((echo.seq, Instant::now())).await;
        } else if let Some(reply) = echo_reply_to(packet) {
            let _ = os.send(&reply).await;
        }
    }
}

async fn ping(from: &mut Host, src: IpAddr, dst: IpAddr, seq: u16) -> Result<Option<Duration>, DemoError> {
    let Some(request) = icmp_echo_request(src, dst, PING_ID, seq, PING_PAYLOAD) else {
        return Ok(None);
    };
    let sent = Instant::now();
    from.os.send(&request).await.map_err(DemoError::TunWrite)?;
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, from.replies.recv()).await {
            Ok(Some((s, at))) if s == seq => return Ok(Some(at.duration_since(sent))),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return Ok(None),
        }
    }
}

fn kind_name(kind: Option<PathKind>) -> String {
    kind.map_or_else(|| "none".to_owned(), |k| k.to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_moves_traffic_off_an_ice_path_that_drops_wireguard() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();

        let report = runtime.block_on(demo());

        let report = report.unwrap_or_else(|e| panic!("the demo failed: {e}"));
        let v = &report.fault.verdict;
        assert_eq!(
            (v.from, v.to),
            (Some(PathKind::IceP2p), Some(PathKind::Direct)),
            "{report:?}"
        );
        assert!(
            v.reason.starts_with("no answer to"),
            "not a watcher verdict: {report:?}"
        );
        assert!(report.fault.gap < fault::SWITCH_TIMEOUT, "{report:?}");
        assert!(
            report.fault.during.1 > 0,
            "no ping answered during the fault: {report:?}"
        );
    }
}
