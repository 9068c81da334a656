//! Helpers for tests that run the lab's binaries (tests/lab/build-tools.sh), and the one way a
//! test skips when something it needs is missing.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// A binary from tests/lab/build-tools.sh, at `$env` if set, else in
/// `${PEERLINK_CACHE:-$HOME/.cache/peerlink}/bin`. When it is not there the running test is
/// skipped (see [`skip`]) and this returns `None`: the caller returns at once.
pub fn require_tool(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).map(PathBuf::from) {
        if p.is_file() {
            return Some(p);
        }
        skip(&format!("{env}={} is not a file", p.display()));
        return None;
    }
    let cache = std::env::var_os("PEERLINK_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/peerlink")));
    let found = cache.map(|c| c.join("bin").join(name)).filter(|p| p.is_file());
    if found.is_none() {
        skip(&format!(
            "{name} not built (run tests/lab/build-tools.sh or set {env})"
        ));
    }
    found
}

/// Records that the running test cannot run here, and why; the caller returns at once.
///
/// In CI (`CI=true`) a missing lab tool is a failure, so this panics. Elsewhere it prints
/// `SKIP: <test crate>::<test>: <reason>` and appends that line to the file named by
/// `PEERLINK_SKIP_LOG` (tests/run.sh sets it). libtest cannot skip at run time: the test still
/// reports `ok`, and run.sh moves it from passed to skipped by that file.
pub fn skip(reason: &str) {
    let test = format!(
        "{}::{}",
        env!("CARGO_CRATE_NAME"),
        // libtest runs each test on a thread named after it.
        std::thread::current().name().unwrap_or("unnamed")
    );
    if ci() {
        panic!("{test}: {reason}; in CI (CI=true) a missing lab tool is a failure");
    }
    let line = format!("SKIP: {test}: {reason}\n");
    eprint!("{line}");
    let Some(log) = std::env::var_os("PEERLINK_SKIP_LOG") else {
        return;
    };
    // One write per line, in append mode: parallel tests and test binaries do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!(
            "{test}: cannot record its skip in PEERLINK_SKIP_LOG={}: {e}",
            log.to_string_lossy()
        );
    }
}

/// Whether this runs in CI, where every lab tool must be present.
fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Moves this thread (and the threads and processes it starts from now on) into a new network
/// namespace with only loopback, up.
pub fn isolate_network() -> Result<(), String> {
    // SAFETY: unshare only changes this thread's namespaces; no memory is involved.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare: {}", std::io::Error::last_os_error()));
    }
    let status = Command::new("ip").args(["link", "set", "lo", "up"]).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!("ip link set lo up: {other:?}")),
    }
}

/// Serialises the tests of one binary when they must share the host's network (no namespace):
/// NetBird's servers bind fixed ports (:10000, :3478) besides their own.
static HOST_NETWORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A test's world: a server binary, a private network namespace where possible (else the
/// host's loopback, one test at a time), and a runtime whose threads all live in it.
pub struct NetLab {
    pub bin: PathBuf,
    _host_lock: Option<std::sync::MutexGuard<'static, ()>>,
}

impl NetLab {
    /// `None` (the skip recorded) when the tool is missing.
    pub fn new(tool: &str, env: &str) -> Option<Self> {
        let bin = require_tool(tool, env)?;
        let host_lock = match isolate_network() {
            Ok(()) => None,
            Err(why) => {
                println!("note: no private network namespace ({why}); using the host's loopback");
                Some(HOST_NETWORK.lock().unwrap_or_else(|e| e.into_inner()))
            }
        };
        Some(Self {
            bin,
            _host_lock: host_lock,
        })
    }

    /// Runs the test on a runtime whose threads all live in this thread's network namespace;
    /// it gets the server binary.
    pub fn run<F, Fut>(self, test: F)
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(test(self.bin.clone()));
    }
}
