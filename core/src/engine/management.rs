//! The engine's side of management: runs the session (login, Sync stream, backoff), applies
//! each update with the pure [`NetworkState::apply`], and carries the delta out through the
//! engine's usual paths: `replace_peers`, the relay manager's token and servers, ICE's servers
//! for the next sessions, and events for the app (interface, DNS, state). The control plane
//! starts once the first update has named the servers, and is never restarted: healthy paths
//! stay up through every later update.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{start_control, ControlInputs, ManagementStatus, Shared, CONTROL_STOP_GRACE};
use crate::config::{validate_ice, validate_relay, validate_signal, EngineConfig, ManagementSpec};
use crate::conn::plane::PlaneEvent;
use crate::conn::ConnSetup;
use crate::events::Event;
use crate::ice::IceConfig;
use crate::keys::PublicKey;
use crate::mgmt::{
    run_session, Delta, ManagementConfig, ManagementState, NetworkState, Servers, SessionContext,
    UPDATE_CAPACITY,
};
use crate::relay::RelayManager;
use crate::socket::SocketFactory;

/// How long the session task gets to leave its call after shutdown; it only has to notice.
const SESSION_STOP_GRACE: Duration = Duration::from_secs(1);

pub(crate) struct ManagementRun {
    pub shared: Arc<Shared>,
    pub spec: ManagementSpec,
    /// The app's configuration: the key, and ICE's interface choices under management's servers.
    pub base: EngineConfig,
    pub sockets: SocketFactory,
    pub tun_name: Option<String>,
    pub plane_events: mpsc::Receiver<PlaneEvent>,
}

/// The control plane once started, and the handles updates go through.
struct Control {
    task: JoinHandle<()>,
    relay: Option<Arc<RelayManager>>,
    ice: watch::Sender<Option<IceConfig>>,
    signal_url: Option<String>,
    /// The relay settings last applied, to tell a token refresh from a change of servers.
    relay_spec: Option<crate::config::RelaySpec>,
}

pub(crate) async fn run(run: ManagementRun, mut shutdown: watch::Receiver<bool>) {
    let ManagementRun {
        shared,
        spec,
        base,
        sockets,
        tun_name,
        plane_events,
    } = run;
    let (updates_tx, mut updates) = mpsc::channel(UPDATE_CAPACITY);
    let (state_tx, mut state_rx) = watch::channel(ManagementState::Connecting);
    set_status(&shared, |m| m.state = ManagementState::Connecting);
    let hostname = spec.hostname.clone().unwrap_or_else(system_hostname);
    let session = tokio::spawn(run_session(SessionContext {
        private_key: base.private_key.clone(),
        config: ManagementConfig {
            url: spec.url.clone(),
            setup_key: spec.setup_key.clone(),
            hostname,
            ca_pem: spec.ca_pem.as_ref().map(|p| p.as_bytes().to_vec()),
            sockets: sockets.clone(),
        },
        updates: updates_tx,
        state: state_tx,
        online: shared.online.subscribe(),
        shutdown: shutdown.clone(),
    }));
    let own = shared.public_key();
    let mut network = NetworkState::default();
    let mut plane_events = Some(plane_events);
    let mut control: Option<Control> = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(update) = updates.recv() => {
                let connected = connected_peers(&shared);
                let delta = network.apply(&update, &own, &connected);
                let setup = Setup { shared: &shared, base: &base, sockets: &sockets, tun_name: tun_name.as_deref() };
                carry_out(&setup, delta, &mut control, &mut plane_events, &shutdown).await;
            }
            Ok(()) = state_rx.changed() => {
                let state = state_rx.borrow_and_update().clone();
                tracing::info!(state = %state, "management");
                set_status(&shared, |m| m.state = state.clone());
                let _ = shared.events.send(Event::ManagementStateChanged(state));
            }
        }
    }
    let session_abort = session.abort_handle();
    let session_stop = async {
        if tokio::time::timeout(SESSION_STOP_GRACE, session).await.is_err() {
            tracing::debug!("management session did not stop in time; aborted");
            session_abort.abort();
        }
    };
    let control_stop = async {
        let Some(control) = control else { return };
        let abort = control.task.abort_handle();
        // Inside the engine's own bound for this task, so that this task, not the engine,
        // is the one to abort the control plane.
        let grace = CONTROL_STOP_GRACE.saturating_sub(SESSION_STOP_GRACE);
        if tokio::time::timeout(grace, control.task).await.is_err() {
            tracing::warn!("control plane did not stop in time; aborted");
            abort.abort();
        }
    };
    tokio::join!(session_stop, control_stop);
}

struct Setup<'a> {
    shared: &'a Arc<Shared>,
    base: &'a EngineConfig,
    sockets: &'a SocketFactory,
    tun_name: Option<&'a str>,
}

