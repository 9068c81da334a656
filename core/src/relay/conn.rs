//! One relay connection's shared state: its peers, its queues to the writer, and what each
//! received message does. Synchronous; the reader and writer tasks (`io.rs`) drive it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};

use super::counters::RelayCounters;
use super::events::{DisconnectReason, PathCloseReason, RelayEvent};
use super::held::{HeldPackets, Hold};
use super::messages::{
    decode_server, encode_health_check, encode_peer_list, encode_transport_into, EncodeError, PeerId,
    PeerIds, PeerListKind, ServerMessage,
};
use super::url::RelayUrl;
use crate::clock::Instant;
use crate::keys::PublicKey;
use crate::path::{Inbound, PathId};

/// Outgoing Transport messages waiting for the writer, per connection. About 3 ms of traffic at
/// 1 Gbit/s in 1420-byte packets; the kernel's TCP send buffer queues the rest. A full queue
/// drops the datagram (`PathError::Congested`), as a full UDP socket buffer would. Memory bound:
/// 256 × 1.5 KiB typical, 256 × 8.8 KiB at most.
pub const DATA_QUEUE: usize = 256;
/// Control messages (subscribe, unsubscribe, health echo) waiting for the writer. They are rare
/// and sent before data; 64 covers a burst of path changes. Subscribes wait for room, echoes and
/// unsubscribes are dropped (and counted) when it is full.
pub const CONTROL_QUEUE: usize = 64;
/// Bytes the shared Transport encoder reserves at a time. Messages are carved out of it without
/// an allocation each; a chunk is freed when the writer has sent every message cut from it.
const ENCODER_CHUNK: usize = 64 * 1024;

/// State shared by a connection's handle, its paths and its tasks.
pub(super) struct Conn {
    pub server: RelayUrl,
    pub instance_url: String,
    pub data_tx: mpsc::Sender<Bytes>,
    pub control_tx: mpsc::Sender<Bytes>,
    encoder: Mutex<BytesMut>,
    peers: Mutex<Peers>,
    pub counters: Arc<RelayCounters>,
    events: broadcast::Sender<RelayEvent>,
    /// `Some` once the connection has ended, with why.
    pub ended: watch::Sender<Option<DisconnectReason>>,
}

#[derive(Default)]
struct Peers {
    slots: HashMap<PeerId, Slot>,
    held: HeldPackets,
}

/// One opened (or opening) peer.
struct Slot {
    key: PublicKey,
    id: PathId,
    sink: mpsc::Sender<Inbound>,
    /// `Some` while waiting for the relay to report the peer online.
    online: Option<oneshot::Sender<()>>,
    state: Arc<PathState>,
}

/// A path's closed flag, shared by the path and its slot.
#[derive(Debug, Default)]
pub(super) struct PathState {
    closed: AtomicBool,
    notify: Notify,
}

impl PathState {
    /// Marks it closed; true the first time.
    pub fn close(&self) -> bool {
        let first = !self.closed.swap(true, Ordering::AcqRel);
        if first {
            self.notify.notify_waiters();
        }
        first
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub async fn closed(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_closed() {
            return;
        }
        notified.await;
    }
}

/// What an opening peer waits on.
pub(super) struct Opening {
    pub online: oneshot::Receiver<()>,
    pub state: Arc<PathState>,
}

/// Why a peer could not be registered.
pub(super) enum RegisterError {
    Ended,
    AlreadyOpen,
}

impl Conn {
    pub fn new(
        server: RelayUrl,
        instance_url: String,
        counters: Arc<RelayCounters>,
        events: broadcast::Sender<RelayEvent>,
    ) -> (Arc<Self>, mpsc::Receiver<Bytes>, mpsc::Receiver<Bytes>) {
        let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let conn = Arc::new(Self {
            server,
            instance_url,
            data_tx,
            control_tx,
            encoder: Mutex::new(BytesMut::new()),
            peers: Mutex::new(Peers::default()),
            counters,
            events,
            ended: watch::Sender::new(None),
        });
        (conn, control_rx, data_rx)
    }

    pub fn is_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }

