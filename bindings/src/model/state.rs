//! The tunnel and its peers as a UI shows them, reduced from the engine's events. Pure: no
//! engine, no locks, no clock; [`TunnelModel`](super::TunnelModel) drives it.

use crate::error::PeerlinkError;
use crate::management::ManagementState;
use crate::status::{EngineStatus, Event, IceState, PathKind, PeerActivity, RelayState, SignalState};

/// The tunnel's lifecycle and, while it runs, its servers and network.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum TunnelState {
    /// Not started, or stopped cleanly.
    Stopped,
    /// `start` was called; the engine has not reported `Started` yet.
    Starting,
    /// The engine runs. `signal`, `relay` and `management` are `None` when the configuration
    /// names no such server; otherwise they follow `SignalStateChanged`, `RelayStateChanged` and
    /// `ManagementStateChanged`.
    Running {
        listen_port: u16,
        online: bool,
        signal: Option<SignalState>,
        relay: Option<RelayState>,
        management: Option<ManagementState>,
    },
    /// `stop` was called; the engine has not reported `Stopped` yet.
    Stopping,
    /// Start, a tun swap or the engine itself failed; `stop` or a new `start` leaves it.
    Failed { error: PeerlinkError },
}

/// One peer as a UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PeerState {
    pub public_key: String,
    pub path: Option<PathKind>,
    pub remote: Option<String>,
    /// A handshake completed since the engine started (status gives the exact age).
    pub handshake_completed: bool,
    /// The peer's ICE agent, when ICE is configured and has started for this peer.
    pub ice: Option<IceState>,
    /// Why the peer's traffic last moved to another path, e.g. "no answer to 3 probes in
    /// 1.5 s"; `None` before any switch. Each path's health is in `status()`: it changes
    /// without events.
    pub switch_reason: Option<String>,
    /// Open, idle or waking (lazy connections).
    pub activity: PeerActivity,
}

impl PeerState {
    fn new(public_key: &str) -> Self {
        PeerState {
            public_key: public_key.to_owned(),
            path: None,
            remote: None,
            handshake_completed: false,
            ice: None,
            switch_reason: None,
            activity: PeerActivity::Active,
        }
    }
}

/// The state and the peers (configuration order), and how many events never reached them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reducer {
    pub state: TunnelState,
    pub peers: Vec<PeerState>,
    /// Events lost on the way (the engine's queue overflowed, or the platform's own buffer):
    /// the sum of every `EventsLost` and of what the platform reported dropping.
    pub events_lost: u64,
}

impl Reducer {
    pub fn new() -> Self {
        Reducer {
            state: TunnelState::Stopped,
            peers: Vec::new(),
            events_lost: 0,
        }
    }

    /// Whether `event` leaves something only a status snapshot can fill in: `PeersUpdated`
    /// carries a count, `Started` opens a run, and after `EventsLost` the picture may be stale.
    pub fn wants_status(event: &Event) -> bool {
        match event {
            Event::Started { .. } | Event::PeersUpdated { .. } | Event::EventsLost { .. } => true,
            Event::HandshakeCompleted { .. }
            | Event::PathChanged { .. }
            | Event::PathSwitched { .. }
            | Event::PeerActivity { .. }
            | Event::SignalStateChanged { .. }
            | Event::RelayStateChanged { .. }
            | Event::IceStateChanged { .. }
            | Event::NetworkChanged { .. }
            | Event::TunReplaced
            // PeersUpdated follows a new map; the interface and DNS are the platform's.
            | Event::InterfaceChanged { .. }
            | Event::DnsChanged { .. }
            | Event::ManagementStateChanged { .. }
            | Event::Stopped => false,
        }
    }

    /// Applies `event`; `status` is the engine's snapshot taken after it, when
    /// [`Reducer::wants_status`] asked for one and the engine still runs.
    pub fn apply(&mut self, event: &Event, status: Option<&EngineStatus>) {
        self.reduce_state(event);
        self.reduce_peers(event);
        if let Event::EventsLost { missed } = event {
            self.events_lost = self.events_lost.saturating_add(*missed);
        }
        if let Some(status) = status {
            self.resync(status);
        }
    }

    /// The platform dropped `count` events on its side (a bounded buffer before a slow reader).
    pub fn dropped(&mut self, count: u64) {
        self.events_lost = self.events_lost.saturating_add(count);
    }

