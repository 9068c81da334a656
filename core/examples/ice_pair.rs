//! One side of an ICE session, for lab checks: the two sides swap credentials and candidates
//! through files in a shared directory (standing in for signal), connect, exchange a few
//! datagrams over the selected pair, print the pair's candidate types and the time to
//! connect, and exit 0. Exits 1 with a message when ICE fails or the time limit passes.
//!
//! ```text
//! ice_pair --role controlling|controlled --dir DIR [--stun URL]... [--turn URL
//!          (--turn-user U --turn-pass P | --turn-secret S)] [--force-turn]
//!          [--timeout SECS] [--idle SECS] [--udp6]
//! ```
//! Files in DIR: `<role>.creds` ("ufrag:pwd", written atomically) and `<role>.cands` (one
//! candidate per line, appended as gathered). The last line on stdout is machine-readable:
//! `RESULT kind=ice-p2p local=srflx remote=host connect_ms=612 pongs=3`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a lab tool: a panic is a failure report

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use peerlink_core::ice::{
    turn_rest_credentials_for, ConnectedPath, IceConfig, IceCredentials, IceEvent, IcePath, IceSession,
    IceState, IceWorker, InterfaceFilter, PairInfo, PathBinding, TurnServer, ICE_EVENT_CAPACITY,
};
use peerlink_core::path::{Inbound, Path, PathId, INBOUND_CAPACITY};
use peerlink_core::PrivateKey;
use tokio::sync::mpsc;

/// How often the other side's files are read: the lab's stand-in for signal's push.
const POLL: Duration = Duration::from_millis(20);
/// Pings answered before a side is satisfied.
const PINGS: u32 = 3;
/// Between pings.
const PING_INTERVAL: Duration = Duration::from_millis(100);
/// How long a satisfied side keeps answering while the other one is not done yet.
const LINGER: Duration = Duration::from_secs(3);
/// TURN REST credentials' lifetime when made from a secret here.
const TURN_TTL: Duration = Duration::from_secs(3600);

