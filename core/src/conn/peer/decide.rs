//! How a connection decides: the active path, verdicts and what replaces a condemned path,
//! ICE sessions, relay paths, the proving of new paths and our offers. Private to `Conn`; its
//! inputs are in `mod.rs`.

use std::time::Duration;

use super::guard::Paths as GuardPaths;
use super::paths::Proving;
use super::watcher::{self, StaleReason, WatchContext};
use super::*;

impl Conn {
    pub(super) fn watch_context(&self, id: PathId, w: &watcher::Watcher) -> WatchContext {
        let defer = if self.controlling {
            Duration::ZERO
        } else {
            w.probe_deadline() * CONTROLLED_DEFER_PROBES
        };
        WatchContext {
            // Offline, silence is the platform's doing, not the path's: nothing is judged.
            active: self.active == Some(id) && self.online,
            may_probe: self.online,
            defer,
        }
    }

    /// NetBird's rule as a floor: a handshake older than 3 min 30 s on a path in use.
    pub(super) fn floor_check(
        &mut self,
        now: Instant,
        since: Option<Duration>,
        verdicts: &mut Vec<(PathId, StaleReason)>,
    ) {
        let (Some(age), Some(id), true) = (since, self.active, self.online) else {
            return;
        };
        let Some(p) = self.paths.get_mut(id) else { return };
        let in_use = p
            .observed
            .last_tx
            .is_some_and(|t| now.saturating_duration_since(t) < IN_USE);
        if age > HANDSHAKE_FLOOR && in_use && !p.is_stale() && verdicts.iter().all(|(v, _)| *v != id) {
            let reason = StaleReason::HandshakeTooOld { age };
            p.watcher.condemn(reason);
            verdicts.push((id, reason));
        }
    }

    /// A path failed the watcher: traffic moves now, and the path is replaced (DESIGN 3).
    pub(super) fn on_stale(&mut self, now: Instant, id: PathId, reason: StaleReason) {
        let Some(kind) = self.paths.get(id).map(|p| p.kind) else {
            return;
        };
        tracing::info!(peer = %self.config.peer, path = %kind, %reason, "path stale");
        self.reselect(now, SwitchReason::Stale(reason));
        match kind {
            PathKind::IceP2p | PathKind::IceTurn => {
                let (count, last) = self.ice_verdicts;
                let flapping = last.is_some_and(|l| now.saturating_duration_since(l) < FLAP_WINDOW);
                self.ice_verdicts = (if flapping { count.saturating_add(1) } else { 1 }, Some(now));
                // A new session with fresh credentials, announced at once so that the peer
                // falls back too instead of waiting for its own watcher.
                self.end_ice(now, SwitchReason::Stale(reason));
                self.offer_if_changed();
            }
            PathKind::Relay => {
                // The relay connection itself may be dead long before its 35 s health check
                // says so (a NAT mapping lost): the shell reconnects before the path reopens.
                self.actions.push_back(Action::ReconnectRelay);
                self.drop_relay(now, SwitchReason::Stale(reason));
            }
            // Kept as the last resort; fresh proof (roaming) restores it.
            PathKind::Direct => {}
        }
    }

    /// Until when a new ICE path is held down after repeated verdicts.
    pub(super) fn ice_hold(&self, now: Instant) -> Option<Instant> {
        let (count, last) = self.ice_verdicts;
        let last = last?;
        if count < 2 || now.saturating_duration_since(last) >= FLAP_WINDOW {
            return None;
        }
        let hold = FLAP_HOLD_FIRST
            .saturating_mul(1 << (count - 2).min(8))
            .min(FLAP_HOLD_MAX);
        Some(last + hold)
    }

    /// Ends the ICE session: its path goes, and the next offer carries fresh credentials.
    pub(super) fn end_ice(&mut self, now: Instant, why: SwitchReason) {
        if self.ice.take().is_none() {
            return;
        }
        self.actions.push_back(Action::CloseIce);
        if let Some(id) = self.ice_path.take() {
            self.remove_path(now, id, why);
        }
        self.local = IceCredentials::generate_with(&mut self.rng);
        self.session_id = SessionId::generate(&mut self.rng);
    }

    /// Closes the relay path; a new one opens after the relay's retry wait.
    pub(super) fn drop_relay(&mut self, now: Instant, why: SwitchReason) {
        if let RelaySlot::Open(id) | RelaySlot::Opening(id) = self.relay {
            self.relay = RelaySlot::Idle;
            self.remove_path(now, id, why);
            self.actions.push_back(Action::CloseRelay { id });
        }
        self.schedule_relay_retry(now);
    }

