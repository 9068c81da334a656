//! The simulation driven by the fuzz target `conn_peer`: an arbitrary sequence of the inputs a
//! `Conn` gets from its shell (signal messages, ICE and relay events, network changes) between
//! runs of the simulated world, with the simulation's invariants checked at every step (those
//! of its actions, and that a lower path never carries traffic while a higher one has proof;
//! not the weather's deadlines and verdicts, whose bookkeeping arbitrary inputs defeat) and
//! these after every input: the active path is never a condemned one while a usable path
//! exists, and the connection never asks to be woken in the past twice in a row: a deadline
//! that passed while the connection changed its mind (a path just made active) is due at once,
//! and the shell's next round, observations then timeout at the same instant, must move it.

use std::time::Duration;

use super::World;
use crate::conn::peer::watcher::Health;
use crate::ice::{IceCredentials, IceState};
use crate::path::{PathId, PathKind};
use crate::signal::{OfferAnswer, SessionId};

/// One input of the fuzz target.
#[derive(Debug, Clone)]
pub enum SimEvent {
    /// This many of the simulation's 250 ms steps (traffic, observations, timeouts, checks).
    Run {
        steps: u8,
    },
    /// The change of weather the simulation's roll `roll % 100` picks (faults, loss, going
    /// offline, the peer restarting ICE, quiet, sleep).
    Weather {
        roll: u8,
    },
    /// An offer or answer from the peer, through signal (delivered only while online).
    RemoteDescription {
        is_offer: bool,
        ice: Option<(String, String)>,
        relay: Option<String>,
        session: Option<[u8; 5]>,
        version: String,
    },
    RemoteCandidate(String),
    RemoteGoIdle,
    /// ICE and relay events for one of the connection's paths (`which` picks it) or an unknown
    /// one.
    IceStartFailed {
        which: u8,
    },
    /// The pending ICE session connects now (its agent reports that once per session).
    IceConnected {
        relayed: bool,
    },
    IceState {
        which: u8,
        state: u8,
    },
    /// The relay path being opened opens now (once per opening).
    RelayOpened,
    RelayFailed {
        which: u8,
    },
    RelayClosed {
        which: u8,
    },
    HomeRelay(Option<String>),
    SignalConnected,
    RelayTraffic,
    /// The device sleeps this many seconds: the clock jumps, nothing observed meanwhile.
    Sleep {
        secs: u16,
    },
}

/// One `Conn` in the simulated world, fed [`SimEvent`]s.
pub struct ConnSim {
    world: World,
}

impl ConnSim {
    pub fn new(seed: u64, controlling: bool) -> Self {
        let mut world = World::new(seed, controlling);
        world.judge_verdicts = false;
        // The simulation's own budget: a path that flipped between active (the watcher's
        // probes) and standby (proving rounds) once reached 16 in a minute; the watcher now
        // backs off a round that a flip interrupted (`watcher.rs`, `back_off`).
        world.probe_budget = super::MAX_PROBES_PER_MINUTE;
        Self { world }
    }

