//! What happens to every message the server (or the in-process hub) delivers: size check,
//! sender key, open, decode, parse, hand up. Anything wrong is dropped and counted; a flood of
//! bad input costs one debug line per [`LOG_INTERVAL`], never one per message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message as _;
use tokio::sync::mpsc;

use super::message::SignalMessage;
use super::proto::{Body, EncryptedMessage};
use super::seal;
use super::Incoming;
use crate::clock::Instant;
use crate::keys::{PrivateKey, PublicKey};

/// Largest sealed body accepted. The largest legitimate body is an offer: about 50 bytes of
/// credentials, a version, a relay URL and 40 bytes of nonce and tag, well under 1 KiB;
/// 8 KiB leaves room for long host names and new fields while a 1 MiB flood is refused
/// before any crypto runs.
pub const MAX_BODY_LEN: usize = 8 * 1024;
/// At most one debug line about dropped input per this interval (plus a count of the rest).
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What the client did with what it received, since it started. Monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalCounters {
    /// Messages read from the server (or hub), good or bad.
    pub received: u64,
    /// Messages handed to the receiver.
    pub delivered: u64,
    /// HEARTBEATs consumed: our own watchdog probes coming back, and any from peers (NetBird
    /// ignores those too).
    pub heartbeats: u64,
    /// Dropped: body larger than [`MAX_BODY_LEN`].
    pub dropped_oversized: u64,
    /// Dropped: sender key not base64 or not 32 bytes.
    pub dropped_bad_sender: u64,
    /// Dropped: body did not open (wrong key, tampered, too short).
    pub dropped_unopenable: u64,
    /// Dropped: opened, but not a protobuf `Body`.
    pub dropped_bad_protobuf: u64,
    /// Dropped: a `Body` we do not understand (unknown type, malformed offer or candidate).
    pub dropped_bad_message: u64,
    /// Dropped: the receiver was full (the engine is not reading).
    pub dropped_receiver_full: u64,
    /// Messages the server (or hub) accepted from us.
    pub sent: u64,
    /// Sends that failed after every retry.
    pub send_failures: u64,
    /// Times the stream was established (registered with the server).
    pub registrations: u64,
}

impl SignalCounters {
    pub fn dropped(&self) -> u64 {
        self.dropped_oversized
            + self.dropped_bad_sender
            + self.dropped_unopenable
            + self.dropped_bad_protobuf
            + self.dropped_bad_message
            + self.dropped_receiver_full
    }
}

/// The live counters behind [`SignalCounters`], shared by the client's tasks.
#[derive(Debug, Default)]
pub(crate) struct CounterCells {
    received: AtomicU64,
    delivered: AtomicU64,
    heartbeats: AtomicU64,
    dropped_oversized: AtomicU64,
    dropped_bad_sender: AtomicU64,
    dropped_unopenable: AtomicU64,
    dropped_bad_protobuf: AtomicU64,
    dropped_bad_message: AtomicU64,
    dropped_receiver_full: AtomicU64,
    pub sent: AtomicU64,
    pub send_failures: AtomicU64,
    pub registrations: AtomicU64,
}

impl CounterCells {
    pub fn snapshot(&self) -> SignalCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SignalCounters {
            received: get(&self.received),
            delivered: get(&self.delivered),
            heartbeats: get(&self.heartbeats),
            dropped_oversized: get(&self.dropped_oversized),
            dropped_bad_sender: get(&self.dropped_bad_sender),
            dropped_unopenable: get(&self.dropped_unopenable),
            dropped_bad_protobuf: get(&self.dropped_bad_protobuf),
            dropped_bad_message: get(&self.dropped_bad_message),
            dropped_receiver_full: get(&self.dropped_receiver_full),
            sent: get(&self.sent),
            send_failures: get(&self.send_failures),
            registrations: get(&self.registrations),
        }
    }

    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why one message was dropped; for the rate-limited log line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DropReason {
    Oversized(usize),
    BadSender,
    Unopenable(seal::OpenError),
    BadProtobuf,
    BadMessage(super::message::MessageError),
    ReceiverFull,
}

