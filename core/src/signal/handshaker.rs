//! The offer/answer exchange with each peer, as a pure policy (NetBird's `Handshaker`,
//! client/internal/peer/handshaker.go): it sorts what peers send into events, keeps only the
//! newest unhandled offer per peer, and makes sure each offer the engine handles gets exactly
//! one answer. It sends nothing itself: the engine drains [`Handshaker::poll_transmit`].
//!
//! The answer is built after the engine has handled the offer, as NetBird does, because
//! handling it may replace the local ICE credentials and session id the answer carries.

use std::collections::{HashMap, HashSet, VecDeque};

use super::message::{OfferAnswer, SignalMessage};
use crate::keys::PublicKey;

/// What the engine has to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeEvent {
    /// `peer` sent an offer. Take it with [`Handshaker::take_offer`] (a newer one replaces it
    /// until then), apply it, then call [`Handshaker::answer`].
    OfferPending { peer: PublicKey },
    /// `peer` answered our offer.
    Answer { peer: PublicKey, answer: OfferAnswer },
    /// `peer` trickled an ICE candidate.
    Candidate { peer: PublicKey, candidate: String },
    /// `peer` closed its connection for inactivity (lazy connections).
    GoIdle { peer: PublicKey },
}

#[derive(Debug, Default)]
pub struct Handshaker {
    pending: HashMap<PublicKey, OfferAnswer>,
    answer_owed: HashSet<PublicKey>,
    transmits: VecDeque<(PublicKey, SignalMessage)>,
    events: VecDeque<HandshakeEvent>,
    ignored: u64,
}

