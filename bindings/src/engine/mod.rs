//! The `Engine` object the app holds: one configuration, one runtime, at most one running
//! core engine at a time.
//!
//! Threads: `start`, `update_peers`, `network_changed` and `status` run on the caller's thread
//! and hold a lock at most (start also opens the socket and registers the tun). `stop` and
//! `set_tun` are async: their work runs on the engine's runtime, so cancelling the caller's
//! coroutine or task does not leave a half-done stop or swap behind.

mod runtime;
mod session;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinError;

use crate::config::{EngineConfig, InterfaceSettings, PeerConfig, Validated};
use crate::error::PeerlinkError;
use crate::guard::{guard, panic_message, CatchPanic};
use crate::platform::Platform;
use crate::status::{status_from_core, EngineStatus, Event};
use peerlink_core::tun::Tun;
use session::{close_if_owned, EventQueue, Session, EVENT_QUEUE};

pub use runtime::{MAX_BLOCKING_THREADS, THREAD_STACK_SIZE, WORKER_THREADS};

#[derive(uniffi::Object)]
pub struct Engine {
    /// Some until drop.
    runtime: Option<Runtime>,
    inner: Arc<Inner>,
}

/// What the runtime's tasks share with the handle (never the runtime itself, so that the last
/// reference to it is always dropped by the app, off the runtime's threads).
struct Inner {
    state: Mutex<State>,
    /// Held by `start`, `set_tun` and `stop` for their whole run, so they never interleave.
    lifecycle: Arc<tokio::sync::Mutex<()>>,
    /// What the app last said through `network_changed`; a start while offline passes it on.
    online: AtomicBool,
    /// Events that found the app's queue full, not yet reported by `next_event`.
    lost: Arc<AtomicU64>,
    platform: Option<Arc<dyn Platform>>,
}

struct State {
    config: Validated,
    /// Bumped by every `update_peers`, so that a start can tell the peers changed under it.
    peers_generation: u64,
    /// Between `start` and the end of `stop`.
    run: Option<Run>,
    /// The queue `next_event` reads: the current run's, or the last one's until it is drained.
    events: Option<Arc<tokio::sync::Mutex<mpsc::Receiver<Event>>>>,
}

struct Run {
    session: Session,
    events: EventQueue,
}

#[uniffi::export]
impl Engine {
    /// Validates `config` (errors name the field) and creates the engine's runtime. Nothing
    /// runs until `start`. `platform` protects the engine's sockets (Android); Apple passes null.
    #[uniffi::constructor]
    pub fn new(
        config: EngineConfig,
        platform: Option<Arc<dyn Platform>>,
    ) -> Result<Arc<Self>, PeerlinkError> {
        guard(|| {
            let config = Validated::new(&config)?;
            let runtime = runtime::build()?;
            tracing::debug!(key = %config.public_key(), "engine created");
            Ok(Arc::new(Engine {
                runtime: Some(runtime),
                inner: Arc::new(Inner {
                    state: Mutex::new(State {
                        config,
                        peers_generation: 0,
                        run: None,
                        events: None,
                    }),
                    lifecycle: Arc::new(tokio::sync::Mutex::new(())),
                    online: AtomicBool::new(true),
                    lost: Arc::new(AtomicU64::new(0)),
                    platform,
                }),
            }))
        })
    }