    pub fn end_reason(&self) -> Option<DisconnectReason> {
        self.ended.borrow().clone()
    }

    pub fn peer_count(&self) -> usize {
        self.peers.lock().slots.len()
    }

    /// Registers `key` as opening under path `id`, handing any held packet from it to `sink`.
    pub fn register(
        &self,
        key: PublicKey,
        id: PathId,
        sink: mpsc::Sender<Inbound>,
        now: Instant,
    ) -> Result<Opening, RegisterError> {
        let dest = PeerId::of(&key);
        let mut peers = self.peers.lock();
        // Checked under the lock that `end` takes after setting the reason: either we see the
        // end here, or `end` finds our slot and drops its waiter.
        if self.is_ended() {
            return Err(RegisterError::Ended);
        }
        if peers.slots.contains_key(&dest) {
            return Err(RegisterError::AlreadyOpen);
        }
        if let Some(datagram) = peers.held.take(&dest, now) {
            self.counters.held_delivered();
            if sink
                .try_send(Inbound {
                    peer: key,
                    path: id,
                    datagram,
                })
                .is_err()
            {
                self.counters.inbound_dropped();
            }
        }
        let (online_tx, online) = oneshot::channel();
        let state = Arc::new(PathState::default());
        peers.slots.insert(
            dest,
            Slot {
                key,
                id,
                sink,
                online: Some(online_tx),
                state: state.clone(),
            },
        );
        Ok(Opening { online, state })
    }

    /// Forgets `key`'s slot if it is still path `id`'s, and unsubscribes. True if it was.
    pub fn release(&self, key: &PublicKey, id: PathId) -> bool {
        let dest = PeerId::of(key);
        let removed = {
            let mut peers = self.peers.lock();
            match peers.slots.get(&dest) {
                Some(slot) if slot.id == id => peers.slots.remove(&dest),
                Some(_) | None => None,
            }
        };
        let Some(slot) = removed else { return false };
        slot.state.close();
        self.send_control_list(PeerListKind::Unsubscribe, &[dest]);
        true
    }