    /// Feeds one input, lets the world answer, and checks the invariants.
    pub fn handle(&mut self, event: SimEvent) {
        let w = &mut self.world;
        let now = w.now;
        match event {
            SimEvent::Run { steps } => (0..steps).for_each(|_| w.step()),
            SimEvent::Weather { roll } => w.weather_roll(u32::from(roll % 100)),
            SimEvent::RemoteDescription {
                is_offer,
                ice,
                relay,
                session,
                version,
            } => {
                if w.online {
                    let desc = OfferAnswer {
                        ice: ice.map(|(ufrag, pwd)| IceCredentials { ufrag, pwd }),
                        wg_listen_port: 51820,
                        version,
                        relay_server_address: relay,
                        relay_server_ip: None,
                        session_id: session.map(SessionId),
                    };
                    w.conn.handle_remote_description(now, desc, is_offer);
                }
            }
            SimEvent::RemoteCandidate(candidate) => {
                if w.online {
                    w.conn.handle_remote_candidate(now, candidate);
                }
            }
            SimEvent::RemoteGoIdle => w.conn.handle_remote_go_idle(now),
            SimEvent::IceStartFailed { which } => {
                let id = self.pick(which);
                self.world.conn.handle_ice_start_failed(now, id);
            }
            SimEvent::IceConnected { relayed } => {
                let kind = if relayed {
                    PathKind::IceTurn
                } else {
                    PathKind::IceP2p
                };
                if let Some((id, _)) = w.ice_pending.take().filter(|_| w.online) {
                    w.conn.handle_ice_connected(now, id, kind);
                }
            }
            SimEvent::IceState { which, state } => {
                let id = self.pick(which);
                let state = match state % 5 {
                    0 => IceState::Checking,
                    1 => IceState::Connected,
                    2 => IceState::Disconnected,
                    3 => IceState::Failed,
                    _ => IceState::Closed,
                };
                self.world.conn.handle_ice_state(now, id, state);
            }
            SimEvent::RelayOpened => {
                if let Some((id, _)) = w.relay_pending.take().filter(|_| w.online) {
                    w.conn.handle_relay_opened(now, id);
                }
            }
            SimEvent::RelayFailed { which } => {
                let id = self.pick(which);
                self.world.conn.handle_relay_failed(now, id);
            }
            SimEvent::RelayClosed { which } => {
                let id = self.pick(which);
                self.world.conn.handle_relay_closed(now, id);
            }
            SimEvent::HomeRelay(url) => w.conn.handle_home_relay(now, url),
            SimEvent::SignalConnected => {
                if w.online {
                    w.conn.handle_signal_connected(now);
                }
            }
            SimEvent::RelayTraffic => {
                if w.online {
                    w.conn.handle_relay_traffic(now);
                }
            }
            SimEvent::Sleep { secs } => w.now = w.now + Duration::from_secs(u64::from(secs)),
        }
        self.world.drain();
        self.world.step();
        self.check();
    }

    /// The shell's round for a peer whose deadline is due: observations, then the timeout.
    fn wake_now(&mut self) {
        let w = &mut self.world;
        let obs = w.observations();
        w.conn.handle_observations(w.now, &obs);
        w.conn.handle_timeout(w.now);
        w.drain();
    }

    /// A path id the connection knows (pending, attached, or its ICE and relay ids), or an
    /// unknown one.
    fn pick(&self, which: u8) -> PathId {
        let w = &self.world;
        let mut known: Vec<PathId> = w.attached.keys().copied().collect();
        known.sort();
        known.extend(w.ice_pending.map(|(id, _)| id));
        known.extend(w.relay_pending.map(|(id, _)| id));
        known.extend(w.conn.ice.as_ref().map(|s| s.id));
        known
            .get(usize::from(which))
            .copied()
            .unwrap_or(PathId(1000 + u64::from(which)))
    }

    fn check(&mut self) {
        if self
            .world
            .conn
            .poll_timeout()
            .is_some_and(|t| t <= self.world.now)
        {
            self.wake_now();
        }
        let w = &self.world;
        let status = w.conn.status(w.now);
        let condemned = |id: PathId| {
            status
                .paths
                .iter()
                .any(|p| p.id == id && matches!(p.health, Health::Stale(_)))
        };
        if let Some(active) = status.active.filter(|id| condemned(*id)) {
            let other = status.paths.iter().find(|p| p.id != active && p.usable);
            assert!(
                other.is_none(),
                "a condemned path is active while {other:?} is usable\n{}",
                w.trace()
            );
        }
        let due = w.conn.poll_timeout();
        assert!(
            due.is_none_or(|t| t > w.now),
            "woken for its deadline, the connection asks to be woken in the past again ({due:?} at {:?})\n{}\n{}",
            w.now,
            self.deadlines(),
            w.trace()
        );
    }