    /// Starts the engine on the tunnel's fd (Android: `establish().detachFd()`; Apple:
    /// `findUtunFd()`). Returns once the socket is open and the tasks run. An fd the engine is
    /// to own (Android) is closed on every error too.
    pub fn start(&self, tun_fd: i32) -> Result<(), PeerlinkError> {
        guard(|| {
            let ownership = lock(&self.inner.state).config.fd_ownership;
            let Ok(_lifecycle) = self.inner.lifecycle.try_lock() else {
                close_if_owned(tun_fd, ownership);
                return Err(PeerlinkError::AlreadyStarted);
            };
            let (config, generation) = {
                let state = lock(&self.inner.state);
                if state.run.is_some() {
                    close_if_owned(tun_fd, ownership);
                    return Err(PeerlinkError::AlreadyStarted);
                }
                (state.config.clone(), state.peers_generation)
            };
            let _context = self.runtime()?.enter();
            let (sender, receiver) = mpsc::channel(EVENT_QUEUE);
            let events = EventQueue::new(sender, self.inner.lost.clone());
            // Not under the state lock: protect_socket calls into the app, which may call us.
            let session = Session::start(&config, tun_fd, self.inner.platform.as_ref(), &events)?;
            let mut state = lock(&self.inner.state);
            if state.peers_generation != generation {
                // update_peers ran while we were starting.
                session.core.update_peers(state.config.core.peers.clone());
            }
            // Read under the lock network_changed takes after storing the flag: whichever
            // runs second tells core.
            if !self.inner.online.load(Ordering::Relaxed) {
                session.core.network_changed(false);
            }
            state.run = Some(Run { session, events });
            state.events = Some(Arc::new(tokio::sync::Mutex::new(receiver)));
            Ok(())
        })
    }

    /// Replaces the tunnel fd after the platform rebuilt its interface (new routes or
    /// addresses; Android). The swap is in place: peers keep their WireGuard sessions and
    /// paths, the UDP port stays, signal and relay stay connected; `TunReplaced` is queued.
    /// The old fd is closed (if owned) once the engine's reader has moved to the new one. An
    /// fd that cannot be used is refused (`Tun`) and closed if owned; the engine keeps the old.
    pub async fn set_tun(&self, tun_fd: i32) -> Result<(), PeerlinkError> {
        let inner = self.inner.clone();
        self.on_runtime(async move { inner.set_tun(tun_fd).await }).await
    }

    /// Replaces the peer list; unchanged peers keep their sessions. Works before `start` too.
    /// Routes may change: compare `interface_settings()` and rebuild the interface if needed.
    pub fn update_peers(&self, peers: Vec<PeerConfig>) -> Result<(), PeerlinkError> {
        guard(|| {
            let mut state = lock(&self.inner.state);
            state.config.set_peers(&peers)?;
            state.peers_generation = state.peers_generation.wrapping_add(1);
            let peers = state.config.core.peers.clone();
            if let Some(run) = &state.run {
                run.session.core.update_peers(peers);
            }
            Ok(())
        })
    }

    /// The platform's view of connectivity changed (a non-VPN network appeared, changed its
    /// addresses, or the last one went away). Online: signal and relay reconnect now and ICE
    /// gathers anew on the next offer to every peer not connected. Offline: retries and offers
    /// wait for the network. Remembered across `stop`/`start`.
    pub fn network_changed(&self, online: bool) {
        let result = guard(|| {
            let before = self.inner.online.swap(online, Ordering::Relaxed);
            tracing::info!(online, changed = before != online, "network changed");
            if let Some(run) = &lock(&self.inner.state).run {
                run.session.core.network_changed(online);
                run.events.push(Event::NetworkChanged { online });
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "network_changed failed");
        }
    }

    /// A snapshot of the running engine: signal and relay state, peers, paths, counters.
    /// `NotStarted` before `start` and after `stop`.
    pub fn status(&self) -> Result<EngineStatus, PeerlinkError> {
        guard(|| {
            let state = lock(&self.inner.state);
            let run = state.run.as_ref().ok_or(PeerlinkError::NotStarted)?;
            Ok(status_from_core(
                run.session.core.status(),
                self.inner.online.load(Ordering::Relaxed),
            ))
        })
    }

    /// The interface settings for the current configuration (peers included); with
    /// management, what management gave (address, MTU, routed networks) once it has.
    pub fn interface_settings(&self) -> Result<InterfaceSettings, PeerlinkError> {
        guard(|| {
            let state = lock(&self.inner.state);
            let managed = state
                .run
                .as_ref()
                .and_then(|run| run.session.core.status().management)
                .and_then(|m| m.interface);
            Ok(match managed {
                Some(interface) => state.config.managed_interface_settings(&interface),
                None => state.config.interface_settings(),
            })
        })
    }

    /// This engine's WireGuard public key, base64.
    pub fn public_key(&self) -> String {
        lock(&self.inner.state).config.public_key().to_base64()
    }

    /// The next event, waiting for it. `None` once the engine has stopped and every event
    /// before that was read (or before the first `start`). Cancelling the wait loses nothing.
    /// Events that found the queue full are reported first, as one `EventsLost`.
    pub async fn next_event(&self) -> Option<Event> {
        let missed = self.inner.lost.swap(0, Ordering::Relaxed);
        if missed > 0 {
            return Some(Event::EventsLost { missed });
        }
        let queue = lock(&self.inner.state).events.clone();
        let queue = queue?;
        let next = CatchPanic::new(async move { Ok(queue.lock().await.recv().await) }).await;
        next.unwrap_or_else(|e| {
            tracing::error!(error = %e, "next_event failed");
            None
        })
    }

    /// Stops the engine: every task ends, the tun (if owned) and every socket close, then
    /// `Stopped` is queued. Bounded (a few seconds at worst); `start` may follow. Stopping a
    /// stopped engine does nothing.
    pub async fn stop(&self) -> Result<(), PeerlinkError> {
        let inner = self.inner.clone();
        self.on_runtime(async move {
            inner.stop().await;
            Ok(())
        })
        .await
    }
}

/// For the JVM tests only: proves that a panic reaches the app as `PeerlinkError.Internal`.
#[cfg(feature = "testing")]
#[uniffi::export]
impl Engine {
    /// Panics on the caller's thread, inside the FFI boundary.
    pub fn debug_panic(&self) -> Result<(), PeerlinkError> {
        guard(|| panic!("debug_panic: a deliberate panic on the caller's thread"))
    }