/// Turns received [`EncryptedMessage`]s into [`Incoming`] messages for one client.
pub(crate) struct Inbound {
    own_private: PrivateKey,
    own_public: PublicKey,
    counters: std::sync::Arc<CounterCells>,
    deliver: mpsc::Sender<Incoming>,
    log: LogLimiter,
}

impl Inbound {
    pub fn new(
        own_private: PrivateKey,
        counters: std::sync::Arc<CounterCells>,
        deliver: mpsc::Sender<Incoming>,
    ) -> Self {
        let own_public = own_private.public_key();
        Self {
            own_private,
            own_public,
            counters,
            deliver,
            log: LogLimiter::default(),
        }
    }

    /// Handles one message. Never fails: bad input is counted and dropped.
    pub fn handle(&mut self, msg: EncryptedMessage) {
        CounterCells::bump(&self.counters.received);
        let outcome = self.process(&msg);
        let Err(reason) = outcome else { return };
        let cell = match &reason {
            DropReason::Oversized(_) => &self.counters.dropped_oversized,
            DropReason::BadSender => &self.counters.dropped_bad_sender,
            DropReason::Unopenable(_) => &self.counters.dropped_unopenable,
            DropReason::BadProtobuf => &self.counters.dropped_bad_protobuf,
            DropReason::BadMessage(_) => &self.counters.dropped_bad_message,
            DropReason::ReceiverFull => &self.counters.dropped_receiver_full,
        };
        CounterCells::bump(cell);
        if let Some(suppressed) = self.log.allow(Instant::now()) {
            // The sender key is logged only when it parsed, shortened by PublicKey's Display.
            let from = PublicKey::from_base64(&msg.key).ok();
            tracing::debug!(from = ?from, reason = ?reason, suppressed, "signal message dropped");
        }
    }

    fn process(&mut self, msg: &EncryptedMessage) -> Result<(), DropReason> {
        if msg.body.len() > MAX_BODY_LEN {
            return Err(DropReason::Oversized(msg.body.len()));
        }
        let from = PublicKey::from_base64(&msg.key).map_err(|_| DropReason::BadSender)?;
        let plain = seal::open(&self.own_private, &from, &msg.body).map_err(DropReason::Unopenable)?;
        let body = Body::decode(plain.as_slice()).map_err(|_| DropReason::BadProtobuf)?;
        let message = SignalMessage::from_body(body).map_err(DropReason::BadMessage)?;
        if message == SignalMessage::Heartbeat {
            CounterCells::bump(&self.counters.heartbeats);
            if from != self.own_public {
                tracing::trace!(from = %from, "heartbeat from a peer ignored");
            }
            return Ok(());
        }
        tracing::trace!(from = %from, kind = message.kind(), "signal message received");
        let slot = self.deliver.try_reserve().map_err(|_| DropReason::ReceiverFull)?;
        // Counted before the receiver can see it, so a reader never finds the count behind.
        CounterCells::bump(&self.counters.delivered);
        slot.send((from, message));
        Ok(())
    }
}

