//! The ICE worker of one peer: owns the current session's agent and its tasks, checks what
//! signal brings before the agent sees it, and tears sessions down within a bound.
//!
//! Per session: a pump task forwards the agent's callback messages to the caller's channel,
//! and a connect task dials (controlling) or accepts (controlled) and, once a pair is
//! selected, builds the [`IcePath`]. Tearing a session down silences both first, so nothing
//! of an old session reaches the caller after `restart` or `close` returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc_ice::agent::Agent;
use webrtc_util::Conn;

use super::agent::{candidate_info, forward_callbacks, new_agent, udp6, AgentSignal, SIGNAL_CAPACITY};
use super::candidate::{CandidateKind, RejectionCounters, RemoteCandidates};
use super::config::IceConfig;
use super::credentials::IceCredentials;
use super::error::IceError;
use super::events::{ConnectedPath, IceEvent, IceState, PairInfo};
use super::path::IcePath;
use super::session::{classify, IceSession, PathBinding, SessionChange};
use super::socket::IceSocket;
use super::srflx;
use crate::clock::Instant;
use crate::keys::PublicKey;
use crate::path::UdpPath;

/// The ICE worker of one peer.
pub struct IceWorker {
    config: IceConfig,
    peer: PublicKey,
    events: mpsc::Sender<IceEvent>,
    current: Mutex<Option<Arc<Running>>>,
    counters: Mutex<RejectionCounters>,
    /// Serialises restart and close.
    lifecycle: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

impl IceWorker {
    /// Starts the first session: creates the agent, starts gathering (local candidates arrive
    /// as [`IceEvent::LocalCandidate`]) and dials or accepts. Must be called inside a tokio
    /// runtime.
    pub async fn start(
        config: IceConfig,
        session: IceSession,
        events: mpsc::Sender<IceEvent>,
    ) -> Result<IceWorker, IceError> {
        if !session.local.is_valid() {
            return Err(IceError::InvalidLocalCredentials);
        }
        if !session.remote.is_valid() {
            return Err(IceError::InvalidRemoteCredentials);
        }
        let worker = IceWorker {
            peer: session.path.peer,
            config,
            events,
            current: Mutex::new(None),
            counters: Mutex::new(RejectionCounters::default()),
            lifecycle: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        };
        let running = worker.launch(session).await?;
        *worker.current.lock() = Some(running);
        Ok(worker)
    }

    /// An offer or answer arrived. New remote credentials replace the agent with a new one for
    /// `session` (the old one is closed in the background); the same credentials change
    /// nothing; empty or invalid ones are ignored, counted and refused.
    pub async fn restart(&self, session: IceSession) -> Result<SessionChange, IceError> {
        let _serial = self.lifecycle.lock().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(IceError::Closed);
        }
        let running_remote = self.current.lock().as_ref().map(|r| r.remote.clone());
        match classify(running_remote.as_ref(), &session.remote) {
            SessionChange::Invalid => {
                self.counters.lock().bad_credentials += 1;
                tracing::info!(peer = %self.peer, "offer with empty or invalid ICE credentials ignored");
                return Err(IceError::InvalidRemoteCredentials);
            }
            SessionChange::Same => return Ok(SessionChange::Same),
            SessionChange::New => {}
        }
        if !session.local.is_valid() {
            return Err(IceError::InvalidLocalCredentials);
        }
        if let Some(old) = self.current.lock().take() {
            old.silence();
            let config = self.config.clone();
            tokio::spawn(async move { old.release(&config).await });
        }
        tracing::info!(peer = %self.peer, remote_ufrag = %session.remote.ufrag, "ice session restarts");
        let running = self.launch(session).await?;
        *self.current.lock() = Some(running);
        Ok(SessionChange::New)
    }

    /// Adds a remote candidate (pion's marshal form) to the current session. Bad input is
    /// ignored with one log line and a counter; the agent goes on either way.
    pub fn add_remote_candidate(&self, candidate: &str) -> Result<(), IceError> {
        self.add(None, candidate)
    }

    /// Like [`IceWorker::add_remote_candidate`], for a caller that knows which session (remote
    /// ufrag) the candidate was sent in: one for another session is ignored as stale.
    pub fn add_remote_candidate_for(&self, remote_ufrag: &str, candidate: &str) -> Result<(), IceError> {
        self.add(Some(remote_ufrag), candidate)
    }

    /// The selected pair of the current session, once connected.
    pub fn selected_pair(&self) -> Option<PairInfo> {
        self.current.lock().as_ref().and_then(|r| *r.pair.lock())
    }

    /// The remote ufrag of the running session.
    pub fn remote_ufrag(&self) -> Option<String> {
        self.current.lock().as_ref().map(|r| r.remote.ufrag.clone())
    }

    /// How much remote input was ignored, by reason.
    pub fn counters(&self) -> RejectionCounters {
        *self.counters.lock()
    }

