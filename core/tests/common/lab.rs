//! Helpers for tests that run the lab's binaries (tests/lab/build-tools.sh).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A binary from tests/lab/build-tools.sh: at `$env` if set, else in
/// `${PEERLINK_CACHE:-$HOME/.cache/peerlink}/bin`; `None` when it is not there.
pub fn lab_tool(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let cache = std::env::var_os("PEERLINK_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/peerlink")))?;
    Some(cache.join("bin").join(name)).filter(|p| p.is_file())
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
