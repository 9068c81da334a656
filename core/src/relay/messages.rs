//! NetBird's relay messages, byte for byte (`shared/relay/messages` in NetBird v0.77.1).
//!
//! Every message is one binary WebSocket message: `[version = 1][type][body]`.
//!
//! | type | name                 | body                                   | sent by |
//! |------|----------------------|----------------------------------------|---------|
//! | 3    | Transport            | 36-byte peer id, payload               | both    |
//! | 4    | Close                | —                                      | both    |
//! | 5    | HealthCheck          | —                                      | both    |
//! | 6    | Auth                 | magic `21 12 A4 42`, own id, token     | client  |
//! | 7    | AuthResponse         | instance URL, UTF-8, at least 1 byte   | server  |
//! | 8    | SubscribePeerState   | N × 36-byte ids                        | client  |
//! | 9    | UnsubscribePeerState | N × 36-byte ids                        | client  |
//! | 10   | PeersOnline          | N × 36-byte ids                        | server  |
//! | 11   | PeersWentOffline     | N × 36-byte ids                        | server  |
//!
//! Types 1 and 2 (the old Hello handshake) are retired: both sides reject them.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::keys::PublicKey;

/// `CurrentProtocolVersion` in NetBird's messages/message.go.
pub const VERSION: u8 = 1;
/// `MaxMessageSize` in NetBird's messages/message.go: the server and NetBird's client read every
/// message into a buffer of this size, header included.
pub const MAX_MESSAGE: usize = 8820;
/// `MaxHandshakeSize` in NetBird's messages/message.go: the whole Auth message, header included.
pub const MAX_AUTH_MESSAGE: usize = 212;
/// `MaxHandshakeRespSize` in NetBird's messages/message.go.
pub const MAX_AUTH_RESPONSE: usize = 8192;
/// `peerIDSize` in NetBird's messages/id.go: "sha-" + a SHA-256 digest.
pub const PEER_ID_LEN: usize = 36;
/// Version and type bytes.
pub const HEADER_LEN: usize = 2;
/// Header and destination (or source) id of a Transport message.
pub const TRANSPORT_HEADER_LEN: usize = HEADER_LEN + PEER_ID_LEN;
/// The largest payload one Transport message carries.
pub const MAX_TRANSPORT_PAYLOAD: usize = MAX_MESSAGE - TRANSPORT_HEADER_LEN;
/// `maxPeersPerMessage` in NetBird's messages/peer_state.go: as many ids as fit in one message.
pub const MAX_IDS_PER_MESSAGE: usize = (MAX_MESSAGE - HEADER_LEN) / PEER_ID_LEN;
/// `magicHeader` in NetBird's messages/message.go (the STUN magic cookie).
pub const AUTH_MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// Header, magic and own id of an Auth message.
pub const AUTH_HEADER_LEN: usize = HEADER_LEN + AUTH_MAGIC.len() + PEER_ID_LEN;
/// The longest token an Auth message can carry.
pub const MAX_TOKEN_LEN: usize = MAX_AUTH_MESSAGE - AUTH_HEADER_LEN;

const _: () = assert!(
    MAX_IDS_PER_MESSAGE == 244,
    "NetBird's listener queue and docs say 244"
);
const _: () = assert!(MAX_TOKEN_LEN == 170);
const _: () = assert!(MAX_TRANSPORT_PAYLOAD == 8782);

/// Prefix of every peer id (`prefix` in NetBird's messages/id.go).
const ID_PREFIX: &[u8; 4] = b"sha-";

/// Message types on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgType {
    Transport,
    Close,
    HealthCheck,
    Auth,
    AuthResponse,
    SubscribePeerState,
    UnsubscribePeerState,
    PeersOnline,
    PeersWentOffline,
}

impl MsgType {
    pub const fn to_byte(self) -> u8 {
        match self {
            MsgType::Transport => 3,
            MsgType::Close => 4,
            MsgType::HealthCheck => 5,
            MsgType::Auth => 6,
            MsgType::AuthResponse => 7,
            MsgType::SubscribePeerState => 8,
            MsgType::UnsubscribePeerState => 9,
            MsgType::PeersOnline => 10,
            MsgType::PeersWentOffline => 11,
        }
    }