    fn reduce_state(&mut self, event: &Event) {
        let state = &mut self.state;
        match event {
            Event::Started { listen_port } => {
                *state = TunnelState::Running {
                    listen_port: *listen_port,
                    online: true,
                    signal: None,
                    relay: None,
                    management: None,
                }
            }
            Event::NetworkChanged { online: now } => {
                if let TunnelState::Running { online, .. } = state {
                    *online = *now;
                }
            }
            Event::SignalStateChanged { state: new } => {
                if let TunnelState::Running { signal, .. } = state {
                    *signal = Some(new.clone());
                }
            }
            Event::RelayStateChanged { state: new } => {
                if let TunnelState::Running { relay, .. } = state {
                    *relay = Some(new.clone());
                }
            }
            Event::ManagementStateChanged { state: new } => {
                if let TunnelState::Running { management, .. } = state {
                    *management = Some(new.clone());
                }
            }
            Event::Stopped => match state {
                // A failure stays visible until the app acts on it.
                TunnelState::Failed { .. } => {}
                TunnelState::Stopped
                | TunnelState::Starting
                | TunnelState::Running { .. }
                | TunnelState::Stopping => *state = TunnelState::Stopped,
            },
            Event::HandshakeCompleted { .. }
            | Event::PathChanged { .. }
            | Event::PathSwitched { .. }
            | Event::PeerActivity { .. }
            | Event::PeersUpdated { .. }
            | Event::IceStateChanged { .. }
            | Event::TunReplaced
            | Event::InterfaceChanged { .. }
            | Event::DnsChanged { .. }
            | Event::EventsLost { .. } => {}
        }
    }

    fn reduce_peers(&mut self, event: &Event) {
        match event {
            Event::PathChanged { peer, kind, remote } => {
                let p = self.peer(peer);
                p.path = *kind;
                p.remote = remote.clone();
            }
            // The path itself follows PathChanged, which says where it leads.
            Event::PathSwitched { peer, reason, .. } => self.peer(peer).switch_reason = Some(reason.clone()),
            Event::HandshakeCompleted { peer } => self.peer(peer).handshake_completed = true,
            Event::IceStateChanged { peer, state } => self.peer(peer).ice = Some(*state),
            // Waking until a path carries traffic again; status says when it has.
            Event::PeerActivity { peer, idle, .. } => {
                self.peer(peer).activity = if *idle { PeerActivity::Idle } else { PeerActivity::Waking }
            }
            Event::Stopped => self.peers.clear(),
            Event::Started { .. }
            | Event::PeersUpdated { .. }
            | Event::NetworkChanged { .. }
            | Event::SignalStateChanged { .. }
            | Event::RelayStateChanged { .. }
            // Swapped in place: sessions and paths stay.
            | Event::TunReplaced
            // The interface and the server state: nothing per peer (PeersUpdated follows a map).
            | Event::InterfaceChanged { .. }
            | Event::DnsChanged { .. }
            | Event::ManagementStateChanged { .. }
            | Event::EventsLost { .. } => {}
        }
    }

    /// The peer list of `status`, keeping what events taught us about known peers; the
    /// servers' and network's state from it too.
    fn resync(&mut self, status: &EngineStatus) {
        let known = std::mem::take(&mut self.peers);
        self.peers = status
            .peers
            .iter()
            .map(|p| {
                let before = known.iter().find(|k| k.public_key == p.public_key);
                PeerState {
                    public_key: p.public_key.clone(),
                    path: p.active_path,
                    remote: p.remote.clone(),
                    handshake_completed: p.connected || before.is_some_and(|k| k.handshake_completed),
                    ice: before.and_then(|k| k.ice),
                    switch_reason: p
                        .switches
                        .last()
                        .map(|s| s.reason.clone())
                        .or_else(|| before.and_then(|k| k.switch_reason.clone())),
                    activity: p.activity,
                }
            })
            .collect();
        if let TunnelState::Running {
            online,
            signal,
            relay,
            management,
            ..
        } = &mut self.state
        {
            *online = status.network_online;
            *signal = status.signal.clone();
            *relay = status.relay.clone();
            *management = status.management.as_ref().map(|m| m.state.clone());
        }
    }

