//! The relay connections of one engine: a home relay (the first configured server to answer),
//! kept up with backoff, plus connections to the foreign relays that peers advertise, closed
//! when no path uses them. Like NetBird's relay manager (shared/relay/client/manager.go).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::Connector;

use super::backoff::{BackoffPolicy, Reconnect, Targets};
use super::client::{ClientOptions, RelayClient, OPEN_TIMEOUT};
use super::counters::{RelayCounters, RelayCountersSnapshot};
use super::error::RelayError;
use super::events::{DisconnectReason, RelayEvent, RelayState, RELAY_EVENT_CAPACITY};
use super::health::HEALTH_TIMEOUT;
use super::path::RelayPath;
use super::token::RelayToken;
use super::url::RelayUrl;
use crate::clock::Instant;
use crate::keys::PublicKey;
use crate::path::{Inbound, PathId};
use crate::socket::SocketFactory;

/// NetBird closes a foreign relay that no connection uses at its next cleanup tick (every 60 s,
/// `relayCleanupInterval`); we close it 60 s after its last path closed, so that a path closed
/// and reopened at once does not pay for a new connection.
pub const FOREIGN_LINGER: Duration = Duration::from_secs(60);
/// Commands from the handle to the supervisor: rare (token, servers, network changes), so a
/// small queue suffices; senders wait for room.
const COMMAND_QUEUE: usize = 16;

/// How the manager runs.
#[derive(Clone)]
pub struct RelayManagerConfig {
    pub own_key: PublicKey,
    /// Candidate home relays, as management lists them.
    pub servers: Vec<RelayUrl>,
    pub token: RelayToken,
    pub sockets: SocketFactory,
    /// TLS settings for `rels://` (see [`super::RelayTls`]); `None` trusts the webpki roots only.
    pub tls: Option<Connector>,
    pub backoff: BackoffPolicy,
    pub foreign_linger: Duration,
    pub open_timeout: Duration,
}

impl RelayManagerConfig {
    pub fn new(own_key: PublicKey, servers: Vec<RelayUrl>, token: RelayToken) -> Self {
        Self {
            own_key,
            servers,
            token,
            sockets: SocketFactory::default(),
            tls: None,
            backoff: BackoffPolicy::default(),
            foreign_linger: FOREIGN_LINGER,
            open_timeout: OPEN_TIMEOUT,
        }
    }
}

/// Handle to the running manager. Dropping it stops the manager and closes its connections.
pub struct RelayManager {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    task: Option<JoinHandle<()>>,
}

type ForeignSlot = Arc<tokio::sync::Mutex<Option<Arc<RelayClient>>>>;

struct Shared {
    config: Mutex<RelayManagerConfig>,
    home: Mutex<Option<Arc<RelayClient>>>,
    /// Foreign relays by advertised address. The async lock serialises connecting to one relay.
    foreign: Mutex<HashMap<String, ForeignSlot>>,
    events: broadcast::Sender<RelayEvent>,
    state: watch::Sender<RelayState>,
    counters: Arc<RelayCounters>,
}

#[derive(Debug)]
enum Command {
    Kick,
    ServersChanged,
    ForeignChanged,
    NetworkChanged,
}

