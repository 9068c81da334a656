//! The messages peers exchange through signal, typed: what NetBird's `Signaler` builds and its
//! engine parses (`client/internal/peer/signaler.go`, `shared/signal/client/client.go`).

use std::fmt;
use std::net::IpAddr;

use rand::Rng;

use super::proto::{self, Body, BodyType};

/// One definition of ICE credentials, shared with the ICE worker.
pub use crate::ice::{IceCredentials, PWD_LEN, UFRAG_LEN};
/// RFC 8445 section 5.3: a ufrag has at least 4 ice-chars; peers may use other lengths than
/// pion's, so the parser accepts the RFC's range.
pub const UFRAG_MIN: usize = 4;
/// RFC 8445 section 5.3: a password has at least 22 ice-chars.
pub const PWD_MIN: usize = 22;
/// RFC 8839 section 5.4: ufrag and password are at most 256 characters.
pub const CREDENTIAL_MAX: usize = 256;
/// NetBird's `sessionIDSize` (client/internal/peer/session_id.go).
pub const SESSION_ID_LEN: usize = 5;
/// A marshalled candidate is one SDP attribute value: foundation, component, transport,
/// priority, address, port, type, related address and port, extensions. 1 KiB is several times
/// the longest pion writes (an IPv6 relay candidate with related address).
pub const CANDIDATE_MAX: usize = 1024;

/// One signal message, from or to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalMessage {
    Offer(OfferAnswer),
    Answer(OfferAnswer),
    /// An ICE candidate in pion's marshal form (the SDP `candidate:` value without the prefix).
    Candidate(String),
    /// The sender's connection mode changed (NetBird's `MODE`, for lazy connections).
    Mode {
        direct: Option<bool>,
    },
    /// The sender goes idle (lazy connections): the receiver may close its side.
    GoIdle,
    /// A liveness probe; the client answers its own and hands others up.
    Heartbeat,
}

/// The content of an OFFER or an ANSWER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferAnswer {
    /// ICE credentials; `None` when the sender runs without ICE (NetBird then sends `":"`).
    pub ice: Option<IceCredentials>,
    pub wg_listen_port: u16,
    /// The sender's version string (NetBird's `netBirdVersion`).
    pub version: String,
    /// The relay instance URL the sender is connected to (its AuthResponse URL).
    pub relay_server_address: Option<String>,
    /// The relay server's IP the sender is connected to, a fallback when DNS fails.
    pub relay_server_ip: Option<IpAddr>,
    pub session_id: Option<SessionId>,
}

/// Identifies one ICE session of a peer (5 random bytes on the wire, hex in NetBird's logs).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; SESSION_ID_LEN]);

/// Why a body is not a message we understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("unknown body type {0}")]
    UnknownType(i32),
    #[error("credentials payload has no ':' separating ufrag and password")]
    NoSeparator,
    #[error("ICE ufrag has {0} characters, expected {UFRAG_MIN}..={CREDENTIAL_MAX}")]
    UfragLength(usize),
    #[error("ICE password has {0} characters, expected {PWD_MIN}..={CREDENTIAL_MAX}")]
    PwdLength(usize),
    #[error("ICE credentials contain a character outside ALPHA / DIGIT / '+' / '/'")]
    CredentialCharacter,
    #[error("WireGuard listen port {0} is above 65535")]
    ListenPort(u32),
    #[error("candidate is empty")]
    EmptyCandidate,
    #[error("candidate has {0} bytes, at most {CANDIDATE_MAX} accepted")]
    CandidateLength(usize),
}

