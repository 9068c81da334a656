//! Lazy connections (issue 12), on the fake clock: idle after the threshold, never for an
//! always-on peer or an old NetBird, woken by a tun packet, a signal message or relay traffic.

use std::time::Duration;

use super::lazy::{Activity, ActivityReason, MIN_THRESHOLD};
use super::tests::{answered, connected, drain, remote, started_ice, t};
use super::*;

/// A connected pair (relay standby, ICE active) whose connection may idle after a minute.
fn lazy_connected(controlling: bool) -> (Conn, PathId, PathId) {
    let (mut c, relay, ice) = connected(controlling);
    c.set_lazy(t(40), Some(MIN_THRESHOLD));
    (c, relay, ice)
}

/// Observations of the two paths answered at `at`, with data packet counts `tx`, `rx`.
fn counted(paths: &[(PathId, PathKind)], at: Instant, tx: u64, rx: u64) -> PeerObservations {
    let mut obs = answered(paths, at, true);
    for p in &mut obs.paths {
        p.observations.last_data_rx = Some(at);
    }
    PeerObservations {
        tx_packets: tx,
        rx_packets: rx,
        ..obs
    }
}

/// Runs the connection's clock to `until` the way the shell does: observe, then timeouts.
fn idle_until(c: &mut Conn, paths: &[(PathId, PathKind)], from: u64, until: u64, tx: u64) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut now = from;
    while now <= until {
        c.handle_observations(t(now), &counted(paths, t(now), tx, 0));
        c.handle_timeout(t(now));
        actions.extend(drain(c));
        now += 5_000;
    }
    actions
}

#[test]
fn a_connection_without_data_goes_idle_after_the_threshold_closing_ice_and_relay() {
    let (mut c, relay, ice) = lazy_connected(true);
    let paths = [(relay, PathKind::Relay), (ice, PathKind::IceP2p)];
    let before = idle_until(&mut c, &paths, 1_000, 55_000, 0);
    assert!(
        !before
            .iter()
            .any(|a| matches!(a, Action::SendGoIdle | Action::CloseIce)),
        "{before:?}"
    );
    assert_eq!(c.status(t(55_000)).activity, Activity::Active);
    let actions = idle_until(&mut c, &paths, 60_000, 65_000, 0);
    for wanted in [
        Action::CloseIce,
        Action::CloseRelay { id: relay },
        Action::SendGoIdle,
    ] {
        assert!(actions.contains(&wanted), "{wanted:?} missing from {actions:?}");
    }
    let status = c.status(t(65_000));
    assert_eq!(status.activity, Activity::Idle);
    assert_eq!(
        status.activity_reason,
        Some(ActivityReason::Inactive(MIN_THRESHOLD))
    );
    assert_eq!((status.active, status.paths.len()), (None, 0), "{status:?}");
    // Idle: nothing is offered, opened or probed, however long it stays so.
    let later = idle_until(&mut c, &[], 70_000, 3_600_000, 0);
    assert!(later.is_empty(), "{later:?}");
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn data_keeps_a_connection_open() {
    let (mut c, relay, ice) = lazy_connected(false);
    let paths = [(relay, PathKind::Relay), (ice, PathKind::IceP2p)];
    let mut actions = Vec::new();
    for (i, now) in (1_000..600_000).step_by(5_000).enumerate() {
        // One packet every 50 s: never a full minute without data.
        let tx = (i / 10) as u64;
        c.handle_observations(t(now), &counted(&paths, t(now), tx, 0));
        c.handle_timeout(t(now));
        actions.extend(drain(&mut c));
    }
    assert!(!actions.contains(&Action::SendGoIdle), "{actions:?}");
    assert_eq!(c.status(t(600_000)).activity, Activity::Active);
}

#[test]
fn never_idle_when_always_on_or_when_the_peer_is_too_old_for_go_idle() {
    let (mut on, relay, ice) = connected(true);
    on.set_lazy(t(40), None);
    let paths = [(relay, PathKind::Relay), (ice, PathKind::IceP2p)];
    let actions = idle_until(&mut on, &paths, 1_000, 3_600_000, 0);
    assert!(!actions.contains(&Action::SendGoIdle));
    on.handle_remote_go_idle(t(3_600_000));
    assert_eq!(
        on.status(t(3_600_000)).activity,
        Activity::Active,
        "GO_IDLE ignored too"
    );

    let (mut old, relay, ice) = lazy_connected(true);
    let mut desc = remote("ufragone", true);
    desc.version = "0.44.0".into();
    old.handle_remote_description(t(50), desc, false);
    drain(&mut old);
    let paths = [(relay, PathKind::Relay), (ice, PathKind::IceP2p)];
    let actions = idle_until(&mut old, &paths, 1_000, 3_600_000, 0);
    assert!(!actions.contains(&Action::SendGoIdle), "{actions:?}");
    assert_eq!(old.status(t(3_600_000)).activity, Activity::Active);
}

/// An idle connection, its clock at 65 s.
fn idle(controlling: bool) -> Conn {
    let (mut c, relay, ice) = lazy_connected(controlling);
    let paths = [(relay, PathKind::Relay), (ice, PathKind::IceP2p)];
    idle_until(&mut c, &paths, 1_000, 65_000, 0);
    assert_eq!(c.status(t(65_000)).activity, Activity::Idle);
    c
}

#[test]
fn a_packet_from_the_tun_wakes_an_idle_connection_which_offers_at_once_and_opens_the_relay() {
    for controlling in [true, false] {
        let mut c = idle(controlling);
        let now = t(3_600_000);
        c.handle_observations(now, &counted(&[], now, 1, 0));
        let woke = drain(&mut c);
        assert!(
            woke.contains(&Action::Idle(false, ActivityReason::Outbound)),
            "{woke:?}"
        );
        assert_eq!(c.status(now).activity, Activity::Waking);
        assert_eq!(c.poll_timeout(), Some(now), "the offer is due now");
        c.handle_timeout(now);
        let actions = drain(&mut c);
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::SendOffer(o) if o.ice.is_some())),
            "{actions:?}"
        );
        // The peer's relay is still known: the controlled side opens through it at once; the
        // controller through its home relay.
        let relay = woke
            .iter()
            .chain(&actions)
            .find_map(|a| match a {
                Action::OpenRelay { id, .. } => Some(*id),
                _ => None,
            })
            .expect("relay opened on waking");
        // The peer answers with fresh credentials: a new ICE session starts; old ones never.
        c.handle_remote_description(now, remote("ufragnew", true), false);
        let ice = started_ice(&drain(&mut c)).expect("new ICE session");
        c.handle_relay_opened(now, relay);
        c.handle_ice_connected(now, ice, PathKind::IceP2p);
        let later = now + Duration::from_millis(50);
        c.handle_observations(
            later,
            &counted(&[(relay, PathKind::Relay), (ice, PathKind::IceP2p)], later, 1, 0),
        );
        drain(&mut c);
        let status = c.status(later);
        assert_eq!(
            (status.activity, status.activity_reason),
            (Activity::Active, Some(ActivityReason::Connected)),
            "controlling {controlling}: {status:?}"
        );
    }
}

