//! The management client against NetBird's own combined server (`netbird-server` v0.77.1,
//! tests/lab/build-tools.sh), on loopback in a private network namespace when root, bootstrapped
//! through its headless first-run API (a PAT, then a setup key; DESIGN 8): a bad setup key is a
//! typed error, a login and the first Sync give this peer's address and the servers, a second
//! peer appears in the first one's stream, and a server restart is synced through by the same
//! session.

// Test code: a panic is a failed test with its message, which is what these helpers want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::NetLab;
use peerlink_core::mgmt::proto::SyncResponse;
use peerlink_core::mgmt::{
    register, run_session, ManagementConfig, ManagementError, ManagementState, NetworkState, SessionContext,
};
use peerlink_core::PrivateKey;
use tokio::sync::{mpsc, watch};

/// The combined server is ready in about 2 s here (DESIGN 8); a loaded CI machine gets more.
const SERVER_START: Duration = Duration::from_secs(30);
/// An update the server owes us: a login plus a map computation, well under a second here.
const UPDATE: Duration = Duration::from_secs(15);

#[test]
fn a_peer_logs_in_syncs_sees_a_new_peer_and_rides_out_a_server_restart() {
    let Some(lab) = lab() else { return };
    let mut server = Server::start(&lab.bin);
    let setup_key = server.bootstrap();
    lab.run(|_| async move {
        // A setup key the server does not know: typed, permanent.
        let bad = config(&server.url(), "00000000-0000-0000-0000-000000000000", "bad");
        let refused = register(&bad, &PrivateKey::generate()).await;
        assert!(
            matches!(refused, Err(ManagementError::InvalidSetupKey { .. })),
            "{refused:?}"
        );

        // A login and the first update: address, servers, no peers yet.
        let own = PrivateKey::generate();
        let mut session = Session::start(own.clone(), config(&server.url(), &setup_key, "first"));
        let first = session.next_update().await;
        let mut network = NetworkState::default();
        let delta = network.apply(&first, &own.public_key(), &HashSet::new());
        let interface = delta.interface.expect("the first map names this peer's address");
        assert!(interface.fqdn.starts_with("first."), "{interface:?}");
        let servers = delta.servers.expect("the first update names the servers");
        assert_eq!(servers.signal.map(|s| s.url), Some(server.url()));
        let relay = servers.relay.expect("the combined server runs a relay");
        assert!(
            relay.urls.iter().all(|u| u.starts_with("rel://")),
            "{:?}",
            relay.urls
        );
        assert!(relay.token_payload.is_some_and(|p| !p.is_empty()));
        assert!(!servers.ice.stun.is_empty(), "the combined server runs STUN");
        session.connected().await;

        // A second peer registers: the first one's stream brings it.
        let second = PrivateKey::generate();
        let address = register(&config(&server.url(), &setup_key, "second"), &second)
            .await
            .expect("the second peer registers");
        assert!(!address.is_empty());
        session
            .until(|update| {
                let delta = network.apply(update, &own.public_key(), &HashSet::new());
                delta
                    .peers
                    .is_some_and(|peers| peers.iter().any(|p| p.public_key == second.public_key()))
            })
            .await;

        // The server restarts (same store, same port): the same session logs in again and syncs.
        server.restart();
        session
            .state_until(|s| matches!(s, ManagementState::Retrying { .. }))
            .await;
        session.connected().await;
        let after = session.next_update().await;
        assert!(after.network_map.is_some(), "a full map after the restart");
        session.stop().await;
    });
}

fn config(url: &str, setup_key: &str, hostname: &str) -> ManagementConfig {
    ManagementConfig {
        url: url.to_owned(),
        setup_key: setup_key.to_owned(),
        hostname: hostname.to_owned(),
        ca_pem: None,
        sockets: Default::default(),
    }
}

/// One running management session and what it reports.
struct Session {
    updates: mpsc::Receiver<SyncResponse>,
    state: watch::Receiver<ManagementState>,
    shutdown: watch::Sender<bool>,
    /// The platform's "a network is up", for as long as the session runs.
    _online: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    fn start(private_key: PrivateKey, config: ManagementConfig) -> Self {
        let (updates_tx, updates) = mpsc::channel(peerlink_core::mgmt::UPDATE_CAPACITY);
        let (state_tx, state) = watch::channel(ManagementState::Connecting);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (online_tx, online) = watch::channel(true);
        let task = tokio::spawn(run_session(SessionContext {
            private_key,
            config,
            updates: updates_tx,
            state: state_tx,
            online,
            shutdown: shutdown_rx,
        }));
        Self {
            updates,
            state,
            shutdown,
            _online: online_tx,
            task,
        }
    }

    async fn next_update(&mut self) -> SyncResponse {
        let state = self.state.borrow().clone();
        tokio::time::timeout(UPDATE, self.updates.recv())
            .await
            .unwrap_or_else(|_| panic!("no update within {UPDATE:?}; state: {state}"))
            .expect("the session ended")
    }

