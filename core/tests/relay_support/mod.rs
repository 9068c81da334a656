//! Shared by the relay tests: NetBird's relay server on loopback, clients, and waiting helpers.
//! A test that includes it also declares `mod common;` (the lab's tool lookup lives there).
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use peerlink_core::path::{Inbound, PathId};
use peerlink_core::relay::{ClientOptions, RelayClient, RelayEvent, RelayToken, RelayUrl};
use peerlink_core::socket::{Protector, SocketFactory};
use peerlink_core::{PrivateKey, PublicKey};
use tokio::sync::{broadcast, mpsc};

use crate::common::lab::require_tool;

/// Generous bound for anything a test waits on; a pass takes a fraction of it.
pub const WAIT: Duration = Duration::from_secs(20);
/// The relay secret every test server runs with.
pub const SECRET: &str = "peerlink-test-secret";

/// NetBird's relay server, running on a loopback port until dropped.
pub struct NbRelay {
    bin: PathBuf,
    pub port: u16,
    /// Certificate and key: the server speaks `rels://` (TLS) and calls itself `localhost`.
    tls: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
    log: PathBuf,
}

impl NbRelay {
    /// Starts the server on a free loopback port, or skips the test (see `lab::skip`) and
    /// returns `None` when the binary is missing.
    pub fn start() -> Option<NbRelay> {
        Self::start_with(None)
    }

    /// Starts the server with a certificate (which must name `localhost`) and key: `rels://`.
    pub fn start_tls(cert: &Path, key: &Path) -> Option<NbRelay> {
        Self::start_with(Some((cert.to_owned(), key.to_owned())))
    }

    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> Option<NbRelay> {
        let bin = require_tool("nb-relay", "PEERLINK_NB_RELAY")?;
        let port = free_port();
        let log = std::env::temp_dir().join(format!("peerlink-nb-relay-{}-{port}.log", std::process::id()));
        let mut relay = NbRelay {
            bin,
            port,
            tls,
            child: None,
            log,
        };
        relay.spawn();
        Some(relay)
    }

    pub fn url(&self) -> RelayUrl {
        self.exposed().parse().expect("relay url")
    }

    /// The address the server announces (`-e`), which is also the one to dial.
    fn exposed(&self) -> String {
        match self.tls {
            Some(_) => format!("rels://localhost:{}", self.port),
            None => format!("rel://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server at once (SIGKILL): clients see the TCP connection die, no Close message.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let addr = format!("127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("relay log");
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-l", &addr, "-e", &self.exposed(), "-s", SECRET]);
        if let Some((cert, key)) = &self.tls {
            cmd.arg("-c").arg(cert).arg("-k").arg(key);
        }
        let child = cmd
            .args([
                "--metrics-port",
                "0",
                "-H",
                "127.0.0.1:0",
                "--log-file",
                "console",
                "--log-level",
                "debug",
            ])
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("nb-relay starts");
        self.child = Some(child);
        // The server logs its address before binding; readiness is a successful connect.
        let deadline = std::time::Instant::now() + WAIT;
        let target: SocketAddr = addr.parse().expect("addr");
        while TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "nb-relay exited with {status} before listening; log:\n{}",
                    self.log()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nb-relay not listening on {addr}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NbRelay {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn token() -> RelayToken {
    RelayToken::mint_valid_for(SECRET, Duration::from_secs(3600))
}

/// Counts protect calls: one per socket the relay code opens.
#[derive(Default)]
pub struct CountingProtector(pub AtomicUsize);

impl Protector for CountingProtector {
    fn protect(&self, _fd: RawFd) -> bool {
        self.0.fetch_add(1, Ordering::SeqCst);
        true
    }
}

impl CountingProtector {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A relay client with its own key, event stream and inbound channel.
pub struct Peer {
    pub key: PublicKey,
    pub client: RelayClient,
    pub events: broadcast::Receiver<RelayEvent>,
    pub inbound: mpsc::Receiver<Inbound>,
    pub sink: mpsc::Sender<Inbound>,
    pub protector: Arc<CountingProtector>,
}

pub async fn peer(url: &RelayUrl) -> Peer {
    peer_with_key(url, PrivateKey::generate().public_key()).await
}

pub async fn peer_with_key(url: &RelayUrl, key: PublicKey) -> Peer {
    let protector = Arc::new(CountingProtector::default());
    let mut options = ClientOptions::new(key, token());
    options.sockets = SocketFactory::new(Some(protector.clone()));
    let events = options.events.subscribe();
    let client = RelayClient::connect(url, options)
        .await
        .expect("relay client connects");
    let (sink, inbound) = mpsc::channel(1024);
    Peer {
        key,
        client,
        events,
        inbound,
        sink,
        protector,
    }
}

impl Peer {
    /// The next datagram from the relay, within WAIT.
    pub async fn recv(&mut self) -> Inbound {
        tokio::time::timeout(WAIT, self.inbound.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "nothing received within {WAIT:?}; {:?} {:?}",
                    self.client,
                    self.client.counters()
                )
            })
            .expect("inbound channel open")
    }

    pub async fn open(&self, other: PublicKey, id: u64) -> Arc<peerlink_core::relay::RelayPath> {
        self.client
            .open_peer(other, self.sink.clone(), PathId(id))
            .await
            .expect("peer opens")
    }
}

/// Waits for the first event that `pred` accepts, failing after WAIT with what was seen.
pub async fn wait_event(
    events: &mut broadcast::Receiver<RelayEvent>,
    what: &str,
    mut pred: impl FnMut(&RelayEvent) -> bool,
) -> RelayEvent {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(e)) if pred(&e) => return e,
            Ok(Ok(e)) => seen.push(e),
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => seen.push(RelayEvent::Connected {
                server: format!("(lagged {n})"),
                instance_url: String::new(),
            }),
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                panic!("event channel closed waiting for {what}; saw {seen:#?}")
            }
            Err(_) => panic!("no {what} within {WAIT:?}; saw {seen:#?}"),
        }
    }
}

/// Polls `cond` until it holds (for state with no event of its own), failing after WAIT.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Deterministic payloads: `len` bytes starting at `seed`.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