    /// The type of a type byte. Retired (1, 2) and unknown bytes are errors.
    pub fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 | 2 => Err(DecodeError::RetiredType(b)),
            3 => Ok(MsgType::Transport),
            4 => Ok(MsgType::Close),
            5 => Ok(MsgType::HealthCheck),
            6 => Ok(MsgType::Auth),
            7 => Ok(MsgType::AuthResponse),
            8 => Ok(MsgType::SubscribePeerState),
            9 => Ok(MsgType::UnsubscribePeerState),
            10 => Ok(MsgType::PeersOnline),
            11 => Ok(MsgType::PeersWentOffline),
            other => Err(DecodeError::UnknownType(other)),
        }
    }
}

/// A peer's id on the relay: `"sha-"` + SHA-256 of its base64 public key string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId([u8; PEER_ID_LEN]);

impl PeerId {
    pub fn of(key: &PublicKey) -> Self {
        let digest = Sha256::digest(key.to_base64().as_bytes());
        let mut id = [0u8; PEER_ID_LEN];
        let (prefix, hash) = id.split_at_mut(ID_PREFIX.len());
        prefix.copy_from_slice(ID_PREFIX);
        hash.copy_from_slice(&digest);
        Self(id)
    }

    /// An id exactly as it appears on the wire (the prefix is not checked: the server forwards
    /// whatever 36 bytes a client sent).
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; PEER_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for PeerId {
    /// As NetBird logs it: the prefix, then the digest in base64.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, hash) = self.0.split_at(ID_PREFIX.len());
        write!(f, "{}{}", String::from_utf8_lossy(prefix), STANDARD.encode(hash))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// Why a received message was refused. Each is counted and the message dropped; none ends the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{len}-byte message is shorter than the 2-byte header")]
    Truncated { len: usize },
    #[error("protocol version {0}, only 1 is spoken")]
    Version(u8),
    #[error("retired message type {0}")]
    RetiredType(u8),
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("{len}-byte message exceeds the relay maximum of 8820")]
    Oversize { len: usize },
    #[error("{0:?} is never sent in this direction")]
    WrongDirection(MsgType),
    #[error("{len}-byte transport message has no room for a 36-byte peer id")]
    ShortTransport { len: usize },
    #[error("peer list of {len} bytes is not a whole number of 36-byte ids")]
    PartialPeerId { len: usize },
    #[error("auth message of {len} bytes has no room for magic and peer id")]
    ShortAuth { len: usize },
    #[error("auth message without the magic cookie")]
    BadMagic,
    #[error("auth response without an instance URL")]
    EmptyAuthResponse,
    #[error("auth response URL is not UTF-8")]
    AuthResponseNotUtf8,
    #[error("{len}-byte {kind:?} message; it has no body")]
    TrailingBytes { kind: MsgType, len: usize },
}

/// Why a message could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("token of {len} bytes; an auth message carries at most {max}", max = MAX_TOKEN_LEN)]
    TokenTooLong { len: usize },
    #[error("payload of {len} bytes; a relay message carries at most {max}", max = MAX_TRANSPORT_PAYLOAD)]
    PayloadTooLong { len: usize },
}

/// A list of peer ids inside a received message, validated to be whole ids.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PeerIds<'a>(&'a [u8]);

impl<'a> PeerIds<'a> {
    fn parse(body: &'a [u8]) -> Result<Self, DecodeError> {
        if body.len() % PEER_ID_LEN != 0 {
            return Err(DecodeError::PartialPeerId { len: body.len() });
        }
        Ok(Self(body))
    }

    pub fn len(&self) -> usize {
        self.0.len() / PEER_ID_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = PeerId> + 'a {
        self.0.chunks_exact(PEER_ID_LEN).filter_map(PeerId::from_wire)
    }
}