    /// Closes the session: stops its path, waits (bounded) for gathering to end, closes the
    /// agent with a timeout, then reports [`IceState::Closed`]. Idempotent.
    pub async fn close(&self) {
        let _serial = self.lifecycle.lock().await;
        self.closed.store(true, Ordering::Release);
        let Some(running) = self.current.lock().take() else {
            return;
        };
        running.silence();
        running.release(&self.config).await;
        if self.events.try_send(IceEvent::State(IceState::Closed)).is_err() {
            tracing::debug!(peer = %self.peer, "event channel full or gone; closed state not reported");
        }
        tracing::debug!(peer = %self.peer, "ice worker closed");
    }

    async fn launch(&self, session: IceSession) -> Result<Arc<Running>, IceError> {
        let started = Instant::now();
        let agent = Arc::new(new_agent(&self.config, &session).await?);
        let (signals_tx, signals) = mpsc::channel(SIGNAL_CAPACITY);
        let (gathered_tx, gathered) = watch::channel(false);
        forward_callbacks(&agent, signals_tx, gathered_tx);
        if let Err(e) = agent.gather_candidates() {
            close_agent(&agent, &self.config, self.peer).await;
            return Err(e.into());
        }
        let (cancel, cancelled) = mpsc::channel(1);
        let path = Arc::new(Mutex::new(None));
        let pair = Arc::new(Mutex::new(None));
        let connect = Connect {
            pair: pair.clone(),
            socket: self.config.socket.clone(),
            agent: agent.clone(),
            controlling: session.controlling,
            remote: session.remote.clone(),
            binding: session.path.clone(),
            started,
            events: self.events.clone(),
            path: path.clone(),
        };
        let mut tasks = vec![
            tokio::spawn(pump(signals, self.events.clone(), self.peer)),
            tokio::spawn(connect.run(cancelled)),
        ];
        if let Some(socket) = self.config.socket.clone() {
            let (stun_urls, events, peer) = (self.config.stun_urls.clone(), self.events.clone(), self.peer);
            tasks.push(tokio::spawn(async move {
                for c in srflx::candidates(&socket, &stun_urls).await {
                    tracing::debug!(%peer, candidate = %c, "local candidate (our own STUN)");
                    if events.send(IceEvent::LocalCandidate(c)).await.is_err() {
                        return;
                    }
                }
            }));
        }
        tracing::debug!(
            peer = %self.peer,
            controlling = session.controlling,
            turn = session.use_turn || self.config.force_turn,
            local_ufrag = %session.local.ufrag,
            "ice session started"
        );
        Ok(Arc::new(Running {
            agent,
            candidates: Mutex::new(RemoteCandidates::new(&session.remote.ufrag, udp6(&self.config))),
            remote: session.remote,
            tasks: Mutex::new(tasks),
            cancel: Mutex::new(Some(cancel)),
            path,
            pair,
            gathered,
            peer: self.peer,
        }))
    }

    fn add(&self, for_session: Option<&str>, raw: &str) -> Result<(), IceError> {
        let Some(running) = self.current.lock().clone() else {
            self.counters.lock().stale_session += 1;
            tracing::info!(peer = %self.peer, "remote candidate ignored: no ICE session runs");
            return Err(IceError::Closed);
        };
        let admitted = running.candidates.lock().admit(for_session, raw);
        let candidate = match admitted {
            Ok(c) => c,
            Err(rejection) => {
                self.counters.lock().count(&rejection);
                tracing::info!(peer = %self.peer, reason = %rejection, "remote candidate ignored");
                tracing::debug!(peer = %self.peer, candidate = %raw, "the ignored candidate");
                return Err(rejection.into());
            }
        };
        tracing::debug!(peer = %self.peer, candidate = %raw, "remote candidate added");
        running.agent.add_remote_candidate(&candidate)?;
        Ok(())
    }
}

impl Drop for IceWorker {
    /// A worker dropped without `close` still closes its agent, in the background: an agent
    /// that is never closed keeps its sockets and tasks forever.
    fn drop(&mut self) {
        let Some(running) = self.current.lock().take() else {
            return;
        };
        running.silence();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(peer = %self.peer, "ice worker dropped outside a runtime; its agent leaks");
            return;
        };
        let config = self.config.clone();
        runtime.spawn(async move { running.release(&config).await });
    }
}

/// A running session.
struct Running {
    agent: Arc<Agent>,
    remote: IceCredentials,
    candidates: Mutex<RemoteCandidates>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Dropping it cancels a dial or accept in progress.
    cancel: Mutex<Option<mpsc::Sender<()>>>,
    /// The session's path when it is an [`IcePath`] (its tasks stop with the session).
    path: Arc<Mutex<Option<Arc<IcePath>>>>,
    pair: Arc<Mutex<Option<PairInfo>>>,
    gathered: watch::Receiver<bool>,
    peer: PublicKey,
}

