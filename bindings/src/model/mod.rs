//! One model of the tunnel for both platforms: the engine's lifecycle and events reduced into
//! the state a UI shows ([`TunnelState`], [`PeerState`]), and the platform's network reports
//! reduced into the changes the engine must hear about. Kotlin's `PeerlinkSession` and Swift's
//! `PeerlinkTunnel` only pump [`TunnelModel::next_update`] and pass the platform's callbacks
//! on; neither decides anything of its own.

mod network;
mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::{InterfaceSettings, PeerConfig};
use crate::engine::Engine;
use crate::error::PeerlinkError;
use crate::guard::guard;
use crate::status::Event;
use network::NetworkTracker;
use state::Reducer;

pub use state::{PeerState, TunnelState};

/// One event and the state after it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TunnelUpdate {
    pub event: Event,
    pub state: TunnelState,
    /// The peers, in configuration order.
    pub peers: Vec<PeerState>,
    /// Events that never reached the model or the app since it was created: the engine's
    /// queue overflowed (`EventsLost`) or the platform's buffer did (`events_dropped`).
    pub events_lost: u64,
}

/// The engine as an app drives and shows it. Call its `start`, `set_tun`, `update_peers` and
/// `stop` instead of the engine's, pump `next_update` in one loop (not `Engine.next_event`:
/// the two would split the events), and pass the platform's network callbacks to
/// `network_available`/`network_lost`.
#[derive(uniffi::Object)]
pub struct TunnelModel {
    engine: Arc<Engine>,
    model: Mutex<Model>,
}

struct Model {
    reducer: Reducer,
    networks: NetworkTracker,
}

#[uniffi::export]
impl TunnelModel {
    #[uniffi::constructor]
    pub fn new(engine: Arc<Engine>) -> Arc<Self> {
        Arc::new(TunnelModel {
            engine,
            model: Mutex::new(Model {
                reducer: Reducer::new(),
                networks: NetworkTracker::default(),
            }),
        })
    }

    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    pub fn state(&self) -> TunnelState {
        self.lock().reducer.state.clone()
    }

    /// The peers, in configuration order.
    pub fn peers(&self) -> Vec<PeerState> {
        self.lock().reducer.peers.clone()
    }

    /// See [`TunnelUpdate::events_lost`].
    pub fn events_lost(&self) -> u64 {
        self.lock().reducer.events_lost
    }

    /// What the platform's interface needs now (addresses, routes, MTU, DNS).
    pub fn interface_settings(&self) -> Result<InterfaceSettings, PeerlinkError> {
        self.engine.interface_settings()
    }

    /// `Engine.start`, with the state going to `Starting`, then `Running` when the pump
    /// delivers `Started`, or `Failed` with the error (which is returned too).
    pub fn start(&self, tun_fd: i32) -> Result<(), PeerlinkError> {
        self.lock().reducer.state = TunnelState::Starting;
        let result = self.engine.start(tun_fd);
        if let Err(error) = &result {
            self.lock().reducer.state = TunnelState::Failed { error: error.clone() };
        }
        result
    }

    /// `Engine.update_peers`; true if the routes changed: the platform must then rebuild its
    /// interface (Android: a new fd for `set_tun`; Apple: new network settings, same utun).
    pub fn update_peers(&self, peers: Vec<PeerConfig>) -> Result<bool, PeerlinkError> {
        let before = self.engine.interface_settings()?;
        self.engine.update_peers(peers)?;
        Ok(self.engine.interface_settings()? != before)
    }

    /// `Engine.set_tun`; a refused fd leaves the state `Failed` (the engine keeps the old one).
    pub async fn set_tun(&self, tun_fd: i32) -> Result<(), PeerlinkError> {
        let result = self.engine.set_tun(tun_fd).await;
        if let Err(error) = &result {
            self.lock().reducer.state = TunnelState::Failed { error: error.clone() };
        }
        result
    }

    /// `Engine.stop`: the state goes to `Stopping` (a failure stays), then `Stopped` when the
    /// pump delivers the engine's last event.
    pub async fn stop(&self) -> Result<(), PeerlinkError> {
        {
            let mut model = self.lock();
            match model.reducer.state {
                TunnelState::Starting | TunnelState::Running { .. } => {
                    model.reducer.state = TunnelState::Stopping
                }
                TunnelState::Stopped | TunnelState::Stopping | TunnelState::Failed { .. } => {}
            }
        }
        self.engine.stop().await
    }