async fn carry_out(
    setup: &Setup<'_>,
    delta: Delta,
    control: &mut Option<Control>,
    plane_events: &mut Option<mpsc::Receiver<PlaneEvent>>,
    shutdown: &watch::Receiver<bool>,
) {
    let shared = setup.shared;
    if delta.skipped > 0 {
        set_status(shared, |m| m.skipped += u64::from(delta.skipped));
    }
    if let Some(servers) = &delta.servers {
        match control {
            Some(c) => update_servers(setup, c, servers).await,
            None => {
                // Taken once: the control plane starts once.
                if let Some(events) = plane_events.take() {
                    match start(setup, servers, events, shutdown) {
                        Ok(c) => *control = Some(c),
                        Err(e) => tracing::warn!(error = %e, "the servers management named are unusable"),
                    }
                }
            }
        }
    }
    if let Some(interface) = delta.interface {
        tracing::info!(addresses = ?interface.addresses, routes = interface.routes.len(), "interface from management");
        set_status(shared, |m| m.interface = Some(interface.clone()));
        let _ = shared.events.send(Event::InterfaceChanged(interface));
    }
    if let Some(names) = delta.names {
        set_status(shared, |m| m.names = names);
    }
    if let Some(rules) = delta.firewall {
        // Before the peers, so that no new peer is reachable unfiltered. Flows live with the
        // peers, not the rules: established flows survive the swap.
        tracing::info!(
            rules = rules.len(),
            allow_all = rules.allow_all,
            "firewall rules from management"
        );
        shared.rules.store(Some(Arc::new(rules)));
    }
    if let Some(peers) = delta.peers {
        tracing::info!(count = peers.len(), "peers from management");
        shared.replace_peers(peers);
    }
    if let Some(dns) = delta.dns {
        let _ = shared.events.send(Event::DnsChanged(dns));
    }
}

/// Starts the control plane on the servers of the first update.
fn start(
    setup: &Setup<'_>,
    servers: &Servers,
    events: mpsc::Receiver<PlaneEvent>,
    shutdown: &watch::Receiver<bool>,
) -> Result<Control, crate::EngineError> {
    let mut config = setup.base.clone();
    config.signal = servers.signal.as_ref().and_then(|s| validate_signal(s).ok());
    config.relay = servers.relay.as_ref().and_then(relay_settings);
    config.ice = validate_ice(&ice_spec(setup.base, servers)).ok();
    let conn_setup = ConnSetup::from_config(&config, setup.sockets, setup.tun_name);
    let ice_initial = conn_setup.ice.clone();
    let signal = crate::conn::setup_signal(&config, setup.sockets);
    let (ice, ice_updates) = watch::channel(ice_initial);
    let inputs = ControlInputs {
        setup: conn_setup,
        signal,
        plane_events: events,
        ice_updates,
    };
    let (task, relay) = start_control(setup.shared, &config, inputs, shutdown.clone())?;
    tracing::info!(signal = ?config.signal.as_ref().map(|s| &s.url), relay = relay.is_some(), "control plane started on management's servers");
    Ok(Control {
        task,
        relay,
        ice,
        signal_url: config.signal.map(|s| s.url),
        relay_spec: servers.relay.clone(),
    })
}

/// Later server changes, without touching the connections that work.
async fn update_servers(setup: &Setup<'_>, control: &mut Control, servers: &Servers) {
    let signal_url = servers.signal.as_ref().map(|s| s.url.clone());
    if signal_url != control.signal_url {
        tracing::warn!(from = ?control.signal_url, to = ?signal_url,
            "management moved the signal server; the engine keeps the old one until it restarts");
    }
    let previous = std::mem::replace(&mut control.relay_spec, servers.relay.clone());
    match (&control.relay, servers.relay.as_ref().and_then(relay_settings)) {
        (Some(relay), Some(settings)) => {
            let next = servers.relay.as_ref();
            if previous.as_ref().map(|p| (&p.token_payload, &p.token_signature))
                != next.map(|n| (&n.token_payload, &n.token_signature))
            {
                tracing::info!("relay token refreshed by management");
                relay.set_token(settings.token.clone()).await;
            }
            if previous.as_ref().map(|p| &p.urls) != next.map(|n| &n.urls) {
                tracing::info!(urls = ?next.map(|n| &n.urls), "relay servers changed by management");
                relay.set_servers(settings.urls.clone()).await;
            }
        }
        (Some(relay), None) => {
            tracing::info!("management sent no relay: no new relay connections");
            relay.set_servers(Vec::new()).await;
        }
        (None, Some(_)) => tracing::info!("management added a relay; it is used after the engine restarts"),
        (None, None) => {}
    }
    let mut config = setup.base.clone();
    config.ice = validate_ice(&ice_spec(setup.base, servers)).ok();
    let ice = ConnSetup::from_config(&config, setup.sockets, setup.tun_name).ice;
    control.ice.send_replace(ice);
}

fn relay_settings(spec: &crate::config::RelaySpec) -> Option<crate::config::RelaySettings> {
    validate_relay(spec)
        .inspect_err(|e| tracing::warn!(error = %e, "relay settings from management refused"))
        .ok()
}

/// Management's STUN and TURN servers with the app's own ICE choices (interfaces, force TURN).
fn ice_spec(base: &EngineConfig, servers: &Servers) -> crate::config::IceSpec {
    let own = base.ice.clone().unwrap_or_default();
    crate::config::IceSpec {
        stun: servers.ice.stun.clone(),
        turn: servers.ice.turn.clone(),
        ..own
    }
}

fn connected_peers(shared: &Shared) -> HashSet<PublicKey> {
    shared
        .status()
        .peers
        .iter()
        .filter(|p| p.active_path.is_some())
        .map(|p| p.public_key)
        .collect()
}

fn set_status(shared: &Shared, change: impl FnOnce(&mut ManagementStatus)) {
    let mut control = shared.control.lock();
    let status = control.management.get_or_insert_with(|| ManagementStatus {
        state: ManagementState::Connecting,
        interface: None,
        names: Vec::new(),
        skipped: 0,
    });
    change(status);
}

/// The system's host name, the default name of the peer in the network.
fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match (rc, buf.get(..end)) {
        (0, Some(name)) if !name.is_empty() => String::from_utf8_lossy(name).into_owned(),
        _ => "peerlink".to_owned(),
    }
}