impl Running {
    /// Stops everything that could report or carry traffic for this session.
    fn silence(&self) {
        self.cancel.lock().take();
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        if let Some(path) = self.path.lock().take() {
            path.shutdown();
        }
    }

    /// Frees the agent's sockets and tasks: gathering cannot be cancelled and a candidate it
    /// adds after close would leak its socket, so wait for it first (bounded), then close.
    async fn release(&self, config: &IceConfig) {
        let mut gathered = self.gathered.clone();
        if tokio::time::timeout(config.gather_drain_timeout, gathered.wait_for(|done| *done))
            .await
            .is_err()
        {
            tracing::warn!(peer = %self.peer, "ice gathering still running at close; its late candidates may leak");
        }
        close_agent(&self.agent, config, self.peer).await;
    }
}

async fn close_agent(agent: &Agent, config: &IceConfig, peer: PublicKey) {
    match tokio::time::timeout(config.close_timeout, agent.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "ice agent close"),
        Err(_) => {
            tracing::warn!(%peer, timeout = ?config.close_timeout, "ice agent close timed out; abandoned")
        }
    }
}

/// Forwards the agent's callback messages to the caller.
async fn pump(mut signals: mpsc::Receiver<AgentSignal>, events: mpsc::Sender<IceEvent>, peer: PublicKey) {
    while let Some(signal) = signals.recv().await {
        let event = match signal {
            AgentSignal::LocalCandidate(c) => {
                tracing::debug!(%peer, candidate = %c, "local candidate");
                IceEvent::LocalCandidate(c)
            }
            AgentSignal::GatheringComplete => IceEvent::GatheringComplete,
            AgentSignal::State(s) => {
                let Some(state) = IceState::from_ice(s) else {
                    continue;
                };
                tracing::info!(%peer, %state, "ice state");
                IceEvent::State(state)
            }
            AgentSignal::SelectedPair { local, remote } => {
                tracing::debug!(%peer, ?local, ?remote, "ice selected pair");
                continue;
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

/// Dials or accepts, then turns the selected pair into a path.
struct Connect {
    socket: Option<IceSocket>,
    pair: Arc<Mutex<Option<PairInfo>>>,
    agent: Arc<Agent>,
    controlling: bool,
    remote: IceCredentials,
    binding: PathBinding,
    started: Instant,
    events: mpsc::Sender<IceEvent>,
    path: Arc<Mutex<Option<Arc<IcePath>>>>,
}

impl Connect {
    async fn run(self, cancelled: mpsc::Receiver<()>) {
        let peer = self.binding.peer;
        let (ufrag, pwd) = (self.remote.ufrag.clone(), self.remote.pwd.clone());
        let conn: Result<Arc<dyn Conn + Send + Sync>, webrtc_ice::Error> = if self.controlling {
            match self.agent.dial(cancelled, ufrag, pwd).await {
                Ok(c) => Ok(c),
                Err(e) => Err(e),
            }
        } else {
            match self.agent.accept(cancelled, ufrag, pwd).await {
                Ok(c) => Ok(c),
                Err(e) => Err(e),
            }
        };
        let conn = match conn {
            Ok(c) => c,
            Err(webrtc_ice::Error::ErrCanceledByCaller) => return,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "ice connect failed");
                return;
            }
        };
        let Some(pair) = self.agent.get_selected_candidate_pair() else {
            tracing::warn!(%peer, "ice connected without a selected pair");
            return;
        };
        let (Some(local), Some(remote)) = (
            candidate_info(pair.local.as_ref()),
            candidate_info(pair.remote.as_ref()),
        ) else {
            tracing::warn!(%peer, "ice selected pair has an unknown candidate type");
            return;
        };
        let info = PairInfo {
            local,
            remote,
            time_to_connect: Instant::now().saturating_duration_since(self.started),
        };
        *self.pair.lock() = Some(info);
        let path = match (&self.socket, info.local.kind) {
            // A relay candidate's datagrams go through its TURN allocation, on its own socket.
            (Some(_), CandidateKind::Relay) | (None, _) => {
                let path = IcePath::start(conn, self.binding, info);
                *self.path.lock() = Some(path.clone());
                ConnectedPath::Agent(path)
            }
            // Every other local candidate is the shared socket: WireGuard goes straight to the
            // pair's remote address (a peer's TURN allocation included) and comes back through
            // the data plane's own receive loop.
            (
                Some(socket),
                CandidateKind::Host | CandidateKind::ServerReflexive | CandidateKind::PeerReflexive,
            ) => ConnectedPath::SharedSocket(Arc::new(UdpPath::ice(
                socket.udp().clone(),
                info.remote.addr,
                info.path_kind(),
            ))),
        };
        tracing::info!(
            %peer,
            kind = %info.path_kind(),
            pair = %info,
            ms = info.time_to_connect.as_millis(),
            "ice connected"
        );
        let _ = self.events.send(IceEvent::Connected { path, info }).await;
    }
}