    pub(super) fn remove_path(&mut self, now: Instant, id: PathId, why: SwitchReason) {
        if let Some(p) = self.paths.get_mut(id) {
            // Out of the running first, so that traffic moves before the path goes.
            p.up = false;
        }
        self.reselect(now, why);
        let Some(gone) = self.paths.remove(id) else { return };
        if self.active == Some(id) {
            // It was the last resort: whatever remains (or nothing) takes over, on the record.
            let next = self.paths.select(None, now);
            self.switch_to(now, next, Some(gone.kind), why);
        }
        self.actions.push_back(Action::Detach(id));
    }

    /// Starts the ICE session when both sides' credentials are known and none runs for them.
    pub(super) fn maybe_start_ice(&mut self) {
        let (true, Some(remote)) = (self.config.ice, self.remote_ice.clone()) else {
            return;
        };
        let same = self
            .ice
            .as_ref()
            .is_some_and(|s| s.local == self.local && s.remote == remote);
        if same || !self.online || self.lazy.is_idle() {
            return;
        }
        let id = self.ids.next();
        // TURN only when NetBird's relay cannot carry traffic between the two (DESIGN 7).
        let use_turn = !(self.config.relay && self.home_relay.is_some() && self.remote_relay.is_some());
        self.ice = Some(IceSession {
            id,
            local: self.local.clone(),
            remote: remote.clone(),
        });
        self.actions.push_back(Action::StartIce(IceStart {
            id,
            local: self.local.clone(),
            remote,
            controlling: self.controlling,
            use_turn,
        }));
        for candidate in std::mem::take(&mut self.pending_candidates) {
            self.actions.push_back(Action::AddRemoteCandidate {
                session: id,
                candidate,
            });
        }
    }

    /// Opens the relay path once the peer advertised a relay (before that it has no relay
    /// session to us, and whatever we sent there would be lost).
    pub(super) fn maybe_open_relay(&mut self, now: Instant) {
        if !self.config.relay || self.relay != RelaySlot::Idle || !self.online || self.lazy.is_idle() {
            return;
        }
        if self.remote_relay.is_none() || self.relay_retry.is_some_and(|t| now < t) {
            return;
        }
        let server = if self.controlling {
            if self.home_relay.is_none() {
                return;
            }
            None
        } else {
            self.remote_relay.clone()
        };
        let id = self.ids.next();
        self.relay = RelaySlot::Opening(id);
        self.actions.push_back(Action::OpenRelay { id, server });
    }

    pub(super) fn schedule_relay_retry(&mut self, now: Instant) {
        let wait = RELAY_RETRY_FIRST
            .saturating_mul(1 << self.relay_failures.min(5))
            .min(RELAY_RETRY_MAX);
        self.relay_failures = self.relay_failures.saturating_add(1);
        self.relay_retry = Some(now + wait);
    }

    /// The controller proves a path that does not carry traffic yet with a handshake on it;
    /// the controlled side waits for the controller's (so initiations never cross).
    pub(super) fn start_proving(&mut self, now: Instant, id: PathId) {
        if !self.controlling || !self.online {
            return;
        }
        let Some(p) = self.paths.get_mut(id) else { return };
        if p.proven {
            return;
        }
        p.proving = Some(Proving {
            sent: 1,
            due: now + p.watcher.probe_deadline(),
            failed_rounds: 0,
        });
        self.send_handshake(now, id);
    }

    /// A handshake on path `id`, within the path's bound ([`super::paths::HANDSHAKES_PER_MINUTE`]): over it,
    /// nothing goes out (the asker's round goes on as if it had been lost).
    pub(super) fn send_handshake(&mut self, now: Instant, id: PathId) {
        let Some(p) = self.paths.get_mut(id) else { return };
        if p.take_handshake(now) {
            self.actions.push_back(Action::SendHandshake(id));
        } else {
            tracing::debug!(path = ?id, "handshake not sent: the path's probe bound for this minute is spent");
        }
    }

    /// A new path that answers no round of probes is not condemned: ICE connects through a
    /// middlebox that drops WireGuard as readily as through a healthy one, and tearing the
    /// session down again and again would cost more than it finds. It stays unproven (never
    /// carrying traffic) and is probed in rounds that back off, so that it takes over soon
    /// after the fault clears.
    pub(super) fn proving_timeouts(&mut self, now: Instant) {
        let active = self.active;
        for p in self.paths.iter_mut() {
            let Some(pr) = p.proving else { continue };
            if now < pr.due || p.proven || !p.up || active == Some(p.id) {
                continue;
            }
            let next = if pr.sent == 0 || pr.sent < watcher::PROBES {
                Proving {
                    sent: pr.sent + 1,
                    due: now + p.watcher.probe_deadline(),
                    ..pr
                }
            } else {
                let rounds = pr.failed_rounds.saturating_add(1);
                Proving {
                    sent: 0,
                    due: now
                        + PROVING_PAUSE_FIRST
                            .saturating_mul(1 << rounds.min(4))
                            .min(PROVING_PAUSE_MAX),
                    failed_rounds: rounds,
                }
            };
            if next.sent > 0 {
                if p.take_handshake(now) {
                    self.actions.push_back(Action::SendHandshake(p.id));
                } else {
                    tracing::debug!(path = ?p.id, "proving handshake not sent: the path's probe bound is spent");
                }
            }
            p.proving = Some(next);
        }
    }