impl SignalMessage {
    /// Parses a decoded body.
    pub fn from_body(body: Body) -> Result<Self, MessageError> {
        let kind = BodyType::try_from(body.r#type).map_err(|_| MessageError::UnknownType(body.r#type))?;
        match kind {
            BodyType::Offer => Ok(SignalMessage::Offer(OfferAnswer::from_body(body)?)),
            BodyType::Answer => Ok(SignalMessage::Answer(OfferAnswer::from_body(body)?)),
            BodyType::Candidate => Ok(SignalMessage::Candidate(parse_candidate(body.payload)?)),
            BodyType::Mode => Ok(SignalMessage::Mode {
                direct: body.mode.and_then(|m| m.direct),
            }),
            BodyType::GoIdle => Ok(SignalMessage::GoIdle),
            BodyType::Heartbeat => Ok(SignalMessage::Heartbeat),
        }
    }

    /// The body to seal, as NetBird builds it.
    pub fn to_body(&self) -> Body {
        match self {
            SignalMessage::Offer(o) => o.to_body(BodyType::Offer),
            SignalMessage::Answer(a) => a.to_body(BodyType::Answer),
            SignalMessage::Candidate(c) => Body {
                r#type: BodyType::Candidate as i32,
                payload: c.clone(),
                ..Body::default()
            },
            SignalMessage::Mode { direct } => Body {
                r#type: BodyType::Mode as i32,
                mode: Some(proto::Mode { direct: *direct }),
                ..Body::default()
            },
            SignalMessage::GoIdle => Body {
                r#type: BodyType::GoIdle as i32,
                ..Body::default()
            },
            SignalMessage::Heartbeat => Body {
                r#type: BodyType::Heartbeat as i32,
                ..Body::default()
            },
        }
    }

    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SignalMessage::Offer(_) => "offer",
            SignalMessage::Answer(_) => "answer",
            SignalMessage::Candidate(_) => "candidate",
            SignalMessage::Mode { .. } => "mode",
            SignalMessage::GoIdle => "go-idle",
            SignalMessage::Heartbeat => "heartbeat",
        }
    }
}

impl OfferAnswer {
    fn from_body(body: Body) -> Result<Self, MessageError> {
        let ice = parse_credentials(&body.payload)?;
        let wg_listen_port =
            u16::try_from(body.wg_listen_port).map_err(|_| MessageError::ListenPort(body.wg_listen_port))?;
        // NetBird's `convertToOfferAnswer` ignores a malformed session id or relay IP rather than
        // refusing the offer; so do we, or a peer NetBird accepts would fail to connect here.
        let session_id = body.session_id.and_then(|b| SessionId::from_slice(&b));
        let relay_server_ip = body.relay_server_ip.and_then(|b| parse_ip(&b));
        Ok(OfferAnswer {
            ice,
            wg_listen_port,
            version: body.net_bird_version,
            relay_server_address: body.relay_server_address.filter(|a| !a.is_empty()),
            relay_server_ip,
            session_id,
        })
    }

    /// NetBird's `MarshalCredential`: payload `"ufrag:pwd"`, an empty Rosenpass config, the
    /// relay address only when set, the relay IP unmapped to 4 bytes for IPv4.
    fn to_body(&self, kind: BodyType) -> Body {
        let payload = match &self.ice {
            Some(c) => format!("{}:{}", c.ufrag, c.pwd),
            None => ":".to_owned(),
        };
        Body {
            r#type: kind as i32,
            payload,
            wg_listen_port: u32::from(self.wg_listen_port),
            net_bird_version: self.version.clone(),
            rosenpass_config: Some(proto::RosenpassConfig::default()),
            relay_server_address: self.relay_server_address.clone(),
            session_id: self.session_id.map(|s| s.0.to_vec()),
            relay_server_ip: self.relay_server_ip.map(|ip| match ip.to_canonical() {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            }),
            ..Body::default()
        }
    }
}