impl fmt::Debug for PeerIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A message the server sends, borrowing from the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    /// Data from peer `from` (the server wrote the sender's id over our destination id).
    Transport {
        from: PeerId,
        payload: &'a [u8],
    },
    Close,
    HealthCheck,
    AuthResponse {
        instance_url: &'a str,
    },
    PeersOnline(PeerIds<'a>),
    PeersWentOffline(PeerIds<'a>),
}

/// A message a client sends, borrowing from the received bytes (for servers and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMessage<'a> {
    /// Data for peer `to`.
    Transport {
        to: PeerId,
        payload: &'a [u8],
    },
    Close,
    HealthCheck,
    Auth {
        id: PeerId,
        token: &'a [u8],
    },
    Subscribe(PeerIds<'a>),
    Unsubscribe(PeerIds<'a>),
}

/// Parses a message from the server.
pub fn decode_server(msg: &[u8]) -> Result<ServerMessage<'_>, DecodeError> {
    let (kind, body) = split_header(msg)?;
    match kind {
        MsgType::Transport => {
            let (from, payload) = transport_body(msg, body)?;
            Ok(ServerMessage::Transport { from, payload })
        }
        MsgType::Close => no_body(kind, msg, body).map(|()| ServerMessage::Close),
        MsgType::HealthCheck => no_body(kind, msg, body).map(|()| ServerMessage::HealthCheck),
        MsgType::AuthResponse => {
            if body.is_empty() {
                return Err(DecodeError::EmptyAuthResponse);
            }
            let instance_url = std::str::from_utf8(body).map_err(|_| DecodeError::AuthResponseNotUtf8)?;
            Ok(ServerMessage::AuthResponse { instance_url })
        }
        MsgType::PeersOnline => Ok(ServerMessage::PeersOnline(PeerIds::parse(body)?)),
        MsgType::PeersWentOffline => Ok(ServerMessage::PeersWentOffline(PeerIds::parse(body)?)),
        MsgType::Auth | MsgType::SubscribePeerState | MsgType::UnsubscribePeerState => {
            Err(DecodeError::WrongDirection(kind))
        }
    }
}

/// Parses a message from a client.
pub fn decode_client(msg: &[u8]) -> Result<ClientMessage<'_>, DecodeError> {
    let (kind, body) = split_header(msg)?;
    match kind {
        MsgType::Transport => {
            let (to, payload) = transport_body(msg, body)?;
            Ok(ClientMessage::Transport { to, payload })
        }
        MsgType::Close => no_body(kind, msg, body).map(|()| ClientMessage::Close),
        MsgType::HealthCheck => no_body(kind, msg, body).map(|()| ClientMessage::HealthCheck),
        MsgType::Auth => {
            let (magic, rest) = body
                .split_at_checked(AUTH_MAGIC.len())
                .ok_or(DecodeError::ShortAuth { len: msg.len() })?;
            let (id, token) = rest
                .split_at_checked(PEER_ID_LEN)
                .ok_or(DecodeError::ShortAuth { len: msg.len() })?;
            if magic != AUTH_MAGIC {
                return Err(DecodeError::BadMagic);
            }
            let id = PeerId::from_wire(id).ok_or(DecodeError::ShortAuth { len: msg.len() })?;
            Ok(ClientMessage::Auth { id, token })
        }
        MsgType::SubscribePeerState => Ok(ClientMessage::Subscribe(PeerIds::parse(body)?)),
        MsgType::UnsubscribePeerState => Ok(ClientMessage::Unsubscribe(PeerIds::parse(body)?)),
        MsgType::AuthResponse | MsgType::PeersOnline | MsgType::PeersWentOffline => {
            Err(DecodeError::WrongDirection(kind))
        }
    }
}

fn split_header(msg: &[u8]) -> Result<(MsgType, &[u8]), DecodeError> {
    let [version, kind, body @ ..] = msg else {
        return Err(DecodeError::Truncated { len: msg.len() });
    };
    if *version != VERSION {
        return Err(DecodeError::Version(*version));
    }
    let kind = MsgType::from_byte(*kind)?;
    if msg.len() > MAX_MESSAGE {
        return Err(DecodeError::Oversize { len: msg.len() });
    }
    Ok((kind, body))
}

