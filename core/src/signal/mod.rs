//! NetBird's signal: how peers exchange offers, answers and ICE candidates before they have a
//! path. Two transports behind one [`SignalHandle`]: the gRPC client of NetBird's signal server
//! ([`connect_grpc`]) and an in-process hub for the demo and tests ([`SignalHub`]).
//!
//! The handle only moves messages. Whether a sender is a configured peer is the engine's
//! business; what to answer is [`Handshaker`]'s.

pub mod backoff;
pub(crate) mod grpc;
pub mod handshaker;
mod hub;
pub(crate) mod inbound;
pub mod message;
pub mod proto;
pub mod seal;
pub mod watchdog;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prost::Message as _;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

pub use grpc::{connect_grpc, GrpcSignalConfig};
pub use handshaker::{HandshakeEvent, Handshaker};
pub use hub::{HubFilter, SignalHub};
pub use inbound::{SignalCounters, LOG_INTERVAL, MAX_BODY_LEN};
pub use message::{parse_credentials, IceCredentials, MessageError, OfferAnswer, SessionId, SignalMessage};

use crate::keys::{PrivateKey, PublicKey};
use inbound::CounterCells;
use proto::EncryptedMessage;

/// A message from a peer: its sender (unverified beyond the box opening with that key) and
/// content.
pub type Incoming = (PublicKey, SignalMessage);

/// Capacity of the receiver a client hands up. Signal messages come in bursts when peers
/// (re)connect: an offer and a handful of candidates each, so 512 holds the burst of about a
/// hundred peers at once; beyond that the engine is not reading and messages are dropped and
/// counted (`dropped_receiver_full`) rather than stalling the stream, which the server would
/// cut after its 10 s send timeout.
pub const INCOMING_CAPACITY: usize = 512;
/// How long `close` waits for the client's tasks before aborting them; they only need to leave
/// a `select!`.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where the client stands with its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalState {
    /// First connection attempt, or a reconnect asked for by [`SignalHandle::reconnect`].
    Connecting,
    /// Registered with the server: messages to us are delivered.
    Connected,
    /// Lost or never reached the server; retrying with backoff. `attempt` counts failures since
    /// the last registration.
    Reconnecting { attempt: u32, last_error: String },
    /// Another client registered with the same key and the server now delivers to it. The
    /// client does not fight back (both would flap); [`SignalHandle::reconnect`] takes over again.
    Replaced,
    /// Closed by [`SignalHandle::close`]; final.
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("signal URL {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("the extra CA certificate contains no PEM certificate")]
    BadCaPem,
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("the server refused the stream: {0}")]
    Refused(String),
    #[error(
        "the server did not confirm registration (no {} header)",
        proto::HEADER_REGISTERED
    )]
    NotRegistered,
    #[error("no registration within {0:?}")]
    RegistrationTimeout(Duration),
    #[error("the server ended the stream")]
    StreamEnded,
    #[error("the receive stream stalled: our heartbeat did not come back")]
    Stalled,
    #[error("another client registered with the same key")]
    Replaced,
    #[error("sealed message of {0} bytes exceeds the {MAX_BODY_LEN}-byte limit receivers apply")]
    TooLarge(usize),
    #[error("sending to {to} failed after {attempts} attempts: {last}")]
    SendFailed {
        to: PublicKey,
        attempts: u32,
        last: String,
    },
    #[error("the signal client is closed")]
    Closed,
}

/// A connected signal client, gRPC or in-process. Cheap to clone; every clone sends through
/// the same client. [`close`](Self::close) on any clone (or dropping the last one) ends it.
#[derive(Clone)]
pub struct SignalHandle {
    inner: Arc<Inner>,
}

impl SignalHandle {
    /// Our own public key, the one the server knows us by.
    pub fn public_key(&self) -> PublicKey {
        self.inner.public_key
    }

    /// Seals `msg` for `to` and hands it to the server. Fails when the server could not be
    /// reached after a few attempts; a peer that is not connected is not an error (the server
    /// drops such messages silently, as NetBird's does).
    pub async fn send(&self, to: PublicKey, msg: SignalMessage) -> Result<(), SignalError> {
        if *self.inner.state_tx.borrow() == SignalState::Closed {
            return Err(SignalError::Closed);
        }
        let msg = match &self.inner.transport {
            Transport::Grpc(_) => msg,
            // The hub's filter (demo, tests) sees the message here, where it is still plain;
            // a message it drops is gone as if the hub had lost it.
            Transport::Hub(link) => match link.filter(self.inner.public_key, to, msg) {
                Some(msg) => msg,
                None => return Ok(()),
            },
        };
        let wire = self.seal(to, &msg)?;
        tracing::trace!(to = %to, kind = msg.kind(), "signal message sending");
        let result = match &self.inner.transport {
            Transport::Grpc(sender) => sender.send(to, wire).await,
            Transport::Hub(link) => link.send(wire),
        };
        let cell = if result.is_ok() {
            &self.inner.counters.sent
        } else {
            &self.inner.counters.send_failures
        };
        CounterCells::bump(cell);
        result
    }