    /// Panics in a task on the engine's runtime; the runtime survives it.
    pub async fn debug_panic_in_runtime(&self) -> Result<(), PeerlinkError> {
        self.on_runtime(async { panic!("debug_panic_in_runtime: a deliberate panic in a task") })
            .await
    }
}

impl Engine {
    fn runtime(&self) -> Result<&Runtime, PeerlinkError> {
        self.runtime
            .as_ref()
            .ok_or_else(|| PeerlinkError::internal("the engine's runtime is gone"))
    }

    /// Runs `work` on the engine's runtime and waits for it from any executor (the app's
    /// coroutine or task). Dropping the returned future does not cancel `work`.
    async fn on_runtime<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, PeerlinkError>> + Send + 'static,
    ) -> Result<T, PeerlinkError> {
        let handle = match self.runtime() {
            Ok(rt) => rt.spawn(work),
            Err(e) => return Err(e),
        };
        CatchPanic::new(async move { handle.await.map_err(join_error)? }).await
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let run = lock(&self.inner.state).run.take();
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        {
            // Dropping a core engine aborts its tasks and deregisters its fds from the runtime.
            let _context = runtime.enter();
            drop(run);
        }
        runtime::shut_down(runtime);
        tracing::debug!("engine dropped");
    }
}

impl Inner {
    async fn stop(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        let Some(run) = lock(&self.state).run.take() else {
            return;
        };
        run.session.stop().await;
        run.events.push(Event::Stopped);
        // Dropping the run's sender ends the queue: next_event returns None once drained.
    }

    /// Runs on the engine's runtime: registering the new fd needs its reactor.
    async fn set_tun(&self, tun_fd: RawFd) -> Result<(), PeerlinkError> {
        let _lifecycle = self.lifecycle.lock().await;
        let state = lock(&self.state);
        let config = &state.config;
        let Some(run) = &state.run else {
            close_if_owned(tun_fd, config.fd_ownership);
            return Err(PeerlinkError::NotStarted);
        };
        // On error from_fd has dropped (and, if owned, closed) the fd; the old tun carries on.
        let tun = Tun::from_fd(tun_fd, config.framing, config.fd_ownership)?;
        run.session.core.set_tun(tun);
        run.events.push(Event::TunReplaced);
        Ok(())
    }
}