#[test]
fn a_signal_message_from_the_peer_wakes_an_idle_connection_without_an_offer_of_our_own() {
    let mut c = idle(false);
    let now = t(600_000);
    c.handle_remote_description(now, remote("ufragnew", true), true);
    let actions = drain(&mut c);
    assert!(
        actions.contains(&Action::Idle(false, ActivityReason::Signal)),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| matches!(a, Action::SendAnswer(_))),
        "{actions:?}"
    );
    assert!(started_ice(&actions).is_some(), "{actions:?}");
    assert!(
        !actions.iter().any(|a| matches!(a, Action::SendOffer(_))),
        "{actions:?}"
    );

    let mut c = idle(true);
    c.handle_remote_candidate(now, "candidate".into());
    let actions = drain(&mut c);
    assert!(
        actions.contains(&Action::Idle(false, ActivityReason::Signal)),
        "{actions:?}"
    );
}

#[test]
fn relay_traffic_from_the_peer_wakes_an_idle_connection() {
    let mut c = idle(true);
    let now = t(600_000);
    c.handle_relay_traffic(now);
    let actions = drain(&mut c);
    assert!(
        actions.contains(&Action::Idle(false, ActivityReason::RelayTraffic)),
        "{actions:?}"
    );
    assert_eq!(c.status(now).activity, Activity::Waking);
    c.handle_relay_traffic(now);
    assert!(drain(&mut c).is_empty(), "already awake");
}

#[test]
fn go_idle_from_the_peer_closes_our_side_without_answering_it() {
    let (mut c, relay, _) = lazy_connected(false);
    c.handle_remote_go_idle(t(1_000));
    let actions = drain(&mut c);
    assert!(actions.contains(&Action::CloseIce), "{actions:?}");
    assert!(actions.contains(&Action::CloseRelay { id: relay }), "{actions:?}");
    assert!(!actions.contains(&Action::SendGoIdle), "{actions:?}");
    assert_eq!(
        c.status(t(1_000)).activity_reason,
        Some(ActivityReason::RemoteIdle)
    );
    c.handle_remote_go_idle(t(2_000));
    assert!(drain(&mut c).is_empty(), "a second GO_IDLE changes nothing");
}

#[test]
fn an_idle_connection_ignores_network_and_signal_events_until_something_needs_it() {
    let mut c = idle(true);
    let now = t(600_000);
    c.handle_network(now, false);
    c.handle_network(now, true);
    c.handle_signal_connected(now);
    c.handle_home_relay(now, Some("rels://other.test/".into()));
    c.handle_timeout(now + Duration::from_secs(60));
    let actions = drain(&mut c);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::StartIce(_) | Action::OpenRelay { .. })),
        "{actions:?}"
    );
    assert_eq!(c.status(now).activity, Activity::Idle);
}
