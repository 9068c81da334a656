//! A connection to one relay server, carrying any number of peers.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::Connector;

use super::conn::{Conn, RegisterError};
use super::counters::{RelayCounters, RelayCountersSnapshot};
use super::error::RelayError;
use super::events::{DisconnectReason, RelayEvent, RELAY_EVENT_CAPACITY};
use super::health::HEALTH_TIMEOUT;
use super::io::{read_loop, write_loop};
use super::messages::{encode_peer_list, PeerId, PeerListKind};
use super::path::RelayPath;
use super::token::RelayToken;
use super::transport;
use super::url::RelayUrl;
use crate::clock::Instant;
use crate::keys::PublicKey;
use crate::path::{Inbound, PathId};
use crate::socket::SocketFactory;

/// NetBird's `OpenConnectionTimeout` (relay/client/peer_subscription.go): how long opening a peer
/// waits for the relay to report it online.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `close` waits for the tasks to say goodbye before aborting them.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What a connection needs besides the server's address.
#[derive(Clone)]
pub struct ClientOptions {
    pub own_key: PublicKey,
    pub token: RelayToken,
    /// Creates (and on Android protects) the TCP socket.
    pub sockets: SocketFactory,
    /// TLS settings for `rels://`; `None` uses the webpki roots. Give a [`super::RelayTls`]
    /// connector built with the app's CA for a self-hosted relay.
    pub tls: Option<Connector>,
    /// Where connection and path events go.
    pub events: broadcast::Sender<RelayEvent>,
    /// Shared counters (a manager passes one set to all its connections).
    pub counters: Arc<RelayCounters>,
    /// How long `open_peer` waits for the peer to come online.
    pub open_timeout: Duration,
    /// Silence after which the connection is dead.
    pub health_timeout: Duration,
}