fn transport_body<'a>(msg: &[u8], body: &'a [u8]) -> Result<(PeerId, &'a [u8]), DecodeError> {
    let (id, payload) = body
        .split_at_checked(PEER_ID_LEN)
        .ok_or(DecodeError::ShortTransport { len: msg.len() })?;
    let id = PeerId::from_wire(id).ok_or(DecodeError::ShortTransport { len: msg.len() })?;
    Ok((id, payload))
}

/// Close and HealthCheck are two bytes. NetBird ignores anything after the header; we refuse it
/// so that a corrupted stream shows up in the counters instead of passing as a health check.
fn no_body(kind: MsgType, msg: &[u8], body: &[u8]) -> Result<(), DecodeError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes { kind, len: msg.len() })
    }
}

/// `[1][6][magic][own id][token]`.
pub fn encode_auth(own: &PeerId, token: &[u8]) -> Result<Bytes, EncodeError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(EncodeError::TokenTooLong { len: token.len() });
    }
    let mut buf = BytesMut::with_capacity(AUTH_HEADER_LEN + token.len());
    buf.put_slice(&[VERSION, MsgType::Auth.to_byte()]);
    buf.put_slice(&AUTH_MAGIC);
    buf.put_slice(own.as_bytes());
    buf.put_slice(token);
    Ok(buf.freeze())
}

/// `[1][7][instance URL]`: what a server answers to a valid Auth.
pub fn encode_auth_response(instance_url: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + instance_url.len());
    buf.put_slice(&[VERSION, MsgType::AuthResponse.to_byte()]);
    buf.put_slice(instance_url.as_bytes());
    buf.freeze()
}

/// Appends `[1][3][peer id][payload]` to `buf`. The id is the destination when a client sends and
/// the source when the server forwards.
pub fn encode_transport_into(buf: &mut BytesMut, peer: &PeerId, payload: &[u8]) -> Result<(), EncodeError> {
    if payload.len() > MAX_TRANSPORT_PAYLOAD {
        return Err(EncodeError::PayloadTooLong { len: payload.len() });
    }
    buf.reserve(TRANSPORT_HEADER_LEN + payload.len());
    buf.put_slice(&[VERSION, MsgType::Transport.to_byte()]);
    buf.put_slice(peer.as_bytes());
    buf.put_slice(payload);
    Ok(())
}

/// `[1][3][peer id][payload]` in a buffer of its own.
pub fn encode_transport(peer: &PeerId, payload: &[u8]) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::with_capacity(TRANSPORT_HEADER_LEN + payload.len());
    encode_transport_into(&mut buf, peer, payload)?;
    Ok(buf.freeze())
}

/// `[1][5]`; the client echoes the server's health check with the same two bytes.
pub fn encode_health_check() -> Bytes {
    Bytes::from_static(&[VERSION, 5])
}

/// `[1][4]`: "I am leaving", from either side.
pub fn encode_close() -> Bytes {
    Bytes::from_static(&[VERSION, 4])
}

/// Kinds of peer-list message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerListKind {
    Subscribe,
    Unsubscribe,
    Online,
    WentOffline,
}

impl PeerListKind {
    fn msg_type(self) -> MsgType {
        match self {
            PeerListKind::Subscribe => MsgType::SubscribePeerState,
            PeerListKind::Unsubscribe => MsgType::UnsubscribePeerState,
            PeerListKind::Online => MsgType::PeersOnline,
            PeerListKind::WentOffline => MsgType::PeersWentOffline,
        }
    }
}