    /// The engine's next event and the state after it; `None` once the engine has stopped and
    /// every event was delivered (the state is then `Stopped`, or still `Failed`). One loop
    /// per model pumps this; cancelling the wait loses nothing.
    pub async fn next_update(&self) -> Option<TunnelUpdate> {
        let Some(event) = self.engine.next_event().await else {
            let mut model = self.lock();
            match model.reducer.state {
                TunnelState::Failed { .. } => {}
                TunnelState::Stopped
                | TunnelState::Starting
                | TunnelState::Running { .. }
                | TunnelState::Stopping => model.reducer.state = TunnelState::Stopped,
            }
            return None;
        };
        let status = if Reducer::wants_status(&event) {
            self.engine.status().ok()
        } else {
            None
        };
        let update = guard(|| {
            let mut model = self.lock();
            model.reducer.apply(&event, status.as_ref());
            Ok(TunnelUpdate {
                state: model.reducer.state.clone(),
                peers: model.reducer.peers.clone(),
                events_lost: model.reducer.events_lost,
                event,
            })
        });
        match update {
            Ok(update) => Some(update),
            Err(e) => {
                tracing::error!(error = %e, "reducing an event failed");
                None
            }
        }
    }

    /// The platform dropped `count` events it had from `next_update` before its consumer read
    /// them (a bounded buffer, e.g. Swift's `AsyncStream`): counted in `events_lost`.
    pub fn events_dropped(&self, count: u64) {
        self.lock().reducer.dropped(count);
    }

    /// A non-VPN network with internet is up (Android `onAvailable` without addresses,
    /// `onLinkPropertiesChanged` with them; Apple: a satisfied path as network 0 with its
    /// interfaces' names). The engine hears of it only if the network is new or its addresses
    /// changed.
    pub fn network_available(&self, network: u64, addresses: Option<Vec<String>>) {
        let news = self.lock().networks.available(network, addresses);
        if news {
            self.engine.network_changed(true);
        }
    }

    /// A network went away (Android `onLost`; Apple: an unsatisfied path). The engine hears of
    /// it only if it was known, and is offline when none is left.
    pub fn network_lost(&self, network: u64) {
        let online = {
            let mut model = self.lock();
            model.networks.lost(network).then(|| model.networks.online())
        };
        if let Some(online) = online {
            self.engine.network_changed(online);
        }
    }

    /// The networks known to be up, oldest first (Android: for `setUnderlyingNetworks`).
    pub fn networks(&self) -> Vec<u64> {
        self.lock().networks.current()
    }
}