impl RelayManager {
    /// Starts connecting to the home relay. Must be called inside a tokio runtime.
    pub fn start(config: RelayManagerConfig) -> RelayManager {
        let (events, _) = broadcast::channel(RELAY_EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            home: Mutex::new(None),
            foreign: Mutex::new(HashMap::new()),
            events,
            state: watch::Sender::new(RelayState::Connecting),
            counters: Arc::default(),
        });
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let supervisor = Supervisor::new(shared.clone(), commands_rx);
        let task = tokio::spawn(supervisor.run());
        RelayManager {
            shared,
            commands,
            task: Some(task),
        }
    }

    /// The home relay's state from now on.
    pub fn state(&self) -> watch::Receiver<RelayState> {
        self.shared.state.subscribe()
    }

    /// Relay events from now on (every connection's).
    pub fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.shared.events.subscribe()
    }

    /// The home relay's instance URL, to advertise to peers; `None` while not connected.
    pub fn instance_url(&self) -> Option<String> {
        self.home().map(|h| h.instance_url().to_owned())
    }

    /// The home connection, if up.
    pub fn home(&self) -> Option<Arc<RelayClient>> {
        self.shared.home.lock().clone().filter(|h| h.is_connected())
    }

    pub fn counters(&self) -> RelayCountersSnapshot {
        self.shared.counters.snapshot()
    }

    /// Foreign relays connected now, by advertised address.
    pub fn foreign_relays(&self) -> Vec<String> {
        let foreign = self.shared.foreign.lock();
        let mut v: Vec<String> = foreign
            .iter()
            .filter(|(_, slot)| {
                slot.try_lock()
                    .is_ok_and(|c| c.as_ref().is_some_and(|c| c.is_connected()))
            })
            .map(|(url, _)| url.clone())
            .collect();
        v.sort();
        v
    }

    /// A new token from management. Connections up now keep running (the relay checks tokens
    /// only at the handshake); the next connection uses it, and a failed home relay retries now.
    pub async fn set_token(&self, token: RelayToken) {
        self.shared.config.lock().token = token;
        let _ = self.commands.send(Command::Kick).await;
    }

    /// New candidate home relays. The current home stays while it works; an attempt under way
    /// on the old list is abandoned for one on the new.
    pub async fn set_servers(&self, servers: Vec<RelayUrl>) {
        self.shared.config.lock().servers = servers;
        let _ = self.commands.send(Command::ServersChanged).await;
    }

    /// The device changed networks: connections on the old one are cut (their TCP state is
    /// likely dead) and the home relay reconnects at once, as NetBird's network sweeper does.
    pub async fn network_changed(&self) {
        let _ = self.commands.send(Command::NetworkChanged).await;
    }

    /// Opens a path to `peer` through the relay it advertised (`server`), or through our home
    /// relay when `server` is `None` or is the home relay.
    pub async fn open_peer(
        &self,
        server: Option<&str>,
        peer: PublicKey,
        sink: mpsc::Sender<Inbound>,
        id: PathId,
    ) -> Result<Arc<RelayPath>, RelayError> {
        let client = match (server, self.home()) {
            (None, Some(home)) => home,
            (Some(url), Some(home)) if is_same_relay(&home, url) => home,
            (None, None) => return Err(RelayError::NotConnected),
            (Some(url), None) if self.shared.is_home_server(url) => return Err(RelayError::NotConnected),
            (Some(url), _) => self.foreign(url).await?,
        };
        client.open_peer(peer, sink, id).await
    }

    async fn foreign(&self, url: &str) -> Result<Arc<RelayClient>, RelayError> {
        let parsed: RelayUrl = url.parse()?;
        let slot = self
            .shared
            .foreign
            .lock()
            .entry(url.to_owned())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| c.is_connected()) {
            return Ok(c.clone());
        }
        let options = self.shared.client_options();
        let client = Arc::new(RelayClient::connect(&parsed, options).await?);
        tracing::info!(server = %url, "foreign relay connected");
        *guard = Some(client.clone());
        drop(guard);
        let _ = self.commands.send(Command::ForeignChanged).await;
        Ok(client)
    }

    /// Closes every connection and stops.
    pub async fn stop(mut self) {
        let Some(task) = self.task.take() else { return };
        task.abort();
        let _ = task.await;
        self.shared.close_all().await;
    }
}

impl Drop for RelayManager {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            self.shared.disconnect_all();
        }
    }
}

/// Whether the advertised address `url` is `client`'s relay.
fn is_same_relay(client: &RelayClient, url: &str) -> bool {
    url == client.instance_url() || url == client.server().as_str()
}

impl Shared {
    fn client_options(&self) -> ClientOptions {
        let config = self.config.lock();
        ClientOptions {
            own_key: config.own_key,
            token: config.token.clone(),
            sockets: config.sockets.clone(),
            tls: config.tls.clone(),
            events: self.events.clone(),
            counters: self.counters.clone(),
            open_timeout: config.open_timeout,
            health_timeout: HEALTH_TIMEOUT,
        }
    }

    /// Whether `url` names the (possibly down) home relay or one of the configured servers: a
    /// second connection there under our id would make the relay drop the first.
    fn is_home_server(&self, url: &str) -> bool {
        let home = self.home.lock().as_ref().is_some_and(|h| is_same_relay(h, url));
        home || self.config.lock().servers.iter().any(|s| s.as_str() == url)
    }

    fn disconnect_all(&self) {
        if let Some(h) = self.home.lock().take() {
            h.disconnect();
        }
        for (_, slot) in self.foreign.lock().drain() {
            if let Ok(mut c) = slot.try_lock() {
                if let Some(c) = c.take() {
                    c.disconnect();
                }
            }
        }
        self.state.send_replace(RelayState::Stopped);
    }

    async fn close_all(&self) {
        let home = self.home.lock().take();
        let foreign: Vec<ForeignSlot> = self.foreign.lock().drain().map(|(_, s)| s).collect();
        if let Some(h) = home {
            h.close().await;
        }
        for slot in foreign {
            let client = slot.lock().await.take();
            if let Some(c) = client {
                c.close().await;
            }
        }
        self.state.send_replace(RelayState::Stopped);
    }
}