/// Parses `"ufrag:pwd"`; `":"` (both empty) means the sender runs without ICE.
pub fn parse_credentials(payload: &str) -> Result<Option<IceCredentials>, MessageError> {
    let Some((ufrag, pwd)) = payload.split_once(':') else {
        return Err(MessageError::NoSeparator);
    };
    if ufrag.is_empty() && pwd.is_empty() {
        return Ok(None);
    }
    if !(UFRAG_MIN..=CREDENTIAL_MAX).contains(&ufrag.len()) {
        return Err(MessageError::UfragLength(ufrag.len()));
    }
    // A second ':' lands in the password and is refused as a character below, as NetBird's
    // `strings.Split` refuses three parts.
    if !(PWD_MIN..=CREDENTIAL_MAX).contains(&pwd.len()) {
        return Err(MessageError::PwdLength(pwd.len()));
    }
    if !ufrag.bytes().chain(pwd.bytes()).all(is_ice_char) {
        return Err(MessageError::CredentialCharacter);
    }
    Ok(Some(IceCredentials {
        ufrag: ufrag.to_owned(),
        pwd: pwd.to_owned(),
    }))
}

impl SessionId {
    pub fn generate(rng: &mut impl Rng) -> Self {
        Self(rng.gen())
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Display for SessionId {
    /// Lower-case hex, as NetBird logs it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

fn parse_candidate(payload: String) -> Result<String, MessageError> {
    if payload.is_empty() {
        return Err(MessageError::EmptyCandidate);
    }
    if payload.len() > CANDIDATE_MAX {
        return Err(MessageError::CandidateLength(payload.len()));
    }
    Ok(payload)
}

/// 4 bytes (IPv4) or 16 (IPv6); anything else is treated as absent, as NetBird's `decodeRelayIP`.
fn parse_ip(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes)
        .ok()
        .map(|v6| IpAddr::from(v6).to_canonical())
}

/// RFC 8445 ice-char: ALPHA / DIGIT / "+" / "/".
fn is_ice_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn offer() -> OfferAnswer {
        let mut rng = rand::thread_rng();
        OfferAnswer {
            ice: Some(IceCredentials::generate()),
            wg_listen_port: 51820,
            version: "peerlink-0.1.0".into(),
            relay_server_address: Some("rels://relay.example:443".into()),
            relay_server_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
            session_id: Some(SessionId::generate(&mut rng)),
        }
    }

    #[test]
    fn generated_credentials_are_pion_shaped() {
        let c = IceCredentials::generate();
        assert_eq!(c.ufrag.len(), UFRAG_LEN);
        assert_eq!(c.pwd.len(), PWD_LEN);
        assert!(c
            .ufrag
            .chars()
            .chain(c.pwd.chars())
            .all(|ch| ch.is_ascii_alphabetic()));
    }

    #[test]
    fn offer_and_answer_round_trip_through_body() {
        let o = offer();
        let body = SignalMessage::Offer(o.clone()).to_body();
        assert_eq!(body.r#type(), BodyType::Offer);
        let ice = o.ice.as_ref().unwrap();
        assert_eq!(body.payload, format!("{}:{}", ice.ufrag, ice.pwd));
        assert_eq!(body.relay_server_ip, Some(vec![192, 0, 2, 7]));
        assert_eq!(
            SignalMessage::from_body(body).unwrap(),
            SignalMessage::Offer(o.clone())
        );
        let answer = SignalMessage::Answer(o);
        assert_eq!(SignalMessage::from_body(answer.to_body()).unwrap(), answer);
    }

    #[test]
    fn offer_without_ice_is_a_bare_colon() {
        let o = OfferAnswer {
            ice: None,
            session_id: None,
            relay_server_ip: None,
            ..offer()
        };
        let body = SignalMessage::Offer(o.clone()).to_body();
        assert_eq!(body.payload, ":");
        assert_eq!(body.session_id, None);
        assert_eq!(SignalMessage::from_body(body).unwrap(), SignalMessage::Offer(o));
    }

    #[test]
    fn mapped_and_v6_relay_ips_encode_canonically() {
        let mapped = Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped();
        let o = OfferAnswer {
            relay_server_ip: Some(IpAddr::V6(mapped)),
            ..offer()
        };
        assert_eq!(
            SignalMessage::Offer(o).to_body().relay_server_ip,
            Some(vec![10, 1, 2, 3])
        );
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let o = OfferAnswer {
            relay_server_ip: Some(v6),
            ..offer()
        };
        let parsed = SignalMessage::from_body(SignalMessage::Offer(o).to_body()).unwrap();
        let SignalMessage::Offer(parsed) = parsed else {
            panic!("not an offer")
        };
        assert_eq!(parsed.relay_server_ip, Some(v6));
    }

    #[test]
    fn candidate_and_control_messages_round_trip() {
        let cand = "1052353102 1 udp 2130706431 192.0.2.1 51820 typ host".to_owned();
        for msg in [
            SignalMessage::Candidate(cand),
            SignalMessage::Mode { direct: Some(true) },
            SignalMessage::Mode { direct: None },
            SignalMessage::GoIdle,
            SignalMessage::Heartbeat,
        ] {
            assert_eq!(SignalMessage::from_body(msg.to_body()).unwrap(), msg);
        }
    }

    #[test]
    fn malformed_payloads_are_typed_errors() {
        let body = |payload: &str| Body {
            payload: payload.into(),
            ..Body::default()
        };
        let pwd = "p".repeat(PWD_LEN);
        let cases = [
            ("nocolon", MessageError::NoSeparator),
            (&*format!("abc:{pwd}"), MessageError::UfragLength(3)),
            ("abcdefgh:short", MessageError::PwdLength(5)),
            (&*format!("abcd:efgh:{pwd}"), MessageError::CredentialCharacter),
            (&*format!("ab-d:{pwd}"), MessageError::CredentialCharacter),
            (
                &*format!("{}:{pwd}", "u".repeat(257)),
                MessageError::UfragLength(257),
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(
                SignalMessage::from_body(body(payload)),
                Err(want),
                "payload {payload:?}"
            );
        }
    }

    #[test]
    fn bad_field_values_are_typed_errors() {
        let good = SignalMessage::Offer(offer()).to_body();
        let cases = [
            (
                Body {
                    r#type: 3,
                    ..good.clone()
                },
                MessageError::UnknownType(3),
            ),
            (
                Body {
                    r#type: -1,
                    ..good.clone()
                },
                MessageError::UnknownType(-1),
            ),
            (
                Body {
                    wg_listen_port: 70000,
                    ..good.clone()
                },
                MessageError::ListenPort(70000),
            ),
            (
                Body {
                    r#type: BodyType::Candidate as i32,
                    payload: String::new(),
                    ..Body::default()
                },
                MessageError::EmptyCandidate,
            ),
            (
                Body {
                    r#type: BodyType::Candidate as i32,
                    payload: "c".repeat(2000),
                    ..Body::default()
                },
                MessageError::CandidateLength(2000),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(SignalMessage::from_body(body), Err(want));
        }
    }

    #[test]
    fn malformed_optional_fields_are_ignored_like_netbird() {
        let good = SignalMessage::Offer(offer()).to_body();
        let body = Body {
            session_id: Some(vec![1; 4]),
            relay_server_ip: Some(vec![1; 5]),
            ..good
        };
        let SignalMessage::Offer(parsed) = SignalMessage::from_body(body).unwrap() else {
            panic!("not an offer")
        };
        assert_eq!((parsed.session_id, parsed.relay_server_ip), (None, None));
        assert!(parsed.ice.is_some());
    }

    #[test]
    fn debug_hides_the_ice_password() {
        let c = IceCredentials::generate();
        assert!(!format!("{c:?}").contains(&c.pwd));
    }

    #[test]
    fn session_id_displays_as_hex() {
        assert_eq!(SessionId([0, 1, 0xab, 0xff, 0x10]).to_string(), "0001abff10");
    }
}