struct Args {
    controlling: bool,
    dir: PathBuf,
    stun: Vec<String>,
    turn: Option<String>,
    turn_user: Option<String>,
    turn_pass: Option<String>,
    turn_secret: Option<String>,
    force_turn: bool,
    timeout: Duration,
    idle: Duration,
    udp6: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ice_pair: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("ice_pair: FAILED: {e}");
            println!("RESULT failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + args.timeout;
    let (me, peer) = if args.controlling {
        ("controlling", "controlled")
    } else {
        ("controlled", "controlling")
    };
    let local = IceCredentials::generate();
    write_atomically(
        &args.dir.join(format!("{me}.creds")),
        &format!("{}:{}", local.ufrag, local.pwd),
    )?;
    let remote = read_creds(&args.dir.join(format!("{peer}.creds")), deadline).await?;

    let mut turn_servers = Vec::new();
    if let Some(url) = &args.turn {
        turn_servers.push(match (&args.turn_secret, &args.turn_user, &args.turn_pass) {
            (Some(secret), _, _) => turn_rest_credentials_for(url, secret, "ice_pair", TURN_TTL),
            (None, Some(user), Some(pass)) => TurnServer {
                url: url.clone(),
                username: user.clone(),
                credential: pass.clone(),
            },
            _ => return Err("--turn needs --turn-secret or --turn-user and --turn-pass".to_owned()),
        });
    }
    let config = IceConfig {
        stun_urls: args.stun.clone(),
        turn_servers,
        force_turn: args.force_turn,
        udp6: args.udp6,
        interfaces: InterfaceFilter::any_but_loopback(),
        ..IceConfig::default()
    };
    let (inbound_tx, mut inbound) = mpsc::channel::<Inbound>(INBOUND_CAPACITY);
    let session = IceSession {
        local,
        remote,
        controlling: args.controlling,
        use_turn: args.force_turn,
        path: PathBinding {
            peer: PrivateKey::generate().public_key(),
            id: PathId(1),
            inbound: inbound_tx,
        },
    };
    let (events_tx, mut events) = mpsc::channel(ICE_EVENT_CAPACITY);
    let worker = IceWorker::start(config, session, events_tx)
        .await
        .map_err(|e| e.to_string())?;

    let result = connect_and_exchange(&args, me, peer, &worker, &mut events, &mut inbound, deadline).await;
    worker.close().await;
    let (info, pongs) = result?;
    println!(
        "ice_pair: {me}: connected in {} ms: {info}; path {}; {pongs} pings answered",
        info.time_to_connect.as_millis(),
        info.path_kind()
    );
    println!(
        "RESULT kind={} local={} remote={} connect_ms={} pongs={pongs}",
        info.path_kind(),
        info.local.kind,
        info.remote.kind,
        info.time_to_connect.as_millis()
    );
    Ok(())
}

async fn connect_and_exchange(
    args: &Args,
    me: &str,
    peer: &str,
    worker: &IceWorker,
    events: &mut mpsc::Receiver<IceEvent>,
    inbound: &mut mpsc::Receiver<Inbound>,
    deadline: tokio::time::Instant,
) -> Result<(PairInfo, u32), String> {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.dir.join(format!("{me}.cands")))
        .map_err(|e| format!("opening my candidate file: {e}"))?;
    let their_cands = args.dir.join(format!("{peer}.cands"));
    let mut seen_lines = 0usize;
    let mut last_state = None;
    let path: Arc<IcePath> = loop {
        tokio::select! {
            e = events.recv() => match e {
                Some(IceEvent::LocalCandidate(c)) => {
                    writeln!(out, "{c}").and_then(|()| out.flush()).map_err(|e| format!("writing a candidate: {e}"))?;
                }
                Some(IceEvent::Connected { path: ConnectedPath::Agent(path), .. }) => break path,
                Some(IceEvent::Connected { path: ConnectedPath::SharedSocket(_), .. }) => {
                    return Err("a worker with sockets of its own connected on a shared one".to_owned());
                }
                Some(IceEvent::State(IceState::Failed)) => {
                    return Err(format!("ICE failed (no candidate pair worked; last state {last_state:?})"));
                }
                Some(IceEvent::State(s)) => last_state = Some(s),
                Some(IceEvent::GatheringComplete) => {}
                None => return Err("worker gone".to_owned()),
            },
            _ = tokio::time::sleep(POLL) => {
                for line in new_lines(&their_cands, &mut seen_lines) {
                    if let Err(e) = worker.add_remote_candidate(&line) {
                        eprintln!("ice_pair: remote candidate {line:?} ignored: {e}");
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("no connection within {:?} (last state {last_state:?})", args.timeout));
            }
        }
    };
    let info = path.info();
    let pongs = exchange(&path, inbound, deadline).await?;
    if !args.idle.is_zero() {
        println!("ice_pair: idle start ({} s)", args.idle.as_secs());
        // Keep draining so the agent's buffer does not fill; the peer is idle too.
        let idle_end = tokio::time::Instant::now() + args.idle;
        while tokio::time::timeout_at(idle_end, inbound.recv()).await.is_ok() {}
        println!("ice_pair: idle end");
    }
    Ok((info, pongs))
}

/// Both sides ping and answer; a side is done after PINGS answers and once the other side
/// says it is done too (or after LINGER).
async fn exchange(
    path: &IcePath,
    inbound: &mut mpsc::Receiver<Inbound>,
    deadline: tokio::time::Instant,
) -> Result<u32, String> {
    let mut pongs = 0u32;
    let mut seq = 0u32;
    let mut peer_done = false;
    let mut done_at: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(PING_INTERVAL);
    loop {
        if let Some(t) = done_at {
            if peer_done || t.elapsed() > LINGER {
                // Tell the peer, which may still be waiting for our "done" (one may be lost).
                for _ in 0..3 {
                    let _ = path.send(b"done");
                }
                return Ok(pongs);
            }
        }
        tokio::select! {
            _ = tick.tick() => {
                let msg = if done_at.is_some() { "done".to_owned() } else { seq += 1; format!("ping {seq}") };
                let _ = path.send(msg.as_bytes());
            }
            m = inbound.recv() => {
                let Some(m) = m else { return Err("path closed".to_owned()) };
                let text = String::from_utf8_lossy(&m.datagram).into_owned();
                if let Some(n) = text.strip_prefix("ping ") {
                    let _ = path.send(format!("pong {n}").as_bytes());
                } else if text.starts_with("pong ") {
                    pongs += 1;
                    if pongs >= PINGS && done_at.is_none() {
                        done_at = Some(tokio::time::Instant::now());
                    }
                } else if text == "done" {
                    peer_done = true;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("connected, but only {pongs} of {PINGS} pings answered in time"));
            }
        }
    }
}

fn new_lines(file: &FsPath, seen: &mut usize) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    // Only complete lines: the writer may be mid-line.
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    let lines: Vec<String> = complete.lines().skip(*seen).map(str::to_owned).collect();
    *seen += lines.len();
    lines
}

async fn read_creds(file: &FsPath, deadline: tokio::time::Instant) -> Result<IceCredentials, String> {
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            let Some((ufrag, pwd)) = text.trim().split_once(':') else {
                return Err(format!("{}: not ufrag:pwd", file.display()));
            };
            return Ok(IceCredentials::new(ufrag, pwd));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("the other side never wrote {}", file.display()));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn write_atomically(file: &FsPath, text: &str) -> Result<(), String> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| format!("writing {}: {e}", file.display()))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        controlling: false,
        dir: PathBuf::new(),
        stun: Vec::new(),
        turn: None,
        turn_user: None,
        turn_pass: None,
        turn_secret: None,
        force_turn: false,
        timeout: Duration::from_secs(20),
        idle: Duration::ZERO,
        udp6: false,
    };
    let mut role = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--role" => role = Some(value()?),
            "--dir" => args.dir = PathBuf::from(value()?),
            "--stun" => args.stun.push(value()?),
            "--turn" => args.turn = Some(value()?),
            "--turn-user" => args.turn_user = Some(value()?),
            "--turn-pass" => args.turn_pass = Some(value()?),
            "--turn-secret" => args.turn_secret = Some(value()?),
            "--force-turn" => args.force_turn = true,
            "--udp6" => args.udp6 = true,
            "--timeout" => args.timeout = secs(&value()?)?,
            "--idle" => args.idle = secs(&value()?)?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    args.controlling = match role.as_deref() {
        Some("controlling") => true,
        Some("controlled") => false,
        _ => return Err("--role controlling|controlled is required".to_owned()),
    };
    if args.dir.as_os_str().is_empty() {
        return Err("--dir is required".to_owned());
    }
    Ok(args)
}

fn secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}