/// The state stays consistent between statements, so a lock poisoned by a caught panic is
/// still good to use.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn join_error(e: JoinError) -> PeerlinkError {
    if e.is_panic() {
        let payload = e.into_panic();
        let detail = panic_message(payload.as_ref());
        tracing::error!(%detail, "panic in an engine task");
        PeerlinkError::internal(detail)
    } else {
        PeerlinkError::internal("the engine's task was cancelled (the engine is shutting down)")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::tests::config;
    use crate::status::PathKind;
    use peerlink_core::tun::packet_socketpair;

    /// Drives the engine's async methods the way a foreign executor would: from a thread that
    /// is not one of the engine's.
    pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// What `fd` refers to (device and inode), or None if it is closed.
    fn identity(fd: RawFd) -> Option<(u64, u64)> {
        // SAFETY: stat is plain old data; fstat only writes into it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: st is a valid, writable stat.
        (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
    }

    fn drain(engine: &Engine) -> Vec<Event> {
        block_on(async {
            let mut events = Vec::new();
            while let Some(e) = engine.next_event().await {
                events.push(e);
            }
            events
        })
    }

    #[test]
    fn a_run_opens_with_started_and_ends_with_stopped_then_none() {
        let engine = Engine::new(config(), None).unwrap();
        let (tun, os) = packet_socketpair().unwrap();
        engine.start(tun).unwrap();
        let port = engine.status().unwrap().listen_port;
        block_on(engine.stop()).unwrap();
        let events = drain(&engine);
        assert_eq!(
            events.first(),
            Some(&Event::Started { listen_port: port }),
            "{events:?}"
        );
        assert_eq!(
            events.get(1),
            Some(&Event::PeersUpdated { count: 1 }),
            "{events:?}"
        );
        assert!(
            matches!(
                events.get(2),
                Some(Event::PathChanged {
                    kind: Some(PathKind::Direct),
                    ..
                })
            ),
            "{events:?}"
        );
        assert_eq!(events.last(), Some(&Event::Stopped), "{events:?}");
        assert_eq!(engine.status(), Err(PeerlinkError::NotStarted));
        // SAFETY: closing the test's own end.
        unsafe { libc::close(os) };
    }

    #[test]
    fn a_run_with_servers_reports_their_state_from_the_start() {
        let mut c = config();
        // Nothing listens on the discard port: both stay short of connected, which is enough.
        c.signal = Some(crate::config::SignalConfig {
            url: "http://127.0.0.1:9".into(),
            ca_pem: None,
        });
        c.relay = Some(crate::config::RelayConfig {
            urls: vec!["rel://127.0.0.1:9".into()],
            token_payload: None,
            token_signature: None,
            secret: Some("lab-secret".into()),
            ca_pem: None,
        });
        let engine = Engine::new(c, None).unwrap();
        let (tun, os) = packet_socketpair().unwrap();
        engine.start(tun).unwrap();
        assert!(
            engine.status().unwrap().signal.is_some(),
            "signal's state from the start"
        );
        // core reports the relay's state once its manager has run.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while engine.status().unwrap().relay.is_none() {
            assert!(std::time::Instant::now() < deadline, "{:?}", engine.status());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        block_on(engine.stop()).unwrap();
        let events = drain(&engine);
        assert!(
            matches!(events.get(2), Some(Event::SignalStateChanged { .. })),
            "signal's state follows Started and PeersUpdated: {events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::RelayStateChanged { .. })),
            "{events:?}"
        );
        // SAFETY: closing the test's own end.
        unsafe { libc::close(os) };
    }

    #[test]
    fn events_that_find_the_queue_full_are_reported_as_lost() {
        let engine = Engine::new(config(), None).unwrap();
        let (tun, os) = packet_socketpair().unwrap();
        engine.start(tun).unwrap();
        // The app reads nothing while far more network changes than the queue holds come in.
        let changes = EVENT_QUEUE + 10;
        for i in 0..changes {
            engine.network_changed(i % 2 == 0);
        }
        block_on(engine.stop()).unwrap();
        let events = drain(&engine);
        let missed: u64 = events
            .iter()
            .map(|e| match e {
                Event::EventsLost { missed } => *missed,
                _ => 0,
            })
            .sum();
        let delivered = events
            .iter()
            .filter(|e| matches!(e, Event::NetworkChanged { .. }))
            .count();
        assert!(missed >= 10, "{missed} reported lost");
        assert!(
            delivered as u64 + missed >= changes as u64,
            "every change delivered or counted: {delivered} + {missed} of {changes}"
        );
        assert!(
            matches!(events.first(), Some(Event::EventsLost { .. })),
            "the count comes first: {:?}",
            events.first()
        );
        // SAFETY: closing the test's own end.
        unsafe { libc::close(os) };
    }

    #[test]
    fn set_tun_swaps_in_place_keeping_the_port_and_the_run() {
        let engine = Engine::new(config(), None).unwrap();
        let (tun, os) = packet_socketpair().unwrap();
        engine.start(tun).unwrap();
        let port = engine.status().unwrap().listen_port;
        let old = identity(tun);
        let (tun2, os2) = packet_socketpair().unwrap();
        block_on(engine.set_tun(tun2)).unwrap();
        assert_eq!(engine.status().unwrap().listen_port, port);

        // The reader moved: a frame that is no IP packet, written on the new tun, is counted.
        // SAFETY: writing a valid buffer to the test's own end.
        let written = unsafe { libc::write(os2, [0u8; 4].as_ptr().cast(), 4) };
        assert_eq!(written, 4);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while engine.status().unwrap().drops.tun_garbage == 0 || identity(tun) == old {
            assert!(
                std::time::Instant::now() < deadline,
                "new tun not read or old tun not closed: {:?}",
                engine.status()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }

        block_on(engine.stop()).unwrap();
        let events = drain(&engine);
        let started = events
            .iter()
            .filter(|e| matches!(e, Event::Started { .. }))
            .count();
        assert_eq!(started, 1, "one run, not a restart: {events:?}");
        assert!(events.contains(&Event::TunReplaced), "{events:?}");
        assert_eq!(events.last(), Some(&Event::Stopped));
        // SAFETY: closing the test's own ends.
        unsafe {
            libc::close(os);
            libc::close(os2);
        }
    }

    #[test]
    fn an_unusable_tun_is_refused_and_the_engine_keeps_the_old_one() {
        let engine = Engine::new(config(), None).unwrap();
        let (tun, os) = packet_socketpair().unwrap();
        engine.start(tun).unwrap();
        let e = block_on(engine.set_tun(-1)).unwrap_err();
        assert!(matches!(e, PeerlinkError::Tun { .. }), "{e:?}");
        assert!(identity(tun).is_some(), "the old tun stays open");
        assert!(engine.status().is_ok(), "still running");
        block_on(engine.stop()).unwrap();
        // SAFETY: closing the test's own end.
        unsafe { libc::close(os) };
    }

    #[test]
    fn set_tun_before_start_is_refused_and_closes_the_fd() {
        let engine = Engine::new(config(), None).unwrap();
        let (tun, os) = packet_socketpair().unwrap();
        let before = identity(tun);
        assert_eq!(block_on(engine.set_tun(tun)), Err(PeerlinkError::NotStarted));
        // Not by number alone: a test running in parallel may reuse it at once.
        assert_ne!(identity(tun), before, "an owned fd is closed even when refused");
        // SAFETY: closing the test's own end.
        unsafe { libc::close(os) };
    }

    #[test]
    fn peers_updated_before_start_are_the_ones_it_starts_with() {
        let engine = Engine::new(config(), None).unwrap();
        engine.update_peers(Vec::new()).unwrap();
        let (tun, os) = packet_socketpair().unwrap();
        engine.start(tun).unwrap();
        assert!(engine.status().unwrap().peers.is_empty());
        assert_eq!(
            engine.interface_settings().unwrap().routes.len(),
            2,
            "the addresses' networks only"
        );
        block_on(engine.stop()).unwrap();
        // SAFETY: closing the test's own end.
        unsafe { libc::close(os) };
    }
}