    async fn until(&mut self, mut done: impl FnMut(&SyncResponse) -> bool) {
        let deadline = tokio::time::Instant::now() + UPDATE;
        loop {
            let update = tokio::time::timeout_at(deadline, self.updates.recv())
                .await
                .expect("the awaited update did not come")
                .expect("the session ended");
            if done(&update) {
                return;
            }
        }
    }

    async fn state_until(&mut self, mut done: impl FnMut(&ManagementState) -> bool) {
        let came = matches!(
            tokio::time::timeout(UPDATE, self.state.wait_for(|s| done(s))).await,
            Ok(Ok(_))
        );
        assert!(came, "state never came; last: {}", *self.state.borrow());
    }

    async fn connected(&mut self) {
        self.state_until(|s| matches!(s, ManagementState::Connected { .. }))
            .await;
    }

    async fn stop(self) {
        let _ = self.shutdown.send(true);
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the session stops on shutdown")
            .expect("the session task did not panic");
    }
}

/// NetBird's combined server in a private network where possible (curl bootstraps it).
fn lab() -> Option<NetLab> {
    let lab = NetLab::new("netbird-server", "PEERLINK_NETBIRD_SERVER")?;
    if Command::new("curl").arg("--version").output().is_err() {
        common::lab::skip("curl missing (the server's first-run API is bootstrapped with it)");
        return None;
    }
    Some(lab)
}

/// One netbird-server process with its data directory.
struct Server {
    bin: PathBuf,
    addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn start(bin: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = std::env::temp_dir().join(format!("peerlink-nb-server-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        // The settings of tests/lab/mgmt.sh (DESIGN 8); the store key keeps sync and the PAT
        // working across the restart.
        let yaml = format!(
            "server:\n  listenAddress: \"{addr}\"\n  exposedAddress: \"http://{addr}\"\n  stunPorts: [3478]\n  \
             metricsPort: 0\n  healthcheckAddress: \"127.0.0.1:0\"\n  logLevel: \"info\"\n  logFile: \"console\"\n  \
             authSecret: \"test-relay-secret\"\n  dataDir: \"{data}\"\n  disableAnonymousMetrics: true\n  \
             disableGeoliteUpdate: true\n  auth:\n    issuer: \"http://{addr}/oauth2\"\n  store:\n    engine: \"sqlite\"\n    \
             encryptionKey: \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n",
            data = dir.join("data").display()
        );
        std::fs::write(dir.join("server.yaml"), yaml).unwrap();
        let mut server = Self {
            bin: bin.to_owned(),
            addr,
            dir,
            child: None,
        };
        server.launch();
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first-run API: an owner with a PAT, then a reusable setup key.
    fn bootstrap(&self) -> String {
        let setup = self.curl(
            "POST",
            "/api/setup",
            None,
            r#"{"email":"test@peerlink.test","password":"Test-password-1234","name":"test","create_pat":true,"pat_expire_in":1}"#,
        );
        let pat = json_string(&setup, "personal_access_token").unwrap_or_else(|| panic!("no PAT in {setup}"));
        let key = self.curl(
            "POST",
            "/api/setup-keys",
            Some(&pat),
            r#"{"name":"test","type":"reusable","expires_in":86400,"auto_groups":[],"usage_limit":0,"ephemeral":false}"#,
        );
        json_string(&key, "key").unwrap_or_else(|| panic!("no key in {key}"))
    }

    fn curl(&self, method: &str, path: &str, pat: Option<&str>, body: &str) -> String {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-f", "-X", method, &format!("{}{path}", self.url())])
            .args(["-H", "Content-Type: application/json", "-d", body]);
        if let Some(pat) = pat {
            cmd.args(["-H", &format!("Authorization: Token {pat}")]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{method} {path}: {}; log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server and starts it again on the same port and store.
    fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let mut child = Command::new(&self.bin)
            .arg("--config")
            .arg(self.dir.join("server.yaml"))
            .env("NB_SETUP_PAT_ENABLED", "true")
            .env("NB_DISABLE_GEOLOCATION", "true")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + SERVER_START;
        while !self.api_ready() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("netbird-server exited with {status}; log:\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "netbird-server not ready; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// The HTTP API answers (the gRPC services are on the same listener).
    fn api_ready(&self) -> bool {
        TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            && Command::new("curl")
                .args(["-sf", "-o", "/dev/null", &format!("{}/api/instance", self.url())])
                .status()
                .is_ok_and(|s| s.success())
    }

    /// SIGTERM and wait: a clean stop, as an operator restarts it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling a child we spawned and have not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        let _ =
            std::fs::File::open(self.dir.join("server.log")).and_then(|mut f| f.read_to_string(&mut text));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("netbird-server log:\n{}", self.log_tail());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The string value of `"name":"…"` in a flat JSON answer (no escapes in what we read).
fn json_string(json: &str, name: &str) -> Option<String> {
    let start = json.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let end = json.get(start..)?.find('"')? + start;
    json.get(start..end).map(str::to_owned)
}