/// `[1][type][ids…]`, split into messages of at most 244 ids. No ids, no messages (NetBird refuses
/// to build an empty list).
pub fn encode_peer_list(kind: PeerListKind, ids: &[PeerId]) -> Vec<Bytes> {
    ids.chunks(MAX_IDS_PER_MESSAGE)
        .map(|chunk| {
            let mut buf = BytesMut::with_capacity(HEADER_LEN + chunk.len() * PEER_ID_LEN);
            buf.put_slice(&[VERSION, kind.msg_type().to_byte()]);
            for id in chunk {
                buf.put_slice(id.as_bytes());
            }
            buf.freeze()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn id(n: u8) -> PeerId {
        PeerId::of(&key(n))
    }

    #[test]
    fn peer_id_is_sha_prefix_and_sha256_of_the_base64_key() {
        // Computed independently: printf %s "$(head -c32 /dev/zero | base64)" | sha256sum
        let expected = "51643eac9777b63a7b268174d1fd4276daedec9bc9ea0bc6e5abf69047bc54f6";
        let zero = PeerId::of(&PublicKey::from_bytes([0; 32]));
        assert_eq!(zero.as_bytes().len(), 36);
        assert_eq!(&zero.as_bytes()[..4], b"sha-");
        let hex: String = zero.as_bytes()[4..].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        let digest = Sha256::digest(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert_eq!(zero.to_string(), format!("sha-{}", STANDARD.encode(digest)));
    }

    #[test]
    fn every_type_byte_maps_both_ways() {
        for b in 3..=11u8 {
            assert_eq!(MsgType::from_byte(b).unwrap().to_byte(), b);
        }
        assert_eq!(MsgType::from_byte(0), Err(DecodeError::UnknownType(0)));
        assert_eq!(MsgType::from_byte(1), Err(DecodeError::RetiredType(1)));
        assert_eq!(MsgType::from_byte(2), Err(DecodeError::RetiredType(2)));
        assert_eq!(MsgType::from_byte(12), Err(DecodeError::UnknownType(12)));
        assert_eq!(MsgType::from_byte(255), Err(DecodeError::UnknownType(255)));
    }

    #[test]
    fn auth_matches_netbird_layout_and_round_trips() {
        let token = [1u8, 2, 3];
        let msg = encode_auth(&id(1), &token).unwrap();
        assert_eq!(&msg[..6], &[1, 6, 0x21, 0x12, 0xA4, 0x42]);
        assert_eq!(&msg[6..42], id(1).as_bytes());
        assert_eq!(&msg[42..], &token);
        assert_eq!(
            decode_client(&msg),
            Ok(ClientMessage::Auth {
                id: id(1),
                token: &token
            })
        );
    }

    #[test]
    fn auth_is_at_most_212_bytes() {
        assert_eq!(
            encode_auth(&id(1), &[0; MAX_TOKEN_LEN]).unwrap().len(),
            MAX_AUTH_MESSAGE
        );
        assert_eq!(
            encode_auth(&id(1), &[0; MAX_TOKEN_LEN + 1]),
            Err(EncodeError::TokenTooLong { len: 171 })
        );
    }

    #[test]
    fn auth_with_bad_magic_or_short_body_is_refused() {
        let mut msg = encode_auth(&id(1), b"t").unwrap().to_vec();
        msg[2] = 0;
        assert_eq!(decode_client(&msg), Err(DecodeError::BadMagic));
        assert_eq!(
            decode_client(&[1, 6, 0x21, 0x12, 0xA4, 0x42, 1]),
            Err(DecodeError::ShortAuth { len: 7 })
        );
        assert_eq!(
            decode_client(&[1, 6, 0x21]),
            Err(DecodeError::ShortAuth { len: 3 })
        );
    }

    #[test]
    fn auth_response_carries_the_instance_url() {
        let msg = encode_auth_response("rels://relay.example:443");
        assert_eq!(&msg[..2], &[1, 7]);
        assert_eq!(
            decode_server(&msg),
            Ok(ServerMessage::AuthResponse {
                instance_url: "rels://relay.example:443"
            })
        );
        assert_eq!(decode_server(&[1, 7]), Err(DecodeError::EmptyAuthResponse));
        assert_eq!(
            decode_server(&[1, 7, 0xff, 0xfe]),
            Err(DecodeError::AuthResponseNotUtf8)
        );
    }

    #[test]
    fn transport_round_trips_in_both_directions() {
        let msg = encode_transport(&id(2), b"wireguard").unwrap();
        assert_eq!(&msg[..2], &[1, 3]);
        assert_eq!(&msg[2..38], id(2).as_bytes());
        assert_eq!(
            decode_client(&msg),
            Ok(ClientMessage::Transport {
                to: id(2),
                payload: b"wireguard"
            })
        );
        assert_eq!(
            decode_server(&msg),
            Ok(ServerMessage::Transport {
                from: id(2),
                payload: b"wireguard"
            })
        );
    }

    #[test]
    fn transport_with_empty_payload_is_valid() {
        let msg = encode_transport(&id(2), &[]).unwrap();
        assert_eq!(msg.len(), TRANSPORT_HEADER_LEN);
        assert_eq!(
            decode_server(&msg),
            Ok(ServerMessage::Transport {
                from: id(2),
                payload: &[]
            })
        );
    }

    #[test]
    fn transport_encoding_appends_to_a_shared_buffer() {
        let mut buf = BytesMut::new();
        encode_transport_into(&mut buf, &id(1), b"a").unwrap();
        let first = buf.split().freeze();
        encode_transport_into(&mut buf, &id(2), b"bc").unwrap();
        assert_eq!(
            decode_server(&first),
            Ok(ServerMessage::Transport {
                from: id(1),
                payload: b"a"
            })
        );
        assert_eq!(
            decode_server(&buf),
            Ok(ServerMessage::Transport {
                from: id(2),
                payload: b"bc"
            })
        );
    }

    #[test]
    fn largest_transport_fits_and_one_more_byte_does_not() {
        let full = encode_transport(&id(1), &[7; MAX_TRANSPORT_PAYLOAD]).unwrap();
        assert_eq!(full.len(), MAX_MESSAGE);
        assert!(decode_server(&full).is_ok());
        assert_eq!(
            encode_transport(&id(1), &[7; MAX_TRANSPORT_PAYLOAD + 1]),
            Err(EncodeError::PayloadTooLong { len: 8783 })
        );
        let mut over = full.to_vec();
        over.push(0);
        assert_eq!(decode_server(&over), Err(DecodeError::Oversize { len: 8821 }));
    }

    #[test]
    fn transport_with_a_short_id_is_refused() {
        for len in 2..TRANSPORT_HEADER_LEN {
            let mut msg = vec![1, 3];
            msg.resize(len, b'x');
            assert_eq!(
                decode_server(&msg),
                Err(DecodeError::ShortTransport { len }),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn truncated_headers_are_refused() {
        assert_eq!(decode_server(&[]), Err(DecodeError::Truncated { len: 0 }));
        assert_eq!(decode_server(&[1]), Err(DecodeError::Truncated { len: 1 }));
        assert_eq!(decode_client(&[1]), Err(DecodeError::Truncated { len: 1 }));
    }

    #[test]
    fn other_versions_are_refused() {
        assert_eq!(decode_server(&[0, 5]), Err(DecodeError::Version(0)));
        assert_eq!(decode_server(&[2, 5]), Err(DecodeError::Version(2)));
        assert_eq!(decode_client(&[2, 3]), Err(DecodeError::Version(2)));
    }

    #[test]
    fn retired_and_unknown_types_are_refused() {
        assert_eq!(decode_server(&[1, 1]), Err(DecodeError::RetiredType(1)));
        assert_eq!(decode_server(&[1, 2, 9, 9]), Err(DecodeError::RetiredType(2)));
        assert_eq!(decode_client(&[1, 2]), Err(DecodeError::RetiredType(2)));
        assert_eq!(decode_server(&[1, 0]), Err(DecodeError::UnknownType(0)));
        assert_eq!(decode_server(&[1, 12]), Err(DecodeError::UnknownType(12)));
    }

    #[test]
    fn messages_in_the_wrong_direction_are_refused() {
        assert_eq!(
            decode_server(&encode_auth(&id(1), b"t").unwrap()),
            Err(DecodeError::WrongDirection(MsgType::Auth))
        );
        for kind in [PeerListKind::Subscribe, PeerListKind::Unsubscribe] {
            let msg = &encode_peer_list(kind, &[id(1)])[0];
            assert!(
                matches!(decode_server(msg), Err(DecodeError::WrongDirection(_))),
                "{kind:?}"
            );
        }
        for kind in [PeerListKind::Online, PeerListKind::WentOffline] {
            let msg = &encode_peer_list(kind, &[id(1)])[0];
            assert!(
                matches!(decode_client(msg), Err(DecodeError::WrongDirection(_))),
                "{kind:?}"
            );
        }
        assert_eq!(
            decode_client(&encode_auth_response("rel://x")),
            Err(DecodeError::WrongDirection(MsgType::AuthResponse))
        );
    }

    #[test]
    fn health_check_and_close_are_two_bytes() {
        assert_eq!(&encode_health_check()[..], &[1, 5]);
        assert_eq!(&encode_close()[..], &[1, 4]);
        assert_eq!(decode_server(&[1, 5]), Ok(ServerMessage::HealthCheck));
        assert_eq!(decode_server(&[1, 4]), Ok(ServerMessage::Close));
        assert_eq!(decode_client(&[1, 5]), Ok(ClientMessage::HealthCheck));
        assert_eq!(decode_client(&[1, 4]), Ok(ClientMessage::Close));
        assert_eq!(
            decode_server(&[1, 5, 0]),
            Err(DecodeError::TrailingBytes {
                kind: MsgType::HealthCheck,
                len: 3
            })
        );
    }

    #[test]
    fn peer_lists_round_trip_for_every_kind() {
        let ids = [id(1), id(2), id(3)];
        for kind in [
            PeerListKind::Subscribe,
            PeerListKind::Unsubscribe,
            PeerListKind::Online,
            PeerListKind::WentOffline,
        ] {
            let msgs = encode_peer_list(kind, &ids);
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].len(), 2 + 3 * 36);
            assert_eq!(msgs[0][1], kind.msg_type().to_byte());
            let got: Vec<PeerId> = match kind {
                PeerListKind::Subscribe | PeerListKind::Unsubscribe => match decode_client(&msgs[0]).unwrap()
                {
                    ClientMessage::Subscribe(l) | ClientMessage::Unsubscribe(l) => l.iter().collect(),
                    other => panic!("{other:?}"),
                },
                PeerListKind::Online | PeerListKind::WentOffline => match decode_server(&msgs[0]).unwrap() {
                    ServerMessage::PeersOnline(l) | ServerMessage::PeersWentOffline(l) => l.iter().collect(),
                    other => panic!("{other:?}"),
                },
            };
            assert_eq!(got, ids, "{kind:?}");
        }
    }

    #[test]
    fn peer_lists_split_at_244_ids() {
        let ids: Vec<PeerId> = (0..=244u16)
            .map(|n| PeerId::of(&PublicKey::from_bytes([(n % 256) as u8; 32])))
            .collect();
        let msgs = encode_peer_list(PeerListKind::Online, &ids);
        assert_eq!(
            msgs.iter().map(|m| (m.len() - 2) / 36).collect::<Vec<_>>(),
            vec![244, 1]
        );
        assert_eq!(msgs[0].len(), 2 + 244 * 36);
        assert!(msgs[0].len() <= MAX_MESSAGE);
        assert!(encode_peer_list(PeerListKind::Online, &[]).is_empty());
    }

    #[test]
    fn a_peer_list_with_a_partial_id_is_refused() {
        let mut msg = encode_peer_list(PeerListKind::Online, &[id(1)])[0].to_vec();
        msg.pop();
        assert_eq!(decode_server(&msg), Err(DecodeError::PartialPeerId { len: 35 }));
        assert_eq!(
            decode_server(&[1, 11, 0]),
            Err(DecodeError::PartialPeerId { len: 1 })
        );
    }

    #[test]
    fn an_empty_peer_list_is_valid_and_empty() {
        let ServerMessage::PeersOnline(ids) = decode_server(&[1, 10]).unwrap() else {
            panic!()
        };
        assert!(ids.is_empty());
        assert_eq!(ids.len(), 0);
    }
}