impl ClientOptions {
    pub fn new(own_key: PublicKey, token: RelayToken) -> Self {
        Self {
            own_key,
            token,
            sockets: SocketFactory::default(),
            tls: None,
            events: broadcast::channel(RELAY_EVENT_CAPACITY).0,
            counters: Arc::default(),
            open_timeout: OPEN_TIMEOUT,
            health_timeout: HEALTH_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("own_key", &self.own_key)
            .field("token", &self.token)
            .field("sockets", &self.sockets)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// One authenticated connection to a relay server. Dropping it closes the connection and every
/// path on it.
pub struct RelayClient {
    conn: Arc<Conn>,
    open_timeout: Duration,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

impl RelayClient {
    /// Connects to `server` and authenticates. Must be called inside a tokio runtime.
    pub async fn connect(server: &RelayUrl, options: ClientOptions) -> Result<RelayClient, RelayError> {
        let own = PeerId::of(&options.own_key);
        let authed = transport::connect(
            server,
            &own,
            &options.token,
            &options.sockets,
            options.tls.clone(),
        )
        .await?;
        let (conn, control_rx, data_rx) = Conn::new(
            server.clone(),
            authed.instance_url,
            options.counters.clone(),
            options.events.clone(),
        );
        let (sink, stream) = authed.ws.split();
        let tasks = vec![
            tokio::spawn(read_loop(conn.clone(), stream, options.health_timeout)),
            tokio::spawn(write_loop(conn.clone(), sink, control_rx, data_rx)),
        ];
        tracing::info!(%server, instance = %conn.instance_url, key = %options.own_key, "relay connected");
        conn.emit(RelayEvent::Connected {
            server: server.to_string(),
            instance_url: conn.instance_url.clone(),
        });
        Ok(RelayClient {
            conn,
            open_timeout: options.open_timeout,
            tasks: parking_lot::Mutex::new(tasks),
        })
    }

    /// The address this connection dialled.
    pub fn server(&self) -> &RelayUrl {
        &self.conn.server
    }

    /// The relay's instance URL from its AuthResponse: what peers advertise to reach us here.
    pub fn instance_url(&self) -> &str {
        &self.conn.instance_url
    }

    pub fn is_connected(&self) -> bool {
        !self.conn.is_ended()
    }

    /// Why the connection ended, once it has.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.conn.end_reason()
    }

    /// Resolves when the connection ends, with why.
    pub async fn disconnected(&self) -> DisconnectReason {
        let mut rx = self.conn.ended.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone(),
            Err(_) => None,
        };
        reason.unwrap_or(DisconnectReason::ClosedLocally)
    }

    /// Peers opened or opening on this connection.
    pub fn peer_count(&self) -> usize {
        self.conn.peer_count()
    }

    pub fn counters(&self) -> RelayCountersSnapshot {
        self.conn.counters.snapshot()
    }

    /// Opens a path to `peer`: subscribes to its state and waits (at most the open timeout) for
    /// the relay to report it online. What the peer sends arrives on `sink` as [`Inbound`]
    /// messages tagged with `id`, including a packet it sent before we opened it (held 5 s).
    pub async fn open_peer(
        &self,
        peer: PublicKey,
        sink: mpsc::Sender<Inbound>,
        id: PathId,
    ) -> Result<Arc<RelayPath>, RelayError> {
        let server = || self.conn.server.to_string();
        let opening = match self.conn.register(peer, id, sink, Instant::now()) {
            Ok(o) => o,
            Err(RegisterError::Ended) => return Err(RelayError::Disconnected { server: server() }),
            Err(RegisterError::AlreadyOpen) => {
                return Err(RelayError::PeerAlreadyOpen {
                    server: server(),
                    peer,
                })
            }
        };
        // Until the peer is online, dropping this future or failing releases the slot.
        let pending = PendingOpen {
            conn: &self.conn,
            peer,
            id,
            armed: true,
        };
        for msg in encode_peer_list(PeerListKind::Subscribe, &[PeerId::of(&peer)]) {
            self.conn
                .control_tx
                .send(msg)
                .await
                .map_err(|_| RelayError::Disconnected { server: server() })?;
        }
        tracing::debug!(server = %self.conn.server, %peer, path = id.0, "waiting for peer to come online");
        match tokio::time::timeout(self.open_timeout, opening.online).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) if self.conn.is_ended() => return Err(RelayError::Disconnected { server: server() }),
            Ok(Err(_)) => {
                return Err(RelayError::PeerWentOffline {
                    server: server(),
                    peer,
                })
            }
            Err(_) => {
                return Err(RelayError::PeerNotOnline {
                    server: server(),
                    peer,
                    waited: self.open_timeout,
                })
            }
        }
        pending.disarm();
        tracing::info!(server = %self.conn.server, %peer, path = id.0, "relay path open");
        Ok(Arc::new(RelayPath::new(
            peer,
            id,
            self.conn.clone(),
            opening.state,
        )))
    }

    /// Ends the connection now (the relay gets its Close message on the way out); every path
    /// on it closes.
    pub fn disconnect(&self) {
        self.conn.end(DisconnectReason::ClosedLocally);
    }

    /// Says goodbye to the relay (its Close message) and waits, briefly, for the tasks to end.
    pub async fn close(&self) {
        self.conn.end(DisconnectReason::ClosedLocally);
        let tasks: Vec<_> = self.tasks.lock().drain(..).collect();
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(CLOSE_WAIT, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for RelayClient {
    fn drop(&mut self) {
        // The writer still delivers the Close message on its way out.
        self.conn.end(DisconnectReason::ClosedLocally);
    }
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient")
            .field("server", &self.conn.server)
            .field("instance_url", &self.conn.instance_url)
            .field("connected", &self.is_connected())
            .field("peers", &self.peer_count())
            .finish()
    }
}

/// Releases a peer's slot unless the open completed.
struct PendingOpen<'a> {
    conn: &'a Arc<Conn>,
    peer: PublicKey,
    id: PathId,
    armed: bool,
}

impl PendingOpen<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for PendingOpen<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.conn.release(&self.peer, self.id);
        }
    }
}
