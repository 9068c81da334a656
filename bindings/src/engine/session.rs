//! One run of a core engine: started on a tun, its events forwarded into the queue the app
//! reads, stopped with a bound.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use peerlink_core::socket::SocketFactory;
use peerlink_core::tun::{FdOwnership, Tun};
use peerlink_core::{Engine as CoreEngine, EngineOptions};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::config::Validated;
use crate::error::PeerlinkError;
use crate::platform::{Platform, PlatformProtector};
use crate::status::{event_from_core, Event, PathKind, RelayState, SignalState};

/// The app's event queue holds as many events as core's broadcast channel: events are state
/// changes, not packets, and an app that falls this far behind is told how many it missed.
pub(crate) const EVENT_QUEUE: usize = peerlink_core::engine::EVENT_CAPACITY;
/// core gives each of its tasks 2 s to leave (its `STOP_GRACE`); a core engine that needs more
/// than this in all is stuck, and dropping it aborts whatever is left.
const STOP_BOUND: Duration = Duration::from_secs(3);
/// How long a stopped session's forwarder may take to hand over its last events: it only
/// waits for room in the app's queue, and an app that is not reading loses them.
const FORWARDER_GRACE: Duration = Duration::from_millis(500);

pub(crate) struct Session {
    pub core: CoreEngine,
    forwarder: JoinHandle<()>,
}

impl Session {
    /// Starts a core engine on `tun_fd`. Must run inside the engine's runtime. The first events
    /// it queues describe the state `start` left (core raised them before anyone could listen):
    /// read after subscribing, so a later change is either in that state or in a later event.
    pub fn start(
        config: &Validated,
        tun_fd: RawFd,
        platform: Option<&Arc<dyn Platform>>,
        events: &EventQueue,
    ) -> Result<Session, PeerlinkError> {
        let tun = Tun::from_fd(tun_fd, config.framing, config.fd_ownership)?;
        let protector = platform.map(|p| Arc::new(PlatformProtector(p.clone())) as _);
        let options = EngineOptions {
            sockets: SocketFactory::new(protector),
            ..EngineOptions::default()
        };
        let core = CoreEngine::start(config.core.clone(), tun, options)?;
        let receiver = core.subscribe();
        let status = core.status();
        let opening = [
            Event::Started {
                listen_port: status.listen_addr.port(),
            },
            Event::PeersUpdated {
                count: u32::try_from(status.peers.len()).unwrap_or(u32::MAX),
            },
        ];
        let signal = status.signal.clone().map(|s| Event::SignalStateChanged {
            state: SignalState::from(s),
        });
        let relay = status.relay.clone().map(|s| Event::RelayStateChanged {
            state: RelayState::from(s),
        });
        // Each peer's path, then the switches that led there (the first one usually happens
        // during start); one made after subscribing may arrive a second time, as an event.
        let paths = status.peers.iter().flat_map(|p| {
            let peer = p.public_key.to_base64();
            let active = p.active_path.map(|kind| Event::PathChanged {
                peer: peer.clone(),
                kind: Some(PathKind::from(kind)),
                remote: p.remote.clone(),
            });
            let switches = p.switches.iter().map(move |s| Event::PathSwitched {
                peer: peer.clone(),
                from: s.from.map(PathKind::from),
                to: s.to.map(PathKind::from),
                reason: s.reason.clone(),
            });
            active.into_iter().chain(switches)
        });
        for event in opening.into_iter().chain(signal).chain(relay).chain(paths) {
            events.push(event);
        }
        let forwarder = tokio::spawn(forward(receiver, events.sender.clone()));
        Ok(Session { core, forwarder })
    }

    /// Stops the core engine (its tun closes if owned, its sockets close) and lets the
    /// forwarder hand over what core said before it stopped. Bounded by STOP_BOUND +
    /// FORWARDER_GRACE.
    pub async fn stop(self) {
        if tokio::time::timeout(STOP_BOUND, self.core.stop()).await.is_err() {
            tracing::warn!(bound = ?STOP_BOUND, "engine did not stop in time; its tasks were aborted");
        }
        let abort = self.forwarder.abort_handle();
        if tokio::time::timeout(FORWARDER_GRACE, self.forwarder)
            .await
            .is_err()
        {
            tracing::debug!("the app is not reading events; the last ones are dropped");
            abort.abort();
        }
    }
}

/// The sending side of the app's event queue, for events raised outside core (start's opening
/// state, network changes, tun swaps, `Stopped`): queued without waiting, and counted when the
/// queue is full, so that `next_event` reports them as `EventsLost` instead of losing them
/// silently.
#[derive(Clone)]
pub(crate) struct EventQueue {
    sender: mpsc::Sender<Event>,
    lost: Arc<AtomicU64>,
}

impl EventQueue {
    /// `lost` outlives the run: the app may read the count after the run's queue is gone.
    pub fn new(sender: mpsc::Sender<Event>, lost: Arc<AtomicU64>) -> Self {
        EventQueue { sender, lost }
    }

    /// Queues `event` without waiting; a full queue means the app is not reading.
    pub fn push(&self, event: Event) {
        match self.sender.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                tracing::debug!(?event, "event queue full; counted as lost");
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
            // The app dropped the queue with the engine: nobody is left to tell.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Closes `fd` if the engine was to own it, for the paths that refuse it before core takes it:
/// the app handed it over either way (Android's `detachFd()`), so nothing else would close it.
pub(crate) fn close_if_owned(fd: RawFd, ownership: FdOwnership) {
    match ownership {
        // SAFETY: the app transferred this fd to us; nothing else uses or closes it.
        FdOwnership::Owned => unsafe {
            libc::close(fd);
        },
        FdOwnership::Borrowed => {}
    }
}

async fn forward(mut from: broadcast::Receiver<peerlink_core::Event>, to: mpsc::Sender<Event>) {
    loop {
        let event = match from.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                if to.send(Event::EventsLost { missed }).await.is_err() {
                    return;
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let stopped = event == peerlink_core::Event::Stopped;
        if let Some(event) = event_from_core(event) {
            if to.send(event).await.is_err() {
                return;
            }
        }
        if stopped {
            return;
        }
    }
}