impl TunnelModel {
    /// The model stays consistent between statements, so a lock poisoned by a caught panic is
    /// still good to use.
    fn lock(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;
    use crate::status::PathKind;
    use peerlink_core::tun::packet_socketpair;

    use crate::engine::tests::block_on;

    fn pump(model: &TunnelModel) -> Vec<TunnelUpdate> {
        block_on(async {
            let mut updates = Vec::new();
            while let Some(u) = model.next_update().await {
                updates.push(u);
            }
            updates
        })
    }

    #[test]
    fn a_run_goes_starting_running_stopping_stopped_with_peers_from_status() {
        let model = TunnelModel::new(Engine::new(config(), None).unwrap());
        assert_eq!(model.state(), TunnelState::Stopped);
        let (tun, os) = packet_socketpair().unwrap();
        model.start(tun).unwrap();
        assert_eq!(model.state(), TunnelState::Starting);
        let port = model.engine().status().unwrap().listen_port;
        // The pump runs while the engine does, as in an app: status fills in the peers.
        let mut updates = block_on(async {
            let mut updates = Vec::new();
            while let Some(u) = model.next_update().await {
                let configured = matches!(u.event, Event::PeersUpdated { .. });
                updates.push(u);
                if configured {
                    break;
                }
            }
            updates
        });
        block_on(model.stop()).unwrap();
        assert_eq!(model.state(), TunnelState::Stopping);
        updates.extend(pump(&model));

        let first = updates.first().unwrap();
        assert_eq!(first.event, Event::Started { listen_port: port });
        assert!(
            matches!(first.state, TunnelState::Running { listen_port, online: true, .. } if listen_port == port),
            "{first:?}"
        );
        let configured = updates
            .iter()
            .find(|u| matches!(u.event, Event::PeersUpdated { .. }))
            .unwrap();
        assert_eq!(
            configured.peers.len(),
            1,
            "the configured peer, from status: {configured:?}"
        );
        assert!(
            updates
                .iter()
                .any(|u| u.peers.first().and_then(|p| p.path) == Some(PathKind::Direct)),
            "the configured endpoint's path: {updates:?}"
        );
        let last = updates.last().unwrap();
        assert_eq!(
            (&last.event, &last.state),
            (&Event::Stopped, &TunnelState::Stopped)
        );
        assert!(last.peers.is_empty());
        assert_eq!(model.state(), TunnelState::Stopped);
        // SAFETY: closing the test's own end.
        unsafe { libc::close(os) };
    }

    #[test]
    fn a_refused_start_is_failed_and_stays_failed_after_stop() {
        let model = TunnelModel::new(Engine::new(config(), None).unwrap());
        let e = model.start(-1).unwrap_err();
        assert!(matches!(&e, PeerlinkError::Tun { .. }), "{e:?}");
        block_on(model.stop()).unwrap();
        assert!(pump(&model).is_empty());
        assert_eq!(model.state(), TunnelState::Failed { error: e });
    }

    #[test]
    fn only_network_news_reaches_the_engine() {
        let model = TunnelModel::new(Engine::new(config(), None).unwrap());
        let (tun, os) = packet_socketpair().unwrap();
        model.start(tun).unwrap();
        model.network_available(100, None);
        model.network_available(100, Some(vec!["192.0.2.7/24".into()]));
        model.network_lost(7); // never seen: nothing to say
        model.network_lost(100);
        assert!(!model.engine().status().unwrap().network_online);
        assert!(model.networks().is_empty());
        block_on(model.stop()).unwrap();
        let changes: Vec<_> = pump(&model)
            .into_iter()
            .filter_map(|u| match u.event {
                Event::NetworkChanged { online } => Some((online, u.state)),
                _ => None,
            })
            .collect();
        assert_eq!(
            changes.iter().map(|(online, _)| *online).collect::<Vec<_>>(),
            vec![true, false],
            "one change each way: {changes:?}"
        );
        assert!(
            matches!(
                changes.last(),
                Some((_, TunnelState::Running { online: false, .. }))
            ),
            "{changes:?}"
        );
        // SAFETY: closing the test's own end.
        unsafe { libc::close(os) };
    }

    #[test]
    fn lost_events_are_counted_and_the_peers_reread_from_status() {
        let model = TunnelModel::new(Engine::new(config(), None).unwrap());
        let (tun, os) = packet_socketpair().unwrap();
        model.start(tun).unwrap();
        // Nobody pumps while far more events than the engine's queue holds come in.
        for i in 0..peerlink_core::engine::EVENT_CAPACITY + 10 {
            model.engine().network_changed(i % 2 == 0);
        }
        let first = block_on(model.next_update()).unwrap();
        let Event::EventsLost { missed } = first.event else {
            panic!("the loss comes first: {first:?}");
        };
        assert!(missed >= 10, "{first:?}");
        assert_eq!(first.events_lost, missed);
        assert_eq!(first.peers.len(), 1, "peers reread from status: {first:?}");
        block_on(model.stop()).unwrap();
        let rest = pump(&model);
        let reported: u64 = std::iter::once(&first)
            .chain(&rest)
            .map(|u| match u.event {
                Event::EventsLost { missed } => missed,
                _ => 0,
            })
            .sum();
        assert_eq!(
            model.events_lost(),
            reported,
            "the counter is the sum of the reports"
        );
        // SAFETY: closing the test's own end.
        unsafe { libc::close(os) };
    }

    #[test]
    fn update_peers_says_when_routes_changed() {
        let model = TunnelModel::new(Engine::new(config(), None).unwrap());
        let key = crate::config::generate_key_pair().public_key;
        let peer = |endpoint: Option<&str>| PeerConfig {
            public_key: key.clone(),
            allowed_ips: vec!["10.8.0.0/24".into()],
            preshared_key: None,
            endpoint: endpoint.map(str::to_owned),
            persistent_keepalive: None,
            always_on: false,
        };
        assert!(model.update_peers(vec![peer(None)]).unwrap(), "a new prefix");
        assert!(
            !model.update_peers(vec![peer(Some("127.0.0.1:9"))]).unwrap(),
            "only the endpoint"
        );
        assert!(model.update_peers(Vec::new()).unwrap(), "prefix gone");
    }
}
