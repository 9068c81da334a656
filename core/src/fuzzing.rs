//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz), built only with the `fuzzing`
//! feature. Each runs one parser of outside bytes the way the engine runs it and checks what
//! the parser promises; a panic is a finding. Not an API: hidden from the docs.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prost::Message as _;

use crate::clock::Instant;
use crate::filter::{Header, PeerFilter, RuleSet, Verdict};
use crate::keys::{PrivateKey, PublicKey};
use crate::mgmt::proto::{LoginResponse, NetworkMap, SyncResponse};
use crate::mgmt::NetworkState;
use crate::relay::messages::{self, ClientMessage, ServerMessage};
use crate::relay::{RelayToken, RelayUrl};
use crate::signal::inbound::{CounterCells, Inbound};
use crate::signal::proto::{Body, EncryptedMessage};
use crate::signal::{parse_credentials, seal, SignalMessage};

pub use crate::conn::peer::sim::fuzz::{ConnSim, SimEvent};
pub use crate::engine::dataplane::fuzzing::{ip_packet_through_router, udp_demux, ENGINE_KEY, PEER_KEY};

/// The key this device opens signal and management bodies with; fixed so that a finding
/// replays.
static OWN: LazyLock<PrivateKey> = LazyLock::new(|| PrivateKey::from_bytes(OWN_KEY));
/// The peer (or management server) that sealed them.
static SENDER: LazyLock<PrivateKey> = LazyLock::new(|| PrivateKey::from_bytes(SENDER_KEY));
pub const OWN_KEY: [u8; 32] = [0x11; 32];
pub const SENDER_KEY: [u8; 32] = [0x22; 32];

/// Signal: `data` as a sealed body (it never opens: it would have to forge Poly1305), then as
/// the plaintext of a body sealed for us and taken through the client's whole inbound path,
/// then as a decoded `Body` whose message must survive its own encoding, and as the
/// offer/answer "ufrag:pwd" payload.
pub fn signal_body(data: &[u8]) {
    let from = SENDER.public_key();
    assert!(seal::open(&OWN, &from, data).is_err(), "forged a sealed body");

    let sealed = seal::seal(&SENDER, &OWN.public_key(), data);
    let opened = seal::open(&OWN, &from, &sealed);
    assert_eq!(opened.as_deref(), Ok(data), "a sealed body does not open");
    let counters = Arc::new(CounterCells::default());
    let (deliver, mut incoming) = tokio::sync::mpsc::channel(1);
    let mut inbound = Inbound::new(OWN.clone(), counters.clone(), deliver);
    inbound.handle(EncryptedMessage {
        key: from.to_base64(),
        remote_key: OWN.public_key().to_base64(),
        body: sealed,
    });
    let c = counters.snapshot();
    assert_eq!(c.received, 1);
    assert_eq!(c.dropped_bad_sender + c.dropped_unopenable, 0, "{c:?}");
    if let Ok((sender, message)) = incoming.try_recv() {
        assert_eq!(sender, from);
        assert_eq!(SignalMessage::from_body(message.to_body()).as_ref(), Ok(&message));
    }

    if let Ok(body) = Body::decode(data) {
        if let Ok(message) = SignalMessage::from_body(body) {
            assert_eq!(SignalMessage::from_body(message.to_body()).as_ref(), Ok(&message));
        }
    }
    if let Ok(Some(creds)) = std::str::from_utf8(data)
        .map(parse_credentials)
        .unwrap_or(Ok(None))
    {
        let again = parse_credentials(&format!("{}:{}", creds.ufrag, creds.pwd));
        assert_eq!(again, Ok(Some(creds)));
    }
}

/// Relay: `data` as a frame from the server and as one from a client; what decodes encodes
/// back to the same message. As text: an AuthResponse's instance URL (peers dial it), and a
/// management token "payload\nsignature".
pub fn relay_frame(data: &[u8]) {
    match messages::decode_server(data) {
        Ok(ServerMessage::Transport { from, payload }) => {
            let again = messages::encode_transport(&from, payload).map(|b| b.to_vec());
            let Ok(again) = again else {
                panic!("a received transport frame does not encode: {again:?}")
            };
            assert!(matches!(
                messages::decode_server(&again),
                Ok(ServerMessage::Transport { from: f, payload: p }) if f == from && p == payload
            ));
        }
        Ok(ServerMessage::AuthResponse { instance_url }) => relay_url(instance_url),
        Ok(ServerMessage::PeersOnline(ids) | ServerMessage::PeersWentOffline(ids)) => {
            assert_eq!(ids.iter().count(), ids.len());
        }
        Ok(ServerMessage::Close | ServerMessage::HealthCheck) => assert_eq!(data.len(), 2),
        Err(_) => {}
    }
    match messages::decode_client(data) {
        Ok(ClientMessage::Auth { id, token }) => {
            if let Ok(again) = messages::encode_auth(&id, token) {
                assert!(matches!(
                    messages::decode_client(&again),
                    Ok(ClientMessage::Auth { id: i, token: t }) if i == id && t == token
                ));
            }
        }
        Ok(ClientMessage::Subscribe(ids) | ClientMessage::Unsubscribe(ids)) => {
            assert_eq!(ids.iter().count(), ids.len());
        }
        Ok(ClientMessage::Transport { .. } | ClientMessage::Close | ClientMessage::HealthCheck) | Err(_) => {}
    }
    let text = String::from_utf8_lossy(data);
    relay_url(&text);
    let (payload, signature) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(token) = RelayToken::from_management(payload, signature) {
        assert!(token.as_bytes().len() <= messages::MAX_TOKEN_LEN);
        assert!(!token.is_expired_at(token.expires_unix()));
    }
}

