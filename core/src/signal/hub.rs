//! An in-process signal server: clients in one process exchange sealed messages over channels,
//! through the same sealing and the same receive checks as the gRPC client. For the demo and
//! for tests that need signal without a server.
//!
//! A hub may carry a [`HubFilter`]: a hook for the demo and tests that sees each message while
//! it is still plain and may rewrite or drop it, as a middlebox on the way to the server could
//! not (the demo points ICE candidates through an in-process UDP middlebox with it).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify};

use super::inbound::Inbound;
use super::message::SignalMessage;
use super::proto::EncryptedMessage;
use super::{Control, Incoming, Parts, SignalError, SignalHandle, SignalState, Transport};
use crate::keys::{PrivateKey, PublicKey};

/// Messages queued towards one hub client before the hub drops more, as a server drops what
/// it cannot forward: twice a burst of offers and candidates from a few dozen peers.
pub const HUB_QUEUE: usize = 256;

/// Sees every message a client of the hub sends, as `(from, to, message)`, before it is sealed;
/// what it returns is sent instead, `None` drops the message. Runs on the sender's task: it must
/// not block.
pub type HubFilter = Arc<dyn Fn(PublicKey, PublicKey, SignalMessage) -> Option<SignalMessage> + Send + Sync>;

/// The hub. Cheap to clone; clones share the registry and the filter.
#[derive(Clone, Default)]
pub struct SignalHub {
    registry: Arc<Mutex<Registry>>,
    filter: Option<HubFilter>,
}

#[derive(Default)]
struct Registry {
    clients: HashMap<String, Registration>,
    next_id: u64,
}

struct Registration {
    id: u64,
    queue: mpsc::Sender<EncryptedMessage>,
}

impl SignalHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// A hub whose clients' messages pass through `filter` (see [`HubFilter`]).
    pub fn with_filter(filter: HubFilter) -> Self {
        Self {
            filter: Some(filter),
            ..Self::default()
        }
    }

    /// Registers a client with `private_key`'s public key, replacing any client registered with
    /// the same key (as the server keeps the newer stream). Must be called inside a tokio
    /// runtime.
    pub fn connect(&self, private_key: PrivateKey) -> (SignalHandle, mpsc::Receiver<Incoming>) {
        let (parts, incoming) = Parts::new(private_key, SignalState::Connected);
        let key = parts.private_key.public_key();
        let queue = self.register(&key);
        let (closing, reconnect) = parts.steering();
        let task = tokio::spawn(run(
            self.clone(),
            key,
            queue,
            Inbound::new(
                parts.private_key.clone(),
                parts.counters.clone(),
                parts.deliver.clone(),
            ),
            parts.state_tx.clone(),
            closing,
            reconnect,
        ));
        let link = HubLink { hub: self.clone() };
        (parts.into_handle(Transport::Hub(link), vec![task]), incoming)
    }

    /// Delivers a message as the server would: to whoever is registered under its
    /// `remote_key`, or nowhere. For tests that need to send what no client would.
    pub fn send_raw(&self, msg: EncryptedMessage) {
        let registry = self.registry.lock();
        let Some(client) = registry.clients.get(&msg.remote_key) else {
            return;
        };
        if client.queue.try_send(msg).is_err() {
            tracing::trace!("hub queue full; message dropped");
        }
    }

    /// Whether a client is registered under `key`.
    pub fn is_registered(&self, key: &PublicKey) -> bool {
        self.registry.lock().clients.contains_key(&key.to_base64())
    }

    fn register(&self, key: &PublicKey) -> (u64, mpsc::Receiver<EncryptedMessage>) {
        let (tx, rx) = mpsc::channel(HUB_QUEUE);
        let mut registry = self.registry.lock();
        registry.next_id += 1;
        let id = registry.next_id;
        // Replacing the old registration drops its queue: that client sees it end.
        registry
            .clients
            .insert(key.to_base64(), Registration { id, queue: tx });
        (id, rx)
    }

    fn deregister(&self, key: &PublicKey, id: u64) {
        let mut registry = self.registry.lock();
        let b64 = key.to_base64();
        if registry.clients.get(&b64).is_some_and(|r| r.id == id) {
            registry.clients.remove(&b64);
        }
    }
}

impl std::fmt::Debug for SignalHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalHub")
            .field("clients", &self.registry.lock().clients.len())
            .field("filtered", &self.filter.is_some())
            .finish()
    }
}

/// A client's way into the hub.
pub(crate) struct HubLink {
    hub: SignalHub,
}

impl HubLink {
    /// The message as the hub's filter lets it through (unchanged without a filter).
    pub fn filter(&self, from: PublicKey, to: PublicKey, msg: SignalMessage) -> Option<SignalMessage> {
        match &self.hub.filter {
            Some(filter) => filter(from, to, msg),
            None => Some(msg),
        }
    }

    pub fn send(&self, msg: EncryptedMessage) -> Result<(), SignalError> {
        self.hub.send_raw(msg);
        Ok(())
    }
}

async fn run(
    hub: SignalHub,
    key: PublicKey,
    (mut id, mut queue): (u64, mpsc::Receiver<EncryptedMessage>),
    mut inbound: Inbound,
    state_tx: Arc<watch::Sender<SignalState>>,
    mut closing: watch::Receiver<bool>,
    reconnect: Arc<Notify>,
) {
    let mut replaced = false;
    loop {
        tokio::select! {
            biased;
            _ = Control::closing(&mut closing) => break,
            _ = reconnect.notified() => {
                (id, queue) = hub.register(&key);
                replaced = false;
                state_tx.send_replace(SignalState::Connected);
            }
            received = queue.recv(), if !replaced => match received {
                Some(msg) => inbound.handle(msg),
                None => {
                    tracing::debug!(key = %key, "replaced in the hub by a newer client with our key");
                    state_tx.send_replace(SignalState::Replaced);
                    replaced = true;
                }
            },
        }
    }
    hub.deregister(&key, id);
    state_tx.send_replace(SignalState::Closed);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// In-process channels: a timeout is a bug, not a slow machine.
    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn the_filter_rewrites_and_drops_plain_messages_before_delivery() {
        let filter: HubFilter = Arc::new(|_from, _to, msg| match msg {
            SignalMessage::Candidate(c) => Some(SignalMessage::Candidate(
                c.replace("10.0.0.1 4000", "127.0.0.1 5000"),
            )),
            SignalMessage::GoIdle => None,
            other => Some(other),
        });
        let hub = SignalHub::with_filter(filter);
        let (a, _a_rx) = hub.connect(PrivateKey::generate());
        let (b, mut b_rx) = hub.connect(PrivateKey::generate());
        let candidate = "1 1 udp 2130706431 10.0.0.1 4000 typ host";

        let sent_idle = a.send(b.public_key(), SignalMessage::GoIdle).await;
        let sent_candidate = a
            .send(b.public_key(), SignalMessage::Candidate(candidate.into()))
            .await;
        let first = tokio::time::timeout(WAIT, b_rx.recv()).await;

        assert!(sent_idle.is_ok() && sent_candidate.is_ok());
        let Ok(Some((from, msg))) = first else {
            panic!("nothing delivered within {WAIT:?}: {first:?}");
        };
        assert_eq!(from, a.public_key());
        assert_eq!(
            msg,
            SignalMessage::Candidate("1 1 udp 2130706431 127.0.0.1 5000 typ host".into()),
            "GoIdle must have been dropped and the candidate rewritten"
        );
    }
}
