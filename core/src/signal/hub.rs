//! An in-process signal server: clients in one process exchange sealed messages over channels,
//! through the same sealing and the same receive checks as the gRPC client. For the demo and
//! for tests that need signal without a server.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify};

use super::inbound::Inbound;
use super::proto::EncryptedMessage;
use super::{Control, Incoming, Parts, SignalError, SignalHandle, SignalState, Transport};
use crate::keys::{PrivateKey, PublicKey};

/// Messages queued towards one hub client before the hub drops more, as a server drops what
/// it cannot forward: twice a burst of offers and candidates from a few dozen peers.
pub const HUB_QUEUE: usize = 256;

/// The hub. Cheap to clone; clones share the registry.
#[derive(Clone, Default)]
pub struct SignalHub {
    registry: Arc<Mutex<Registry>>,
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
            .finish()
    }
}

/// A client's way into the hub.
pub(crate) struct HubLink {
    hub: SignalHub,
}

impl HubLink {
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