/// The manager's task: connects the home relay, reconnects it, and closes unused foreign relays.
struct Supervisor {
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Receiver<RelayEvent>,
    reconnect: Reconnect,
    /// The home relay's address while connected or last connected (for quick reconnects).
    previous: Option<RelayUrl>,
    attempt: Option<JoinHandle<Result<RelayClient, RelayError>>>,
    /// Foreign relays without paths, since when.
    idle_since: HashMap<String, Instant>,
}

impl Supervisor {
    fn new(shared: Arc<Shared>, commands: mpsc::Receiver<Command>) -> Self {
        let policy = shared.config.lock().backoff;
        let events = shared.events.subscribe();
        Self {
            shared,
            commands,
            events,
            reconnect: Reconnect::new(policy, Instant::now()),
            previous: None,
            attempt: None,
            idle_since: HashMap::new(),
        }
    }

    async fn run(mut self) {
        loop {
            let now = Instant::now();
            self.check_home(now);
            self.check_foreign(now);
            self.start_due_attempt(now);
            let deadline = self.next_deadline();
            let sleep = async move {
                match deadline {
                    Some(at) => tokio::time::sleep(at.saturating_duration_since(Instant::now())).await,
                    None => std::future::pending().await,
                }
            };
            // Events only wake the loop: the checks above read the connections themselves, so a
            // lagging event receiver misses nothing.
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                result = attempt_result(&mut self.attempt) => self.on_attempt(result),
                _ = self.events.recv() => {}
                () = sleep => {}
            }
        }
        if let Some(a) = self.attempt.take() {
            a.abort();
        }
    }

    fn start_due_attempt(&mut self, now: Instant) {
        if self.attempt.is_some() {
            return;
        }
        let Some(targets) = self.reconnect.take_due(now) else {
            return;
        };
        let all = self.shared.config.lock().servers.clone();
        let servers = match (targets, &self.previous) {
            (Targets::Previous, Some(prev)) if all.contains(prev) => vec![prev.clone()],
            (Targets::Previous, _) | (Targets::All, _) => all,
        };
        if let Some(client) = self.adopt_foreign(&servers) {
            tracing::info!(server = %client.server(), "a foreign relay connection becomes home");
            self.become_home(client);
            return;
        }
        let options = self.shared.client_options();
        tracing::debug!(servers = ?servers, failures = self.reconnect.failures(), "connecting to home relay");
        self.attempt = Some(tokio::spawn(pick_home(servers, options)));
    }

    /// A live foreign connection to one of `servers`: dialling it again under our id would make
    /// the relay close the first connection, so it is promoted instead.
    fn adopt_foreign(&mut self, servers: &[RelayUrl]) -> Option<Arc<RelayClient>> {
        let mut foreign = self.shared.foreign.lock();
        let url = foreign.iter().find_map(|(url, slot)| {
            let guard = slot.try_lock().ok()?;
            let client = guard.as_ref().filter(|c| c.is_connected())?;
            servers
                .iter()
                .any(|s| is_same_relay(client, s.as_str()))
                .then(|| url.clone())
        })?;
        let slot = foreign.remove(&url)?;
        self.idle_since.remove(&url);
        let client = slot.try_lock().ok()?.take();
        client
    }

    fn become_home(&mut self, client: Arc<RelayClient>) {
        tracing::info!(server = %client.server(), instance = %client.instance_url(), "home relay connected");
        self.previous = Some(client.server().clone());
        self.reconnect.on_connected();
        let state = RelayState::Connected {
            server: client.server().to_string(),
            instance_url: client.instance_url().to_owned(),
        };
        // Home first: whoever sees the state can use it.
        *self.shared.home.lock() = Some(client);
        self.set_state(state);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let reconnect = if self.attempt.is_none() {
            self.reconnect.poll_timeout()
        } else {
            None
        };
        let linger = self.shared.config.lock().foreign_linger;
        let foreign = self.idle_since.values().map(|&since| since + linger).min();
        [reconnect, foreign].into_iter().flatten().min()
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Kick => self.reconnect.kick(now),
            Command::ServersChanged => {
                // An attempt dialling the old list can hang until its 30 s timeout (a server
                // that answers TCP but no longer runs a relay): start over on the new list.
                if let Some(attempt) = self.attempt.take() {
                    attempt.abort();
                    self.reconnect.restart(now);
                }
                self.reconnect.kick(now);
            }
            Command::ForeignChanged => {}
            Command::NetworkChanged => {
                let home = self.shared.home.lock().take();
                for (_, slot) in self.shared.foreign.lock().drain() {
                    if let Ok(mut c) = slot.try_lock() {
                        if let Some(c) = c.take() {
                            c.disconnect();
                        }
                    }
                }
                self.idle_since.clear();
                if let Some(home) = home {
                    home.disconnect();
                    self.set_state(RelayState::Reconnecting);
                    self.reconnect.on_lost(now);
                }
                // The network is new: no settle delay, and a failed relay is worth trying again.
                self.reconnect.kick(now);
            }
        }
    }

    fn on_attempt(&mut self, result: Result<RelayClient, RelayError>) {
        self.attempt = None;
        let now = Instant::now();
        match result {
            Ok(client) => self.become_home(Arc::new(client)),
            Err(error) => {
                self.reconnect.on_failed(now, rand::random::<f64>());
                let failures = self.reconnect.failures();
                let retry_in = self
                    .reconnect
                    .poll_timeout()
                    .map(|at| at.saturating_duration_since(now));
                tracing::warn!(%error, failures, ?retry_in, "home relay attempt failed");
                self.set_state(RelayState::Failed { error, failures });
            }
        }
    }

    /// Notices a home connection that ended and schedules the reconnect.
    fn check_home(&mut self, now: Instant) {
        let lost = {
            let mut home = self.shared.home.lock();
            match home.as_ref() {
                Some(h) if !h.is_connected() => home.take(),
                Some(_) | None => None,
            }
        };
        let Some(lost) = lost else { return };
        let reason = lost
            .disconnect_reason()
            .unwrap_or(DisconnectReason::ClosedLocally);
        tracing::warn!(server = %lost.server(), %reason, "home relay lost; reconnecting");
        self.set_state(RelayState::Reconnecting);
        match reason {
            DisconnectReason::ClosedLocally => {
                self.reconnect.on_lost(now);
                self.reconnect.kick(now);
            }
            DisconnectReason::ServerClose
            | DisconnectReason::HealthCheckTimeout
            | DisconnectReason::ConnectionLost { .. } => self.reconnect.on_lost(now),
        }
    }

    /// Forgets dead foreign relays and closes those unused for the linger time.
    fn check_foreign(&mut self, now: Instant) {
        let linger = self.shared.config.lock().foreign_linger;
        let mut foreign = self.shared.foreign.lock();
        let idle_since = &mut self.idle_since;
        foreign.retain(|url, slot| {
            // A slot being connected right now is locked: leave it alone.
            let Ok(mut guard) = slot.try_lock() else {
                return true;
            };
            let Some(client) = guard.as_ref() else {
                idle_since.remove(url);
                return false;
            };
            if !client.is_connected() {
                idle_since.remove(url);
                return false;
            }
            if client.peer_count() > 0 {
                idle_since.remove(url);
                return true;
            }
            let since = *idle_since.entry(url.clone()).or_insert(now);
            if now.saturating_duration_since(since) < linger {
                return true;
            }
            tracing::info!(server = %url, "closing unused foreign relay");
            idle_since.remove(url);
            if let Some(c) = guard.take() {
                c.disconnect();
            }
            false
        });
    }

    fn set_state(&self, state: RelayState) {
        self.shared.state.send_replace(state);
    }
}