    /// Where each of the connection's deadlines comes from, for a failed check.
    fn deadlines(&self) -> String {
        let c = &self.world.conn;
        let paths: Vec<String> = c
            .paths
            .iter()
            .map(|p| {
                let watch = p
                    .watcher
                    .poll_timeout(&p.observed, c.watch_context(p.id, &p.watcher));
                format!(
                    "{:?} {}: up={} proven={} proving={:?} watcher={watch:?} {:?} observed={:?}",
                    p.id, p.kind, p.up, p.proven, p.proving, p.watcher, p.observed
                )
            })
            .collect();
        format!(
            "deadlines: guard={:?} relay_retry={:?} lazy={:?}\n{}",
            c.guard.poll_timeout(),
            c.relay_retry,
            c.lazy.poll_timeout(),
            paths.join("\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzz target (fuzz/corpus/conn_peer/active_path_proving): both paths drop
    /// everything, the ICE path becomes active while still proving itself, and its proving
    /// deadline, which only non-active paths run, stayed in `poll_timeout`: the shell woke for
    /// it at once, again and again.
    #[test]
    fn an_active_path_still_proving_sets_no_deadline_in_the_past() {
        let mut sim = ConnSim::new(0x0807_0000, true);
        sim.handle(SimEvent::Weather { roll: 140 });
        sim.handle(SimEvent::Weather { roll: 0 });
        sim.handle(SimEvent::Run { steps: 200 });
    }

    /// Found by the fuzz target (fuzz/corpus/conn_peer/active_path_unanswered): a path made
    /// active after the round's observations has a watcher deadline that passed; the shell's
    /// next round (at once) starts its probes, and the deadline moves on.
    #[test]
    fn a_path_made_active_late_is_woken_once_not_spun() {
        let mut sim = ConnSim::new(0x008e_0000_0807_0080, true);
        for event in [
            SimEvent::Weather { roll: 140 },
            SimEvent::Weather { roll: 0 },
            SimEvent::Run { steps: 200 },
            SimEvent::Run { steps: 3 },
            SimEvent::RemoteGoIdle,
            SimEvent::SignalConnected,
            SimEvent::RelayTraffic,
            SimEvent::Run { steps: 135 },
            SimEvent::Run { steps: 40 },
        ] {
            sim.handle(event);
        }
    }

    /// Found by the fuzz target (fuzz/corpus/conn_peer/flip-probe-budget): ICE dropping data
    /// (handshakes pass) and the relay dropping everything; the ICE path flips between active
    /// and standby, and each activation started a new round of probes: 16 in a minute, over
    /// the simulation's budget of 15. The watcher now backs off a round a flip interrupted.
    #[test]
    fn a_path_flipping_between_active_and_standby_stays_within_the_probe_budget() {
        let mut sim = ConnSim::new(0x008e_0000_0807_0080, true);
        for event in [
            SimEvent::Weather { roll: 141 },
            SimEvent::IceStartFailed { which: 141 },
            SimEvent::IceStartFailed { which: 1 },
            SimEvent::RelayFailed { which: 1 },
            SimEvent::IceState { which: 0, state: 4 },
            SimEvent::RelayFailed { which: 7 },
            SimEvent::HomeRelay(None),
            SimEvent::Run { steps: 0 },
            SimEvent::HomeRelay(Some("rels://relay.sim/".to_owned())),
            SimEvent::Run { steps: 0 },
            SimEvent::Run { steps: 0 },
            SimEvent::Run { steps: 45 },
            SimEvent::Weather { roll: 79 },
            SimEvent::Run { steps: 1 },
            SimEvent::Weather { roll: 25 },
            SimEvent::Run { steps: 0 },
            SimEvent::Run { steps: 0 },
            SimEvent::Run { steps: 255 },
            SimEvent::Run { steps: 130 },
        ] {
            sim.handle(event);
        }
    }
}