    /// The client's state, now and as it changes.
    pub fn state(&self) -> watch::Receiver<SignalState> {
        self.inner.state_tx.subscribe()
    }

    pub fn counters(&self) -> SignalCounters {
        self.inner.counters.snapshot()
    }

    /// Reads the counters from elsewhere (the engine's status) without keeping the client alive.
    pub fn counters_source(&self) -> SignalCountersSource {
        SignalCountersSource(self.inner.counters.clone())
    }

    /// Drops the current connection and connects again at once, with a fresh channel and the
    /// backoff reset: for a network change, or to take over after [`SignalState::Replaced`].
    pub fn reconnect(&self) {
        self.inner.control.reconnect.notify_one();
    }

    /// Ends the client: its tasks stop, its connection closes, the receiver ends.
    pub async fn close(self) {
        self.inner.control.shutdown.send_replace(true);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.control.tasks.lock());
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(CLOSE_GRACE, task).await.is_err() {
                tracing::warn!("a signal task did not stop in time; aborted");
                abort.abort();
            }
        }
        self.inner.state_tx.send_replace(SignalState::Closed);
        tracing::debug!(key = %self.inner.public_key, "signal client closed");
    }

    fn seal(&self, to: PublicKey, msg: &SignalMessage) -> Result<EncryptedMessage, SignalError> {
        let body = seal::seal(&self.inner.private_key, &to, &msg.to_body().encode_to_vec());
        if body.len() > MAX_BODY_LEN {
            return Err(SignalError::TooLarge(body.len()));
        }
        Ok(EncryptedMessage {
            key: self.inner.public_key.to_base64(),
            remote_key: to.to_base64(),
            body,
        })
    }
}

/// A signal client's counters, readable after the client is gone (they stop there).
#[derive(Debug, Clone)]
pub struct SignalCountersSource(Arc<CounterCells>);

impl SignalCountersSource {
    pub fn snapshot(&self) -> SignalCounters {
        self.0.snapshot()
    }
}

impl std::fmt::Debug for SignalHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalHandle")
            .field("key", &self.inner.public_key)
            .field("state", &*self.inner.state_tx.borrow())
            .finish()
    }
}

struct Inner {
    private_key: PrivateKey,
    public_key: PublicKey,
    transport: Transport,
    state_tx: Arc<watch::Sender<SignalState>>,
    counters: Arc<CounterCells>,
    /// Owned here only: the tasks hold a receiver and the notifier, never this, so dropping
    /// the last handle drops it and aborts them.
    control: Control,
}

enum Transport {
    Grpc(grpc::Sender),
    Hub(hub::HubLink),
}

/// What the handle uses to steer the client's tasks.
#[derive(Default)]
pub(crate) struct Control {
    pub shutdown: watch::Sender<bool>,
    pub reconnect: Arc<Notify>,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Control {
    /// Resolves once the client is closing (or its handles are all gone).
    pub async fn closing(rx: &mut watch::Receiver<bool>) {
        let _ = rx.wait_for(|closing| *closing).await;
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

/// The parts every transport builds a handle from.
pub(crate) struct Parts {
    pub private_key: PrivateKey,
    pub state_tx: Arc<watch::Sender<SignalState>>,
    pub counters: Arc<CounterCells>,
    pub control: Control,
    pub deliver: mpsc::Sender<Incoming>,
}

impl Parts {
    pub fn new(private_key: PrivateKey, initial: SignalState) -> (Self, mpsc::Receiver<Incoming>) {
        let (deliver, incoming) = mpsc::channel(INCOMING_CAPACITY);
        let (state_tx, _) = watch::channel(initial);
        let parts = Parts {
            private_key,
            state_tx: Arc::new(state_tx),
            counters: Arc::new(CounterCells::default()),
            control: Control::default(),
            deliver,
        };
        (parts, incoming)
    }

    /// What a task needs to be told to stop or to reconnect.
    pub fn steering(&self) -> (watch::Receiver<bool>, Arc<Notify>) {
        (self.control.shutdown.subscribe(), self.control.reconnect.clone())
    }

    fn into_handle(self, transport: Transport, tasks: Vec<JoinHandle<()>>) -> SignalHandle {
        self.control.tasks.lock().extend(tasks);
        SignalHandle {
            inner: Arc::new(Inner {
                public_key: self.private_key.public_key(),
                private_key: self.private_key,
                transport,
                state_tx: self.state_tx,
                counters: self.counters,
                control: self.control,
            }),
        }
    }
}
