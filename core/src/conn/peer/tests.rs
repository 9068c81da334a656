//! Focused tests of `Conn`: one behaviour each, most of them regressions of defects found with
//! NetBird's Go client (issue 9).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::conn::plane::PathObservation;
use crate::path::PathObservations;

pub(super) const RELAY_URL: &str = "rels://relay.test/";

pub(super) fn t(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

pub(super) fn conn(controlling: bool) -> Conn {
    let mut rng = StdRng::seed_from_u64(u64::from(controlling));
    let config = super::sim::config_with_role(controlling, &mut rng);
    Conn::new(config, t(0), StdRng::seed_from_u64(9), PathIds::default())
}

pub(super) fn remote(ufrag: &str, relay: bool) -> OfferAnswer {
    OfferAnswer {
        ice: Some(IceCredentials::new(ufrag, "abcdefghijklmnopqrstuvwxyzabcdef")),
        wg_listen_port: 51820,
        version: "0.77.1".into(),
        relay_server_address: relay.then(|| RELAY_URL.to_owned()),
        relay_server_ip: None,
        session_id: None,
    }
}

pub(super) fn drain(c: &mut Conn) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

/// The relay path `actions` opened.
pub(super) fn opened_relay(actions: &[Action]) -> Option<PathId> {
    actions.iter().find_map(|a| match a {
        Action::OpenRelay { id, .. } => Some(*id),
        _ => None,
    })
}

/// The ICE session `actions` started.
pub(super) fn started_ice(actions: &[Action]) -> Option<PathId> {
    actions.iter().find_map(|a| match a {
        Action::StartIce(s) => Some(s.id),
        _ => None,
    })
}

/// Observations in which every given path answered at `at`.
pub(super) fn answered(paths: &[(PathId, PathKind)], at: Instant, handshake: bool) -> PeerObservations {
    PeerObservations {
        paths: paths
            .iter()
            .map(|(id, kind)| PathObservation {
                id: *id,
                kind: *kind,
                observations: PathObservations {
                    last_rx: Some(at),
                    last_handshake_rx: Some(at),
                    last_tx: Some(at),
                    ..Default::default()
                },
            })
            .collect(),
        since_handshake: handshake.then_some(Duration::ZERO),
        no_path_drops: 0,
        tx_packets: 0,
        rx_packets: 0,
    }
}

/// A connection with the relay open and active, ICE connected and carrying traffic.
pub(super) fn connected(controlling: bool) -> (Conn, PathId, PathId) {
    let mut c = conn(controlling);
    c.handle_home_relay(t(0), Some(RELAY_URL.into()));
    c.handle_remote_description(t(10), remote("ufragone", true), true);
    let actions = drain(&mut c);
    let relay = opened_relay(&actions).expect("relay opened once the peer advertised one");
    let ice = started_ice(&actions).expect("ICE started");
    c.handle_relay_opened(t(20), relay);
    c.handle_ice_connected(t(30), ice, PathKind::IceP2p);
    c.handle_observations(
        t(40),
        &answered(&[(relay, PathKind::Relay), (ice, PathKind::IceP2p)], t(35), true),
    );
    drain(&mut c);
    assert_eq!(c.active, Some(ice), "ICE proven carries the traffic");
    (c, relay, ice)
}

#[test]
fn a_remote_ice_restart_moves_traffic_to_the_relay_at_once_and_starts_the_new_session() {
    let (mut c, relay, ice) = connected(false);
    c.handle_remote_description(t(1000), remote("ufragtwo", true), true);
    let actions = drain(&mut c);
    let activate = actions.iter().position(|a| *a == Action::Activate(Some(relay)));
    let detach = actions.iter().position(|a| *a == Action::Detach(ice));
    assert!(activate.is_some() && detach.is_some(), "{actions:?}");
    assert!(
        activate < detach,
        "traffic moves before the old path goes: {actions:?}"
    );
    let started = actions.iter().find_map(|a| match a {
        Action::StartIce(s) => Some(s.remote.ufrag.clone()),
        _ => None,
    });
    assert_eq!(started.as_deref(), Some("ufragtwo"), "{actions:?}");
    let answer = actions.iter().find_map(|a| match a {
        Action::SendAnswer(a) => a.ice.clone(),
        _ => None,
    });
    assert!(answer.is_some(), "answered with fresh credentials: {actions:?}");
}

#[test]
fn candidates_after_a_remote_restart_go_to_the_new_session() {
    let (mut c, _, ice) = connected(true);
    c.handle_remote_description(t(1000), remote("ufragtwo", true), true);
    let new = started_ice(&drain(&mut c)).expect("new session");
    c.handle_remote_candidate(t(1000), "candidate for the new session".into());
    let actions = drain(&mut c);
    assert_eq!(
        actions,
        vec![Action::AddRemoteCandidate {
            session: new,
            candidate: "candidate for the new session".into()
        }]
    );
    assert_ne!(new, ice);
}

#[test]
fn a_change_of_our_relay_url_reaches_the_peer_in_a_fresh_offer() {
    let mut c = conn(true);
    c.handle_timeout(t(0));
    let first = drain(&mut c);
    assert!(
        first
            .iter()
            .any(|a| matches!(a, Action::SendOffer(o) if o.relay_server_address.is_none())),
        "{first:?}"
    );
    c.handle_home_relay(t(100), Some(RELAY_URL.into()));
    let actions = drain(&mut c);
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::SendOffer(o) if o.relay_server_address.as_deref() == Some(RELAY_URL))
        ),
        "{actions:?}"
    );
}