async fn attempt_result(
    attempt: &mut Option<JoinHandle<Result<RelayClient, RelayError>>>,
) -> Result<RelayClient, RelayError> {
    let Some(handle) = attempt.as_mut() else {
        return std::future::pending().await;
    };
    match handle.await {
        Ok(r) => r,
        Err(_) => Err(RelayError::Stopped),
    }
}

/// Connects to every server at once; the first to authenticate is home, the others are closed.
/// When all fail, the most telling error wins: a refused token over a network failure.
async fn pick_home(servers: Vec<RelayUrl>, options: ClientOptions) -> Result<RelayClient, RelayError> {
    if servers.is_empty() {
        return Err(RelayError::NoServers);
    }
    let mut attempts: FuturesUnordered<_> = servers
        .iter()
        .map(|url| RelayClient::connect(url, options.clone()))
        .collect();
    let mut worst: Option<RelayError> = None;
    while let Some(result) = attempts.next().await {
        match result {
            Ok(client) => return Ok(client),
            Err(e) => {
                tracing::debug!(error = %e, "relay server did not answer");
                if worst.as_ref().is_none_or(|w| !w.is_auth()) {
                    worst = Some(e);
                }
            }
        }
    }
    Err(worst.unwrap_or(RelayError::NoServers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_servers_is_a_typed_failure_without_a_storm() {
        let key = crate::keys::PrivateKey::generate().public_key();
        let m = RelayManager::start(RelayManagerConfig::new(
            key,
            vec![],
            RelayToken::mint("s", 1_900_000_000),
        ));
        let mut state = m.state();
        let s = state
            .wait_for(|s| matches!(s, RelayState::Failed { .. }))
            .await
            .unwrap()
            .clone();
        assert_eq!(
            s,
            RelayState::Failed {
                error: RelayError::NoServers,
                failures: 1
            }
        );
        m.stop().await;
    }
}