impl Handshaker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one message from `from` (already known to be a configured peer).
    pub fn handle_message(&mut self, from: PublicKey, msg: SignalMessage) {
        match msg {
            SignalMessage::Offer(offer) => {
                if self.pending.insert(from, offer).is_none() {
                    self.events.push_back(HandshakeEvent::OfferPending { peer: from });
                }
            }
            SignalMessage::Answer(answer) => self
                .events
                .push_back(HandshakeEvent::Answer { peer: from, answer }),
            SignalMessage::Candidate(candidate) => self.events.push_back(HandshakeEvent::Candidate {
                peer: from,
                candidate,
            }),
            SignalMessage::GoIdle => self.events.push_back(HandshakeEvent::GoIdle { peer: from }),
            // NetBird's engine ignores MODE too. Heartbeats never reach here (the client
            // consumes them).
            SignalMessage::Mode { .. } | SignalMessage::Heartbeat => {
                self.ignored += 1;
                tracing::trace!(peer = %from, kind = msg.kind(), "signal message ignored");
            }
        }
    }

    /// The newest offer from `peer` not yet taken. Taking it makes an answer owed.
    pub fn take_offer(&mut self, peer: &PublicKey) -> Option<OfferAnswer> {
        let offer = self.pending.remove(peer)?;
        self.answer_owed.insert(*peer);
        Some(offer)
    }

    /// Answers the offer taken from `peer` with `local` (our current description for it).
    /// Returns false, and sends nothing, when no taken offer is waiting for an answer.
    pub fn answer(&mut self, peer: PublicKey, local: OfferAnswer) -> bool {
        if !self.answer_owed.remove(&peer) {
            return false;
        }
        self.transmits.push_back((peer, SignalMessage::Answer(local)));
        true
    }

    /// Queues an offer to `peer` (the guard decides when).
    pub fn offer(&mut self, peer: PublicKey, local: OfferAnswer) {
        self.transmits.push_back((peer, SignalMessage::Offer(local)));
    }

    /// Queues `GO_IDLE` to `peer`: we closed our side for inactivity.
    pub fn go_idle(&mut self, peer: PublicKey) {
        self.transmits.push_back((peer, SignalMessage::GoIdle));
    }

    /// Queues a trickled local candidate for `peer`.
    pub fn candidate(&mut self, peer: PublicKey, candidate: String) {
        self.transmits
            .push_back((peer, SignalMessage::Candidate(candidate)));
    }

    /// Forgets a peer that left the configuration.
    pub fn remove_peer(&mut self, peer: &PublicKey) {
        self.pending.remove(peer);
        self.answer_owed.remove(peer);
        self.transmits.retain(|(to, _)| to != peer);
        self.events.retain(|e| match e {
            HandshakeEvent::OfferPending { peer: p } => p != peer,
            HandshakeEvent::Answer { peer: p, .. } => p != peer,
            HandshakeEvent::Candidate { peer: p, .. } => p != peer,
            HandshakeEvent::GoIdle { peer: p } => p != peer,
        });
    }

    pub fn poll_transmit(&mut self) -> Option<(PublicKey, SignalMessage)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<HandshakeEvent> {
        self.events.pop_front()
    }

    /// Messages ignored so far (MODE, stray heartbeats).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::signal::message::{IceCredentials, SessionId};

    fn description(port: u16) -> OfferAnswer {
        let mut rng = rand::thread_rng();
        OfferAnswer {
            ice: Some(IceCredentials::generate()),
            wg_listen_port: port,
            version: "test".into(),
            relay_server_address: None,
            relay_server_ip: None,
            session_id: Some(SessionId::generate(&mut rng)),
        }
    }

    fn peer() -> PublicKey {
        PrivateKey::generate().public_key()
    }

    #[test]
    fn a_taken_offer_is_answered_once_with_the_local_description() {
        let (mut h, p) = (Handshaker::new(), peer());
        let remote = description(1);
        h.handle_message(p, SignalMessage::Offer(remote.clone()));
        assert_eq!(h.poll_event(), Some(HandshakeEvent::OfferPending { peer: p }));
        assert_eq!(h.take_offer(&p), Some(remote));
        let local = description(2);
        assert!(h.answer(p, local.clone()));
        assert_eq!(h.poll_transmit(), Some((p, SignalMessage::Answer(local.clone()))));
        assert!(!h.answer(p, local), "a second answer to the same offer");
        assert_eq!(h.poll_transmit(), None);
    }

    #[test]
    fn only_the_newest_pending_offer_is_kept_per_peer() {
        let (mut h, a, b) = (Handshaker::new(), peer(), peer());
        let (old, new, other) = (description(1), description(2), description(3));
        h.handle_message(a, SignalMessage::Offer(old));
        h.handle_message(b, SignalMessage::Offer(other.clone()));
        h.handle_message(a, SignalMessage::Offer(new.clone()));
        assert_eq!(h.poll_event(), Some(HandshakeEvent::OfferPending { peer: a }));
        assert_eq!(h.poll_event(), Some(HandshakeEvent::OfferPending { peer: b }));
        assert_eq!(h.poll_event(), None, "the replaced offer raises no second event");
        assert_eq!(h.take_offer(&a), Some(new));
        assert_eq!(h.take_offer(&a), None);
        assert_eq!(h.take_offer(&b), Some(other));
    }

    #[test]
    fn no_answer_without_a_taken_offer() {
        let (mut h, p) = (Handshaker::new(), peer());
        assert!(!h.answer(p, description(1)));
        h.handle_message(p, SignalMessage::Offer(description(1)));
        assert!(!h.answer(p, description(2)), "offer pending but not taken");
        assert_eq!(h.poll_transmit(), None);
    }

    #[test]
    fn answers_and_candidates_become_events_in_order() {
        let (mut h, p) = (Handshaker::new(), peer());
        let answer = description(9);
        h.handle_message(p, SignalMessage::Answer(answer.clone()));
        h.handle_message(p, SignalMessage::Candidate("c1".into()));
        assert_eq!(h.poll_event(), Some(HandshakeEvent::Answer { peer: p, answer }));
        assert_eq!(
            h.poll_event(),
            Some(HandshakeEvent::Candidate {
                peer: p,
                candidate: "c1".into()
            })
        );
    }

    #[test]
    fn go_idle_is_an_event_and_mode_is_ignored_without_error() {
        let (mut h, p) = (Handshaker::new(), peer());
        h.handle_message(p, SignalMessage::Mode { direct: Some(true) });
        h.handle_message(p, SignalMessage::GoIdle);
        assert_eq!(h.poll_event(), Some(HandshakeEvent::GoIdle { peer: p }));
        assert_eq!((h.poll_event(), h.poll_transmit(), h.ignored()), (None, None, 1));
        h.go_idle(p);
        assert_eq!(h.poll_transmit(), Some((p, SignalMessage::GoIdle)));
    }

    #[test]
    fn removing_a_peer_forgets_everything_about_it() {
        let (mut h, a, b) = (Handshaker::new(), peer(), peer());
        h.handle_message(a, SignalMessage::Offer(description(1)));
        h.offer(a, description(2));
        h.candidate(b, "cb".into());
        h.remove_peer(&a);
        assert_eq!(h.take_offer(&a), None);
        assert_eq!(h.poll_event(), None);
        assert_eq!(
            h.poll_transmit(),
            Some((b, SignalMessage::Candidate("cb".into())))
        );
    }
}