    /// The peer with `key`, added at the end if the events name it before a status did.
    fn peer(&mut self, key: &str) -> &mut PeerState {
        let at = match self.peers.iter().position(|p| p.public_key == key) {
            Some(at) => at,
            None => {
                self.peers.push(PeerState::new(key));
                self.peers.len() - 1
            }
        };
        // `at` is an index just found or just pushed.
        #[allow(clippy::indexing_slicing)]
        &mut self.peers[at]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "peer-key";

    fn running(port: u16) -> TunnelState {
        TunnelState::Running {
            listen_port: port,
            online: true,
            signal: None,
            relay: None,
            management: None,
        }
    }

    fn reduced(from: TunnelState, events: &[Event]) -> Reducer {
        let mut r = Reducer::new();
        r.state = from;
        for e in events {
            r.apply(e, None);
        }
        r
    }

    #[test]
    fn the_tunnel_state_follows_started_network_and_stopped() {
        let r = reduced(
            TunnelState::Starting,
            &[
                Event::Started { listen_port: 51820 },
                Event::NetworkChanged { online: false },
                Event::HandshakeCompleted { peer: KEY.into() },
            ],
        );
        let TunnelState::Running {
            online, listen_port, ..
        } = r.state
        else {
            panic!("{r:?}");
        };
        assert_eq!((listen_port, online), (51820, false));
        assert_eq!(reduced(r.state, &[Event::Stopped]).state, TunnelState::Stopped);
    }

    #[test]
    fn a_failure_stays_until_the_app_acts() {
        let failed = TunnelState::Failed {
            error: PeerlinkError::NotStarted,
        };
        assert_eq!(reduced(failed.clone(), &[Event::Stopped]).state, failed);
    }

    #[test]
    fn the_running_state_follows_signal_and_relay_and_nothing_else_does() {
        let relay = RelayState::Connected {
            server: "rels://relay:443".into(),
            instance_url: "rels://relay:443".into(),
        };
        let signal = SignalState::Reconnecting {
            attempt: 1,
            detail: "transport: refused".into(),
        };
        let r = reduced(
            running(51820),
            &[
                Event::SignalStateChanged {
                    state: SignalState::Connecting,
                },
                Event::RelayStateChanged { state: relay.clone() },
                Event::SignalStateChanged {
                    state: signal.clone(),
                },
            ],
        );
        assert_eq!(
            r.state,
            TunnelState::Running {
                listen_port: 51820,
                online: true,
                signal: Some(signal),
                relay: Some(relay),
                management: None,
            }
        );
        let managed = reduced(
            running(51820),
            &[Event::ManagementStateChanged {
                state: ManagementState::InvalidSetupKey {
                    detail: "the setup key was refused".into(),
                },
            }],
        );
        assert!(
            matches!(
                managed.state,
                TunnelState::Running {
                    management: Some(ManagementState::InvalidSetupKey { .. }),
                    ..
                }
            ),
            "{managed:?}"
        );
        let before_start = reduced(
            TunnelState::Starting,
            &[Event::SignalStateChanged {
                state: SignalState::Connected,
            }],
        );
        assert_eq!(before_start.state, TunnelState::Starting);
    }

    #[test]
    fn peers_learn_paths_handshakes_and_ice_and_keep_them_on_a_tun_swap() {
        let r = reduced(
            running(1),
            &[
                Event::PathChanged {
                    peer: KEY.into(),
                    kind: Some(PathKind::Relay),
                    remote: Some("rels://relay".into()),
                },
                Event::HandshakeCompleted { peer: KEY.into() },
                Event::IceStateChanged {
                    peer: KEY.into(),
                    state: IceState::Checking,
                },
                Event::PathChanged {
                    peer: KEY.into(),
                    kind: None,
                    remote: None,
                },
                Event::TunReplaced,
            ],
        );
        assert_eq!(
            r.peers,
            vec![PeerState {
                handshake_completed: true,
                ice: Some(IceState::Checking),
                ..PeerState::new(KEY)
            }]
        );
        assert!(reduced(r.state, &[Event::Stopped]).peers.is_empty());
    }

    #[test]
    fn a_path_switch_gives_its_reason_and_leaves_the_path_to_path_changed() {
        let stale = "no answer to 3 probes in 1.5 s";
        let r = reduced(
            running(1),
            &[
                Event::PathChanged {
                    peer: KEY.into(),
                    kind: Some(PathKind::IceP2p),
                    remote: Some("192.0.2.7:51820".into()),
                },
                Event::PathSwitched {
                    peer: KEY.into(),
                    from: Some(PathKind::IceP2p),
                    to: Some(PathKind::Relay),
                    reason: stale.into(),
                },
            ],
        );
        let peer = r.peers.first().cloned();
        assert_eq!(peer.as_ref().and_then(|p| p.path), Some(PathKind::IceP2p));
        assert_eq!(peer.and_then(|p| p.switch_reason).as_deref(), Some(stale));
        assert_eq!(r.state, running(1), "a switch leaves the tunnel state alone");
    }

    #[test]
    fn lost_events_are_counted_from_the_engine_and_the_platform() {
        let mut r = reduced(running(1), &[Event::EventsLost { missed: 3 }]);
        r.dropped(2);
        r.apply(&Event::EventsLost { missed: 1 }, None);
        assert_eq!(r.events_lost, 6);
        assert!(
            Reducer::wants_status(&Event::EventsLost { missed: 1 }),
            "lost events: resync"
        );
    }
}
