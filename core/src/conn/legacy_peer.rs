//! One peer's side of the control plane: its ICE session, its relay path, its guard.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::peer::guard::{OfferGuard, Paths};
use crate::clock::Instant;
use crate::ice::{is_controlling, IceCredentials, IceSession, IceWorker, PathBinding};
use crate::keys::PublicKey;
use crate::path::{Inbound, PathId};
use crate::relay::RelayPath;
use crate::signal::{OfferAnswer, SessionId};

/// Remote candidates held while the ICE agent starts: a session's worth (a few per interface
/// and server); more than that before the agent is up means something is wrong.
const PENDING_CANDIDATES: usize = 64;

enum IceSlot {
    Idle,
    Starting,
    Running(Arc<IceWorker>),
}

enum RelaySlot {
    Idle,
    Opening(PathId),
    Open(PathId, Arc<RelayPath>),
}

pub(super) struct PeerConn {
    pub key: PublicKey,
    /// Greater base64 key: ICE controlling agent, picks its own relay server.
    pub controlling: bool,
    pub guard: OfferGuard,
    local: IceCredentials,
    session_id: SessionId,
    remote_ice: Option<IceCredentials>,
    /// The relay instance the peer advertised last.
    remote_relay: Option<String>,
    /// Whether the peer has sent an offer or answer: until then there is no one to open a
    /// relay path to.
    heard_from: bool,
    pending_candidates: Vec<String>,
    ice: IceSlot,
    /// The path id given to the newest ICE session; its `Connected` attaches under it.
    ice_session_path: Option<PathId>,
    /// Local and remote credentials of the session the agent runs (or is starting) with.
    ice_session_creds: Option<(IceCredentials, IceCredentials)>,
    /// The ICE path attached to the engine now.
    ice_path: Option<PathId>,
    relay: RelaySlot,
}

impl PeerConn {
    pub fn new(own: PublicKey, key: PublicKey, now: Instant) -> Self {
        let mut rng = rand::thread_rng();
        Self {
            key,
            controlling: is_controlling(&own, &key),
            guard: OfferGuard::new(now, &mut rng),
            local: IceCredentials::generate(),
            session_id: SessionId::generate(&mut rng),
            remote_ice: None,
            remote_relay: None,
            heard_from: false,
            pending_candidates: Vec::new(),
            ice: IceSlot::Idle,
            ice_session_path: None,
            ice_session_creds: None,
            ice_path: None,
            relay: RelaySlot::Idle,
        }
    }

    /// What we tell the peer in an offer or answer.
    pub fn local_description(&self, ice: bool, wg_listen_port: u16, relay: Option<String>) -> OfferAnswer {
        OfferAnswer {
            ice: ice.then(|| self.local.clone()),
            wg_listen_port,
            version: super::VERSION.to_owned(),
            relay_server_address: relay,
            relay_server_ip: None,
            session_id: Some(self.session_id),
        }
    }

    pub fn on_remote_description(&mut self, desc: OfferAnswer, _now: Instant) {
        self.heard_from = true;
        if let Some(ice) = desc.ice {
            self.remote_ice = Some(ice);
        }
        if desc.relay_server_address.is_some() {
            self.remote_relay = desc.relay_server_address;
        }
    }

    pub fn remote_relay(&self) -> Option<String> {
        self.remote_relay.clone()
    }

    /// ICE failed: the agent goes, and a new local session (fresh credentials and session id)
    /// will be offered, as NetBird restarts ICE on failure. Returns the path to detach.
    pub fn ice_failed(&mut self) -> Option<PathId> {
        if let IceSlot::Running(w) = std::mem::replace(&mut self.ice, IceSlot::Idle) {
            tokio::spawn(async move { w.close().await });
        }
        self.ice_session_creds = None;
        self.local = IceCredentials::generate();
        self.session_id = SessionId::generate(&mut rand::thread_rng());
        self.ice_path.take()
    }

    /// The ICE session to start or restart with: `None` until the peer's credentials are
    /// known, and when the agent already runs this very session (an offer repeated).
    pub fn ice_session(
        &mut self,
        relay_usable: bool,
        next_id: impl FnOnce() -> PathId,
        inbound: mpsc::Sender<Inbound>,
    ) -> Option<IceSession> {
        let remote = self.remote_ice.clone()?;
        let creds = (self.local.clone(), remote.clone());
        if self.ice_session_creds.as_ref() == Some(&creds) {
            return None;
        }
        self.ice_session_creds = Some(creds);
        let id = next_id();
        self.ice_session_path = Some(id);
        Some(IceSession {
            local: self.local.clone(),
            remote,
            controlling: self.controlling,
            use_turn: !relay_usable,
            path: PathBinding {
                peer: self.key,
                id,
                inbound,
            },
        })
    }