/// Allows one log line per [`LOG_INTERVAL`] and counts the ones it held back.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    next: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// `Some(n)`: log now, mentioning `n` lines held back since the last one. `None`: stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.next = Some(now + LOG_INTERVAL);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::message::{IceCredentials, OfferAnswer};
    use crate::signal::proto::BodyType;
    use std::sync::Arc;

    struct Rig {
        inbound: Inbound,
        rx: mpsc::Receiver<Incoming>,
        counters: Arc<CounterCells>,
        me: PrivateKey,
        peer: PrivateKey,
    }

    fn rig(capacity: usize) -> Rig {
        let me = PrivateKey::generate();
        let counters = Arc::new(CounterCells::default());
        let (tx, rx) = mpsc::channel(capacity);
        Rig {
            inbound: Inbound::new(me.clone(), counters.clone(), tx),
            rx,
            counters,
            me,
            peer: PrivateKey::generate(),
        }
    }

    fn sealed(from: &PrivateKey, to: &PrivateKey, body: &[u8]) -> EncryptedMessage {
        EncryptedMessage {
            key: from.public_key().to_base64(),
            remote_key: to.public_key().to_base64(),
            body: seal::seal(from, &to.public_key(), body),
        }
    }

    fn offer_body() -> Vec<u8> {
        let offer = OfferAnswer {
            ice: Some(IceCredentials::generate()),
            wg_listen_port: 1,
            version: "t".into(),
            relay_server_address: None,
            relay_server_ip: None,
            session_id: None,
        };
        SignalMessage::Offer(offer).to_body().encode_to_vec()
    }

    #[test]
    fn a_good_message_is_delivered_with_its_sender() {
        let mut r = rig(4);
        r.inbound.handle(sealed(&r.peer, &r.me, &offer_body()));
        let (from, msg) = r.rx.try_recv().unwrap();
        assert_eq!(from, r.peer.public_key());
        assert!(matches!(msg, SignalMessage::Offer(_)));
        assert_eq!(r.counters.snapshot().delivered, 1);
    }

    #[test]
    fn bad_input_is_dropped_and_counted_by_reason() {
        let mut r = rig(4);
        let good = sealed(&r.peer, &r.me, &offer_body());
        let garbage_proto = sealed(&r.peer, &r.me, &[0xff, 0xff, 0xff]);
        let bad_offer = Body {
            r#type: BodyType::Offer as i32,
            payload: "x".into(),
            ..Body::default()
        };
        let bad_offer = sealed(&r.peer, &r.me, &bad_offer.encode_to_vec());
        let inputs = [
            EncryptedMessage {
                body: vec![0; 1 << 20],
                ..good.clone()
            },
            EncryptedMessage {
                key: "not base64!".into(),
                ..good.clone()
            },
            EncryptedMessage {
                key: "AAAA".into(),
                ..good.clone()
            },
            EncryptedMessage {
                body: vec![7; 100],
                ..good.clone()
            },
            sealed(&PrivateKey::generate(), &PrivateKey::generate(), &offer_body()),
            garbage_proto,
            bad_offer,
        ];
        for m in inputs {
            r.inbound.handle(m);
        }
        let c = r.counters.snapshot();
        assert_eq!(
            (
                c.dropped_oversized,
                c.dropped_bad_sender,
                c.dropped_unopenable,
                c.dropped_bad_protobuf
            ),
            (1, 2, 2, 1)
        );
        assert_eq!((c.dropped_bad_message, c.received, c.delivered), (1, 7, 0));
        // Still works afterwards.
        r.inbound.handle(good);
        assert!(r.rx.try_recv().is_ok());
    }

    #[test]
    fn heartbeats_are_consumed_not_delivered() {
        let mut r = rig(4);
        let hb = SignalMessage::Heartbeat.to_body().encode_to_vec();
        r.inbound.handle(sealed(&r.me, &r.me, &hb));
        r.inbound.handle(sealed(&r.peer, &r.me, &hb));
        assert!(r.rx.try_recv().is_err());
        assert_eq!(r.counters.snapshot().heartbeats, 2);
    }

    #[test]
    fn a_full_receiver_drops_instead_of_blocking() {
        let mut r = rig(1);
        r.inbound.handle(sealed(&r.peer, &r.me, &offer_body()));
        r.inbound.handle(sealed(&r.peer, &r.me, &offer_body()));
        let c = r.counters.snapshot();
        assert_eq!((c.delivered, c.dropped_receiver_full), (1, 1));
    }

    #[test]
    fn log_limiter_allows_one_line_per_interval_and_counts_the_rest() {
        let t = |ms: u64| Instant::from_epoch(Duration::from_millis(ms));
        let mut l = LogLimiter::default();
        assert_eq!(l.allow(t(0)), Some(0));
        for ms in 1..1000 {
            assert_eq!(l.allow(t(ms)), None);
        }
        assert_eq!(l.allow(t(10_000)), Some(999));
        assert_eq!(l.allow(t(10_001)), None);
    }
}
