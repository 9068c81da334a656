//! The one tokio runtime each engine owns, sized for a phone (DESIGN §10: the iOS extension
//! has 50 MB in all; tokio's defaults are one worker per core with 2 MiB stacks).

use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

use crate::error::PeerlinkError;

/// Two workers: the data plane is four short-lived-per-packet tasks (tun, UDP, inbound paths,
/// timers), and a second worker keeps timers and the app's calls moving while the first is
/// busy with a burst. More threads cost memory and wake-ups, not throughput, on a phone.
pub const WORKER_THREADS: usize = 2;
/// Blocking-pool threads (DNS lookups of signal and relay hosts, later): started on demand and
/// gone after tokio's 10 s idle keep-alive.
pub const MAX_BLOCKING_THREADS: usize = 2;
/// 256 KiB per thread instead of tokio's 2 MiB. The deepest frames on these threads are a
/// WireGuard handshake (X25519 + BLAKE2s, a few KiB), a tracing line being formatted and, later,
/// tonic/rustls polls (tens of KiB); packet buffers live on the heap. iOS gives secondary
/// threads 512 KiB by default, so this is half of what Apple considers normal. The JVM tests run
/// the unoptimised (debug) build, whose frames are several times larger, on these stacks.
pub const THREAD_STACK_SIZE: usize = 256 * 1024;
/// How long dropping an engine waits for its threads to exit. They only have to leave a poll:
/// every task is dropped at shutdown.
const DROP_GRACE: Duration = Duration::from_secs(1);

pub(crate) fn build() -> Result<Runtime, PeerlinkError> {
    Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_stack_size(THREAD_STACK_SIZE)
        .thread_name("peerlink-rt")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| PeerlinkError::internal(format!("starting the engine's runtime: {e}")))
}

/// Shuts `runtime` down, joining its threads unless we are on one of them (or inside another
/// runtime), where blocking is not allowed: then its threads exit on their own.
pub(crate) fn shut_down(runtime: Runtime) {
    if Handle::try_current().is_ok() {
        runtime.shutdown_background();
    } else {
        runtime.shutdown_timeout(DROP_GRACE);
    }
}