    /// Encodes a Transport message to `dest` into the shared encoder and queues it.
    pub fn queue_transport(&self, dest: &PeerId, payload: &[u8]) -> Result<(), QueueError> {
        let msg = {
            let mut enc = self.encoder.lock();
            if enc.capacity() - enc.len() < super::messages::TRANSPORT_HEADER_LEN + payload.len() {
                enc.reserve(ENCODER_CHUNK);
            }
            encode_transport_into(&mut enc, dest, payload).map_err(QueueError::Encode)?;
            enc.split().freeze()
        };
        match self.data_tx.try_send(msg) {
            Ok(()) => {
                self.counters.transport_out(payload.len());
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.congested();
                Err(QueueError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(QueueError::Closed),
        }
    }

    /// Queues control messages without waiting; counts what does not fit.
    pub fn send_control_list(&self, kind: PeerListKind, ids: &[PeerId]) {
        for msg in encode_peer_list(kind, ids) {
            if self.control_tx.try_send(msg).is_err() {
                self.counters.control_dropped();
            }
        }
    }

    /// Handles one message from the server. Returns why the connection must end, if it must.
    pub fn on_message(&self, msg: &Bytes, now: Instant) -> Option<DisconnectReason> {
        let decoded = match decode_server(msg) {
            Ok(m) => m,
            Err(e) => {
                self.counters.refused(&e);
                tracing::debug!(server = %self.server, len = msg.len(), error = %e, "relay message refused");
                return None;
            }
        };
        match decoded {
            ServerMessage::Transport { from, payload } => self.on_transport(msg, from, payload, now),
            ServerMessage::HealthCheck => {
                self.counters.health_check();
                if self.control_tx.try_send(encode_health_check()).is_err() {
                    self.counters.control_dropped();
                }
            }
            ServerMessage::Close => return Some(DisconnectReason::ServerClose),
            ServerMessage::AuthResponse { .. } => {
                self.counters.unexpected_auth_response();
                tracing::debug!(server = %self.server, "auth response after the handshake ignored");
            }
            ServerMessage::PeersOnline(ids) => self.on_peers_online(ids),
            ServerMessage::PeersWentOffline(ids) => self.on_peers_offline(ids),
        }
        None
    }

    fn on_transport(&self, msg: &Bytes, from: PeerId, payload: &[u8], now: Instant) {
        self.counters.transport_in(payload.len());
        let mut peers = self.peers.lock();
        if let Some(slot) = peers.slots.get(&from) {
            let inbound = Inbound {
                peer: slot.key,
                path: slot.id,
                datagram: msg.slice_ref(payload),
            };
            if slot.sink.try_send(inbound).is_err() {
                self.counters.inbound_dropped();
            }
            return;
        }
        let hold = peers.held.hold(from, payload, now);
        drop(peers);
        match hold {
            Hold::Held => {
                self.counters.held();
                self.emit(RelayEvent::PeerWaiting {
                    server: self.server.to_string(),
                    peer: from,
                });
            }
            Hold::Replaced => self.counters.held(),
            Hold::Refused => self.counters.held_refused(),
        }
        tracing::trace!(server = %self.server, %from, "packet from a peer not opened yet held");
    }

    fn on_peers_online(&self, ids: PeerIds<'_>) {
        let mut peers = self.peers.lock();
        for id in ids.iter() {
            let Some(slot) = peers.slots.get_mut(&id) else {
                continue;
            };
            if let Some(waiter) = slot.online.take() {
                let _ = waiter.send(());
            }
        }
    }

    fn on_peers_offline(&self, ids: PeerIds<'_>) {
        let gone: Vec<(PeerId, Slot)> = {
            let mut peers = self.peers.lock();
            ids.iter()
                .filter_map(|id| peers.slots.remove(&id).map(|s| (id, s)))
                .collect()
        };
        if gone.is_empty() {
            return;
        }
        let ids: Vec<PeerId> = gone.iter().map(|(id, _)| *id).collect();
        self.send_control_list(PeerListKind::Unsubscribe, &ids);
        for (_, slot) in gone {
            tracing::info!(server = %self.server, peer = %slot.key, "relay reports peer offline");
            let was_open = slot.online.is_none();
            slot.state.close();
            self.emit(RelayEvent::PeerOffline {
                server: self.server.to_string(),
                peer: slot.key,
            });
            if was_open {
                self.emit_path_closed(slot.key, slot.id, PathCloseReason::PeerOffline);
            }
        }
    }

    /// Ends the connection for `reason` (the first reason wins): closes every path, drops every
    /// waiter and held packet, and tells the tasks and the user.
    pub fn end(&self, reason: DisconnectReason) {
        let first = self.ended.send_if_modified(|r| match r {
            Some(_) => false,
            None => {
                *r = Some(reason.clone());
                true
            }
        });
        if !first {
            return;
        }
        let slots = {
            let mut peers = self.peers.lock();
            peers.held.clear();
            std::mem::take(&mut peers.slots)
        };
        for (_, slot) in slots {
            let was_open = slot.online.is_none();
            slot.state.close();
            if was_open {
                self.emit_path_closed(slot.key, slot.id, PathCloseReason::Disconnected);
            }
        }
        tracing::info!(server = %self.server, %reason, "relay connection ended");
        self.emit(RelayEvent::Disconnected {
            server: self.server.to_string(),
            reason,
        });
    }

    pub fn emit_path_closed(&self, peer: PublicKey, id: PathId, reason: PathCloseReason) {
        tracing::debug!(server = %self.server, %peer, path = id.0, ?reason, "relay path closed");
        self.emit(RelayEvent::PathClosed {
            server: self.server.to_string(),
            peer,
            id,
            reason,
        });
    }

    pub fn emit(&self, event: RelayEvent) {
        // No subscriber is fine: events are informative, paths report their own state.
        let _ = self.events.send(event);
    }
}

/// Why a Transport message was not queued.
#[derive(Debug)]
pub(super) enum QueueError {
    Encode(EncodeError),
    Full,
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::messages::{encode_transport, PeerListKind};
    use std::time::Duration;

    struct Fixture {
        conn: Arc<Conn>,
        control: mpsc::Receiver<Bytes>,
        _data: mpsc::Receiver<Bytes>,
        events: broadcast::Receiver<RelayEvent>,
    }

    fn fixture() -> Fixture {
        let (events_tx, events) = broadcast::channel(64);
        let (conn, control, data) = Conn::new(
            "rel://127.0.0.1:1".parse().unwrap(),
            "rel://x:1".into(),
            Default::default(),
            events_tx,
        );
        Fixture {
            conn,
            control,
            _data: data,
            events,
        }
    }

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn t(ms: u64) -> Instant {
        Instant::from_epoch(Duration::from_millis(ms))
    }

    fn online(n: u8) -> Bytes {
        encode_peer_list(PeerListKind::Online, &[PeerId::of(&key(n))]).remove(0)
    }

    fn offline(n: u8) -> Bytes {
        encode_peer_list(PeerListKind::WentOffline, &[PeerId::of(&key(n))]).remove(0)
    }

    fn from(n: u8, payload: &[u8]) -> Bytes {
        encode_transport(&PeerId::of(&key(n)), payload).unwrap()
    }

    #[test]
    fn transport_reaches_the_opened_peer_tagged_with_its_path() {
        let f = fixture();
        let (sink, mut rx) = mpsc::channel(8);
        let mut opening = f.conn.register(key(1), PathId(7), sink, t(0)).ok().unwrap();
        f.conn.on_message(&online(1), t(0));
        assert!(opening.online.try_recv().is_ok());
        f.conn.on_message(&from(1, b"wg"), t(1));
        let got = rx.try_recv().unwrap();
        assert_eq!(
            (got.peer, got.path, &got.datagram[..]),
            (key(1), PathId(7), &b"wg"[..])
        );
    }

    #[test]
    fn a_packet_before_open_is_held_and_handed_over() {
        let f = fixture();
        f.conn.on_message(&from(2, b"init"), t(0));
        let (sink, mut rx) = mpsc::channel(8);
        let _opening = f.conn.register(key(2), PathId(1), sink, t(4000)).ok().unwrap();
        assert_eq!(&rx.try_recv().unwrap().datagram[..], b"init");
        let c = f.conn.counters.snapshot();
        assert_eq!((c.held, c.held_delivered), (1, 1));
    }

    #[test]
    fn health_check_is_echoed() {
        let mut f = fixture();
        f.conn.on_message(&Bytes::from_static(&[1, 5]), t(0));
        assert_eq!(&f.control.try_recv().unwrap()[..], &[1, 5]);
        assert_eq!(f.conn.counters.snapshot().health_checks, 1);
    }

    #[test]
    fn bad_input_is_counted_and_changes_nothing() {
        let f = fixture();
        let (sink, mut rx) = mpsc::channel(8);
        let _o = f.conn.register(key(1), PathId(1), sink, t(0)).ok().unwrap();
        let mut partial = online(1).to_vec();
        partial.pop();
        for bad in [
            vec![1],
            vec![2, 3],
            vec![1, 1],
            vec![1, 99],
            vec![1, 3, 1, 2],
            vec![1, 8],
            partial,
            {
                let mut big = from(1, &[0; 8782]).to_vec();
                big.push(0);
                big
            },
        ] {
            assert_eq!(f.conn.on_message(&Bytes::from(bad), t(0)), None);
        }
        let c = f.conn.counters.snapshot();
        assert_eq!(
            (
                c.truncated,
                c.bad_version,
                c.retired_type,
                c.unknown_type,
                c.short_transport
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(
            (
                c.wrong_direction,
                c.partial_peer_id,
                c.oversize,
                c.refused_input()
            ),
            (1, 1, 1, 8)
        );
        assert!(rx.try_recv().is_err());
        assert_eq!(f.conn.peer_count(), 1);
        f.conn.on_message(&from(1, b"still works"), t(0));
        assert_eq!(&rx.try_recv().unwrap().datagram[..], b"still works");
    }

    #[test]
    fn close_message_ends_the_connection() {
        let f = fixture();
        assert_eq!(
            f.conn.on_message(&Bytes::from_static(&[1, 4]), t(0)),
            Some(DisconnectReason::ServerClose)
        );
    }

    #[test]
    fn peer_offline_closes_its_path_and_unsubscribes() {
        let mut f = fixture();
        let (sink, _rx) = mpsc::channel(8);
        let opening = f.conn.register(key(3), PathId(9), sink, t(0)).ok().unwrap();
        f.conn.on_message(&online(3), t(0));
        f.conn.on_message(&offline(3), t(1));
        assert!(opening.state.is_closed());
        assert_eq!(f.conn.peer_count(), 0);
        let unsub = f.control.try_recv().unwrap();
        assert_eq!(unsub[1], 9);
        assert_eq!(&unsub[2..], PeerId::of(&key(3)).as_bytes());
        assert!(
            matches!(f.events.try_recv().unwrap(), RelayEvent::PeerOffline { peer, .. } if peer == key(3))
        );
        assert!(matches!(
            f.events.try_recv().unwrap(),
            RelayEvent::PathClosed {
                id: PathId(9),
                reason: PathCloseReason::PeerOffline,
                ..
            }
        ));
    }

    #[test]
    fn offline_while_waiting_fails_the_open_without_a_path_event() {
        let mut f = fixture();
        let (sink, _rx) = mpsc::channel(8);
        let mut opening = f.conn.register(key(3), PathId(9), sink, t(0)).ok().unwrap();
        f.conn.on_message(&offline(3), t(1));
        assert!(opening.online.try_recv().is_err());
        assert!(matches!(
            f.events.try_recv().unwrap(),
            RelayEvent::PeerOffline { .. }
        ));
        assert!(f.events.try_recv().is_err());
    }

    #[test]
    fn end_closes_every_path_once_and_refuses_new_ones() {
        let mut f = fixture();
        let (sink, _rx) = mpsc::channel(8);
        let a = f
            .conn
            .register(key(1), PathId(1), sink.clone(), t(0))
            .ok()
            .unwrap();
        f.conn.on_message(&online(1), t(0));
        f.conn.end(DisconnectReason::HealthCheckTimeout);
        f.conn.end(DisconnectReason::ClosedLocally);
        assert!(a.state.is_closed());
        assert_eq!(f.conn.end_reason(), Some(DisconnectReason::HealthCheckTimeout));
        assert!(matches!(
            f.events.try_recv().unwrap(),
            RelayEvent::PathClosed { id: PathId(1), .. }
        ));
        assert!(matches!(
            f.events.try_recv().unwrap(),
            RelayEvent::Disconnected {
                reason: DisconnectReason::HealthCheckTimeout,
                ..
            }
        ));
        assert!(f.events.try_recv().is_err());
        assert!(matches!(
            f.conn.register(key(2), PathId(2), sink, t(0)),
            Err(RegisterError::Ended)
        ));
    }

    #[test]
    fn a_full_sink_drops_and_counts() {
        let f = fixture();
        let (sink, _rx) = mpsc::channel(1);
        let _o = f.conn.register(key(1), PathId(1), sink, t(0)).ok().unwrap();
        f.conn.on_message(&from(1, b"a"), t(0));
        f.conn.on_message(&from(1, b"b"), t(0));
        assert_eq!(f.conn.counters.snapshot().inbound_dropped, 1);
    }

    #[test]
    fn queued_transport_carries_the_destination_id() {
        let (events_tx, _) = broadcast::channel(4);
        let (conn, _control, mut data) = Conn::new(
            "rel://127.0.0.1:1".parse().unwrap(),
            "rel://x:1".into(),
            Default::default(),
            events_tx,
        );
        let dest = PeerId::of(&key(5));
        for n in 0..3u8 {
            conn.queue_transport(&dest, &[n; 100]).unwrap();
        }
        for n in 0..3u8 {
            let m = data.try_recv().unwrap();
            assert_eq!(m.len(), 138);
            assert_eq!(&m[2..38], dest.as_bytes());
            assert_eq!(m[38], n);
        }
    }
}