#[test]
fn no_relay_path_opens_before_the_peer_advertises_a_relay() {
    let mut c = conn(true);
    c.handle_home_relay(t(0), Some(RELAY_URL.into()));
    c.handle_remote_description(t(10), remote("ufragone", false), false);
    let actions = drain(&mut c);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::OpenRelay { .. })),
        "{actions:?}"
    );
    c.handle_remote_description(t(20), remote("ufragone", true), false);
    assert!(drain(&mut c)
        .iter()
        .any(|a| matches!(a, Action::OpenRelay { .. })));
}

#[test]
fn only_the_controller_sends_the_first_handshake() {
    for controlling in [true, false] {
        let mut c = conn(controlling);
        c.handle_home_relay(t(0), Some(RELAY_URL.into()));
        c.handle_remote_description(t(10), remote("ufragone", true), false);
        let relay = opened_relay(&drain(&mut c)).expect("relay");
        c.handle_relay_opened(t(20), relay);
        let actions = drain(&mut c);
        assert!(actions.contains(&Action::Activate(Some(relay))), "{actions:?}");
        let kicked = actions.contains(&Action::SendHandshake(relay));
        assert_eq!(kicked, controlling, "controlling={controlling}: {actions:?}");
    }
}

#[test]
fn a_pending_handshake_goes_out_again_on_a_better_path_at_once() {
    let mut c = conn(true);
    c.handle_home_relay(t(0), Some(RELAY_URL.into()));
    c.handle_remote_description(t(10), remote("ufragone", true), false);
    let actions = drain(&mut c);
    let relay = opened_relay(&actions).expect("relay");
    let ice = started_ice(&actions).expect("ice");
    c.handle_relay_opened(t(20), relay);
    drain(&mut c);
    // ICE connects before any handshake completed: it is probed at once.
    c.handle_ice_connected(t(30), ice, PathKind::IceP2p);
    let actions = drain(&mut c);
    assert!(actions.contains(&Action::SendHandshake(ice)), "{actions:?}");
}

#[test]
fn a_standby_without_proof_is_not_reported_usable() {
    let mut c = conn(true);
    c.handle_home_relay(t(0), Some(RELAY_URL.into()));
    c.handle_remote_description(t(10), remote("ufragone", true), false);
    let actions = drain(&mut c);
    let (relay, ice) = (opened_relay(&actions), started_ice(&actions));
    let (Some(relay), Some(ice)) = (relay, ice) else {
        panic!("{actions:?}")
    };
    c.handle_ice_connected(t(20), ice, PathKind::IceP2p);
    c.handle_relay_opened(t(30), relay);
    // Only ICE answers.
    c.handle_observations(t(40), &answered(&[(ice, PathKind::IceP2p)], t(35), true));
    let status = c.status(t(50));
    let relay_status = status.paths.iter().find(|p| p.id == relay);
    assert!(relay_status.is_none_or(|p| !p.usable), "{status:?}");
    assert_eq!(status.active, Some(ice));
}