    /// Puts the best path in charge (`Paths::select`), and tells the data plane.
    pub(super) fn reselect(&mut self, now: Instant, why: SwitchReason) {
        let next = self.paths.select(self.active, now);
        if next == self.active {
            return;
        }
        let from = self.active.and_then(|id| self.paths.get(id)).map(|p| p.kind);
        self.switch_to(now, next, from, why);
    }

    /// Makes `next` the active path (`from` being the kind of the one before) and records why.
    pub(super) fn switch_to(
        &mut self,
        now: Instant,
        next: Option<PathId>,
        from: Option<PathKind>,
        why: SwitchReason,
    ) {
        let switch = Switch {
            at: now,
            from,
            to: next.and_then(|id| self.paths.get(id)).map(|p| p.kind),
            reason: if from.is_none() {
                SwitchReason::FirstPath
            } else {
                why
            },
        };
        self.active = next;
        self.actions.push_back(Action::Activate(next));
        // A handshake that went out on the old path (or nowhere) goes again on the new one at
        // once, rather than after WireGuard's 5 s retry. The controller sends it; the
        // controlled side only when its own data was left waiting with no path (WireGuard
        // would initiate then anyway), so that on a fresh pair initiations do not cross.
        let no_session = self.handshake.is_none_or(|(_, since)| since.is_none());
        let initiator = self.controlling || std::mem::take(&mut self.waiting);
        if let (Some(id), true, true) = (next, no_session, initiator && self.online) {
            let proving = self.paths.get(id).is_some_and(|p| p.proving.is_some());
            if !proving {
                self.send_handshake(now, id);
            }
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(switch.clone());
        self.actions.push_back(Action::Switched(switch));
    }

    pub(super) fn ice_carries_traffic(&self) -> bool {
        self.active
            .and_then(|id| self.paths.get(id))
            .is_some_and(|p| matches!(p.kind, PathKind::IceP2p | PathKind::IceTurn) && p.proven)
    }

    pub(super) fn guard_paths(&self) -> GuardPaths {
        let relay_up = self.paths.iter().any(|p| p.kind == PathKind::Relay && p.usable());
        GuardPaths {
            relay_up,
            ice_up: self.ice_carries_traffic() || (!self.config.ice && relay_up),
        }
    }

    pub(super) fn send_offer(&mut self) {
        let offer = self.local_description();
        self.sent = Some((offer.relay_server_address.clone(), offer.ice.clone()));
        self.actions.push_back(Action::SendOffer(offer));
    }

    /// What our offers carry changed since the last one: the peer hears it now (a NetBird peer
    /// opens no relay path to a peer whose offer named no relay).
    pub(super) fn offer_if_changed(&mut self) {
        let Some((relay, ice)) = &self.sent else {
            return;
        };
        let local = self.local_description();
        if (relay, ice) != (&local.relay_server_address, &local.ice) && self.online {
            self.send_offer();
        }
    }
}

impl Conn {
    /// Closes the connection for inactivity (lazy connections): the ICE agent and the relay
    /// path go, no offers until it wakes; a direct endpoint stays (it costs nothing while
    /// nothing is sent). `announce`: tell the peer with `GO_IDLE`.
    pub(super) fn close_for_idle(&mut self, now: Instant, reason: lazy::ActivityReason, announce: bool) {
        tracing::info!(peer = %self.config.peer, %reason, "connection idle");
        self.end_ice(now, SwitchReason::Idle);
        if let RelaySlot::Open(id) | RelaySlot::Opening(id) = self.relay {
            self.relay = RelaySlot::Idle;
            self.remove_path(now, id, SwitchReason::Idle);
            self.actions.push_back(Action::CloseRelay { id });
        }
        self.relay_retry = None;
        self.relay_failures = 0;
        // The peer's next offer brings fresh credentials; its old ones start nothing.
        self.remote_ice = None;
        self.pending_candidates.clear();
        self.guard.pause();
        self.waiting = false;
        if announce {
            self.actions.push_back(Action::SendGoIdle);
        }
        self.actions.push_back(Action::Idle(true, reason));
    }

    /// Something needs the peer. An idle connection opens: the relay path at once when the
    /// peer's relay is known, and (`offer`) an offer now rather than waiting for the peer's.
    pub(super) fn wake(&mut self, now: Instant, reason: lazy::ActivityReason, offer: bool) {
        if !self.lazy.wake(now, reason) {
            return;
        }
        tracing::info!(peer = %self.config.peer, %reason, "connection woken");
        self.actions.push_back(Action::Idle(false, reason));
        if offer {
            self.guard.offer_now(now);
        }
        self.maybe_open_relay(now);
    }
}