/// A relay URL that parses prints as a URL that parses to the same.
fn relay_url(text: &str) {
    if let Ok(url) = RelayUrl::from_str(text) {
        let again = RelayUrl::from_str(url.as_str());
        assert_eq!(again.as_ref().map(RelayUrl::as_str), Ok(url.as_str()), "{text:?}");
        let _ = url.websocket_url();
    }
}

/// ICE: each line of `data` a remote candidate for one session, as signal delivers them; the
/// session admits at most its bound.
pub fn ice_candidate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut session = crate::ice::RemoteCandidates::new("fuzz", true);
    let mut admitted = 0;
    for line in text.lines() {
        if session.admit(None, line).is_ok() {
            admitted += 1;
        }
        // Signal's own check runs first in the engine; both see every line here.
        let _ = SignalMessage::from_body(Body {
            r#type: crate::signal::proto::BodyType::Candidate as i32,
            payload: line.to_owned(),
            ..Body::default()
        });
    }
    assert!(admitted <= crate::ice::MAX_REMOTE_CANDIDATES);
}

/// IP packets: the header readers, the echo responder, the utun framing, then `data` through
/// the data plane's router both ways (from the tun to a peer, from a peer to the tun).
pub fn ip_packet(data: &[u8]) {
    let addrs = crate::net::packet_addrs(data);
    if let Some(header) = Header::parse(data) {
        assert_eq!(addrs, Some((header.src, header.dst)));
    }
    if let Some(reply) = crate::packet::echo_reply_to(data) {
        let (Some(request), Some(echo)) =
            (crate::packet::parse_echo(data), crate::packet::parse_echo(&reply))
        else {
            panic!("an echo reply that does not read back: {reply:?}")
        };
        assert_eq!((echo.src, echo.dst, echo.reply), (request.dst, request.src, true));
        assert_eq!((echo.id, echo.seq), (request.id, request.seq));
    }
    let _ = crate::tun::Framing::AppleUtun.payload(data);
    ip_packet_through_router(data);
}

/// The firewall: `data` is a length-prefixed (u16, big-endian) NetworkMap whose rules make the
/// rule set, then packets, each length-prefixed the same way with the top bit saying inbound;
/// time moves a second per packet.
pub fn filter(data: &[u8]) {
    let (map, mut rest) = split_prefixed(data);
    let map = NetworkMap::decode(map.unwrap_or_default()).unwrap_or_default();
    let rules = RuleSet::from_map(&map.firewall_rules, map.firewall_rules_is_empty);
    let filter = PeerFilter::new(16);
    let mut now = Instant::from_epoch(Duration::from_secs(1000));
    while let (Some(chunk), tail) = split_prefixed(rest) {
        rest = tail;
        now = now + Duration::from_secs(1);
        let Some((&flag, packet)) = chunk.split_first() else {
            continue;
        };
        if flag & 0x80 == 0 {
            let _ = filter.outbound(packet, now);
            continue;
        }
        let verdict = filter.inbound(&rules, packet, now);
        if rules.allow_all {
            assert_eq!(verdict, Verdict::Pass);
        }
        if let Some(header) = Header::parse(packet) {
            let _ = rules.decide(&header);
        }
        assert!(filter.flows() <= 16);
    }
}

/// `[len u16 BE][len bytes]`, and what follows; `None` when `data` is too short for a prefix.
fn split_prefixed(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (None, &[]);
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (chunk, rest) = rest.split_at(len);
    (Some(chunk), rest)
}

/// Management: `data` as a sealed body (never opens), as a LoginResponse and as a SyncResponse
/// applied twice (the second time changes nothing), its servers validated as the engine does.
pub fn mgmt(data: &[u8]) {
    let opened = crate::mgmt::open_sealed::<SyncResponse>(&OWN, &SENDER.public_key(), data);
    assert!(opened.is_err(), "forged a sealed management body");
    if let Ok(login) = LoginResponse::decode(data) {
        let sync = SyncResponse {
            netbird_config: login.netbird_config,
            ..SyncResponse::default()
        };
        let _ = NetworkState::default().apply(&sync, &OWN.public_key(), &HashSet::new());
    }
    let Ok(sync) = SyncResponse::decode(data) else {
        return;
    };
    let own = OWN.public_key();
    let connected: HashSet<PublicKey> = sync
        .network_map
        .iter()
        .flat_map(|m| &m.remote_peers)
        .filter_map(|p| PublicKey::from_base64(&p.wg_pub_key).ok())
        .take(2)
        .collect();
    let mut state = NetworkState::default();
    let first = state.apply(&sync, &own, &connected);
    if let Some(servers) = &first.servers {
        if let Some(signal) = &servers.signal {
            let _ = crate::config::validate_signal(signal);
        }
        if let Some(relay) = &servers.relay {
            let _ = crate::config::validate_relay(relay);
        }
        let _ = crate::config::validate_ice(&servers.ice);
    }
    if let Some(peers) = &first.peers {
        assert!(peers.iter().all(|p| p.public_key != own), "own key as a peer");
    }
    let second = state.apply(&sync, &own, &connected);
    assert!(second.is_empty(), "the same map applied twice changed {second:?}");
}
