//! The `Engine` object the app holds: one configuration, one runtime, at most one running
//! core engine at a time.
//!
//! Threads: `start`, `update_peers`, `network_changed` and `status` run on the caller's thread
//! and hold a lock at most (start also opens the socket and registers the tun). `stop` and
//! `set_tun` are async: their work runs on the engine's runtime, so cancelling the caller's
//! coroutine or task does not leave a half-stopped engine behind.

mod runtime;
mod session;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinError;

use crate::config::{EngineConfig, InterfaceSettings, PeerConfig, Validated};
use crate::error::PeerlinkError;
use crate::guard::{guard, panic_message, CatchPanic};
use crate::platform::Platform;
use crate::status::{status_from_core, EngineStatus, Event};
use session::{close_if_owned, queue, Session, EVENT_QUEUE};

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
    online: AtomicBool,
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
    /// None while `set_tun` swaps it.
    session: Option<Session>,
    events: mpsc::Sender<Event>,
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
            let (events, receiver) = mpsc::channel(EVENT_QUEUE);
            // Not under the state lock: protect_socket calls into the app, which may call us.
            let session = Session::start(
                &config,
                tun_fd,
                config.core.listen_port,
                self.inner.platform.as_ref(),
                &events,
            )?;
            let mut state = lock(&self.inner.state);
            if state.peers_generation != generation {
                // update_peers ran while we were starting.
                session.core.update_peers(state.config.core.peers.clone());
            }
            state.run = Some(Run {
                session: Some(session),
                events,
            });
            state.events = Some(Arc::new(tokio::sync::Mutex::new(receiver)));
            Ok(())
        })
    }

    /// Replaces the tunnel fd after the platform rebuilt its interface (new routes or
    /// addresses). core cannot swap a tun in place yet, so this stops the core engine and
    /// starts a new one on the same configuration and UDP port: WireGuard sessions are
    /// renegotiated (one handshake, about one RTT). The event queue carries on (`TunReplaced`).
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
            if let Some(session) = state.run.as_ref().and_then(|r| r.session.as_ref()) {
                session.core.update_peers(peers);
            }
            Ok(())
        })
    }

    /// The platform's view of connectivity changed (a non-VPN network appeared or the last
    /// one went away). Kept for the connection policy; core has no hook for it yet.
    pub fn network_changed(&self, online: bool) {
        let result = guard(|| {
            let before = self.inner.online.swap(online, Ordering::Relaxed);
            tracing::info!(online, changed = before != online, "network changed");
            if let Some(run) = &lock(&self.inner.state).run {
                queue(&run.events, Event::NetworkChanged { online });
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "network_changed failed");
        }
    }

    /// A snapshot of the running engine: peers, paths, counters. `NotStarted` before `start`,
    /// after `stop`, and for the moment a `set_tun` swaps the core engine.
    pub fn status(&self) -> Result<EngineStatus, PeerlinkError> {
        guard(|| {
            let state = lock(&self.inner.state);
            let session = state
                .run
                .as_ref()
                .and_then(|r| r.session.as_ref())
                .ok_or(PeerlinkError::NotStarted)?;
            Ok(status_from_core(
                session.core.status(),
                self.inner.online.load(Ordering::Relaxed),
            ))
        })
    }

    /// The interface settings for the current configuration (peers included).
    pub fn interface_settings(&self) -> Result<InterfaceSettings, PeerlinkError> {
        guard(|| Ok(lock(&self.inner.state).config.interface_settings()))
    }

    /// This engine's WireGuard public key, base64.
    pub fn public_key(&self) -> String {
        lock(&self.inner.state).config.public_key().to_base64()
    }

    /// The next event, waiting for it. `None` once the engine has stopped and every event
    /// before that was read (or before the first `start`). Cancelling the wait loses nothing.
    pub async fn next_event(&self) -> Option<Event> {
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
        let Some(mut run) = lock(&self.state).run.take() else {
            return;
        };
        if let Some(session) = run.session.take() {
            session.stop().await;
        }
        queue(&run.events, Event::Stopped);
        // Dropping the run's sender ends the queue: next_event returns None once drained.
    }

    async fn set_tun(&self, tun_fd: RawFd) -> Result<(), PeerlinkError> {
        let _lifecycle = self.lifecycle.lock().await;
        let (old, ownership) = {
            let mut state = lock(&self.state);
            let ownership = state.config.fd_ownership;
            (state.run.as_mut().and_then(|r| r.session.take()), ownership)
        };
        let Some(old) = old else {
            close_if_owned(tun_fd, ownership);
            return Err(PeerlinkError::NotStarted);
        };
        // Keep the port the peers know, even if the system chose it.
        let listen_port = old.listen_port();
        old.stop().await;
        let (config, generation, events) = {
            let state = lock(&self.state);
            let Some(run) = &state.run else {
                close_if_owned(tun_fd, ownership);
                return Err(PeerlinkError::NotStarted);
            };
            (state.config.clone(), state.peers_generation, run.events.clone())
        };
        match Session::start(&config, tun_fd, listen_port, self.platform.as_ref(), &events) {
            Ok(session) => {
                let mut state = lock(&self.state);
                if state.peers_generation != generation {
                    session.core.update_peers(state.config.core.peers.clone());
                }
                if let Some(run) = state.run.as_mut() {
                    run.session = Some(session);
                }
                queue(&events, Event::TunReplaced);
                tracing::info!("tun replaced");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "the new tun could not be used; the engine stopped");
                lock(&self.state).run = None;
                queue(&events, Event::Stopped);
                Err(e)
            }
        }
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
mod tests {
    use super::*;
    use crate::config::tests::config;
    use crate::status::PathKind;
    use peerlink_core::tun::packet_socketpair;

    /// Drives the engine's async methods the way a foreign executor would: from a thread that
    /// is not one of the engine's.
    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
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
    fn set_tun_keeps_the_port_and_the_event_queue() {
        let engine = Engine::new(config(), None).unwrap();
        let (tun, os) = packet_socketpair().unwrap();
        engine.start(tun).unwrap();
        let port = engine.status().unwrap().listen_port;
        let (tun2, os2) = packet_socketpair().unwrap();
        block_on(engine.set_tun(tun2)).unwrap();
        assert_eq!(engine.status().unwrap().listen_port, port);
        block_on(engine.stop()).unwrap();
        let events = drain(&engine);
        let replaced = events.iter().position(|e| *e == Event::TunReplaced);
        let restarted = events.iter().rposition(|e| matches!(e, Event::Started { .. }));
        assert!(
            matches!((restarted, replaced), (Some(s), Some(r)) if s < r),
            "{events:?}"
        );
        assert_eq!(events.last(), Some(&Event::Stopped));
        // SAFETY: closing the test's own ends.
        unsafe {
            libc::close(os);
            libc::close(os2);
        }
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