    pub fn ice_worker(&self) -> Option<Arc<IceWorker>> {
        match &self.ice {
            IceSlot::Running(w) => Some(w.clone()),
            IceSlot::Idle | IceSlot::Starting => None,
        }
    }

    pub fn ice_starting(&self) -> bool {
        matches!(self.ice, IceSlot::Starting)
    }

    pub fn ice_start_requested(&mut self) {
        self.ice = IceSlot::Starting;
    }

    pub fn ice_started(&mut self, worker: Arc<IceWorker>) {
        for c in self.pending_candidates.drain(..) {
            // Bad candidates are counted and logged by the worker; nothing to do here.
            let _ = worker.add_remote_candidate(&c);
        }
        self.ice = IceSlot::Running(worker);
    }

    pub fn ice_start_failed(&mut self) {
        self.ice = IceSlot::Idle;
        self.ice_session_creds = None;
    }

    pub fn add_remote_candidate(&mut self, candidate: String) {
        match &self.ice {
            IceSlot::Running(w) => {
                let _ = w.add_remote_candidate(&candidate);
            }
            IceSlot::Idle | IceSlot::Starting => {
                if self.pending_candidates.len() < PENDING_CANDIDATES {
                    self.pending_candidates.push(candidate);
                }
            }
        }
    }

    /// The ICE path attached now.
    pub fn ice_path(&self) -> Option<PathId> {
        self.ice_path
    }

    pub fn ice_path_id(&self) -> Option<PathId> {
        self.ice_session_path
    }

    /// ICE connected under `id`; returns the previous ICE path to detach, if another.
    pub fn ice_connected(&mut self, id: PathId) -> Option<PathId> {
        self.ice_path.replace(id).filter(|old| *old != id)
    }

    /// ICE lost its pair; returns the path to detach.
    pub fn ice_lost(&mut self) -> Option<PathId> {
        self.ice_path.take()
    }

    pub fn wants_relay(&self) -> bool {
        self.heard_from && matches!(self.relay, RelaySlot::Idle)
    }

    pub fn relay_opening(&mut self, id: PathId) {
        self.relay = RelaySlot::Opening(id);
    }

    pub fn relay_opened(&mut self, id: PathId, path: Arc<RelayPath>) {
        if matches!(self.relay, RelaySlot::Opening(o) if o == id) {
            self.relay = RelaySlot::Open(id, path);
        }
    }

    pub fn relay_failed(&mut self, id: PathId) {
        if matches!(self.relay, RelaySlot::Opening(o) if o == id) {
            self.relay = RelaySlot::Idle;
        }
    }

    pub fn relay_closed(&mut self, id: PathId) {
        if matches!(self.relay, RelaySlot::Open(o, _) if o == id) {
            self.relay = RelaySlot::Idle;
        }
    }

    pub fn is_connected(&self) -> bool {
        self.ice_path.is_some() || matches!(self.relay, RelaySlot::Open(..))
    }

    /// The paths as the guard weighs them. Without ICE configured, the relay is the best path
    /// there is, so an open relay needs no retries.
    pub fn guard_paths(&self, ice_enabled: bool) -> Paths {
        let relay_up = matches!(self.relay, RelaySlot::Open(..));
        Paths {
            relay_up,
            ice_up: self.ice_path.is_some() || (!ice_enabled && relay_up),
        }
    }

    /// Closes the ICE worker and relay path without waiting (the peer left the configuration).
    pub fn close_in_background(&mut self) {
        if let RelaySlot::Open(_, path) = std::mem::replace(&mut self.relay, RelaySlot::Idle) {
            path.close();
        }
        if let IceSlot::Running(w) = std::mem::replace(&mut self.ice, IceSlot::Idle) {
            tokio::spawn(async move { w.close().await });
        }
    }

    pub async fn close(mut self) {
        if let RelaySlot::Open(_, path) = std::mem::replace(&mut self.relay, RelaySlot::Idle) {
            path.close();
        }
        if let IceSlot::Running(w) = std::mem::replace(&mut self.ice, IceSlot::Idle) {
            w.close().await;
        }
    }
}
