//! Building a webrtc-ice agent from our configuration, and turning its callbacks into messages.
//!
//! The callbacks only copy what they are handed into a channel (and flag the end of
//! gathering): they never call the agent, which can deadlock from inside its own callbacks.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use webrtc_ice::agent::agent_config::AgentConfig;
use webrtc_ice::agent::Agent;
use webrtc_ice::candidate::{Candidate, CandidateType};
use webrtc_ice::mdns::MulticastDnsMode;
use webrtc_ice::network_type::NetworkType;
use webrtc_ice::state::ConnectionState;
use webrtc_ice::udp_network::UDPNetwork;
use webrtc_ice::url::{ProtoType, SchemeType, Url};

use super::candidate::CandidateKind;
use super::config::IceConfig;
use super::error::IceError;
use super::events::CandidateInfo;
use super::session::IceSession;

/// Capacity of the channel from the agent's callbacks to the worker's pump: a session's
/// candidates and state changes (a few dozen at most); the callback waits when it is full,
/// which only delays the agent's own callback task.
pub(crate) const SIGNAL_CAPACITY: usize = 32;

/// What the agent's callbacks report.
#[derive(Debug)]
pub(crate) enum AgentSignal {
    LocalCandidate(String),
    GatheringComplete,
    State(ConnectionState),
    SelectedPair {
        local: Option<CandidateInfo>,
        remote: Option<CandidateInfo>,
    },
}

/// A new agent for `session`, with mDNS off and NetBird's timings from `config`.
pub(crate) async fn new_agent(config: &IceConfig, session: &IceSession) -> Result<Agent, IceError> {
    let with_turn = session.use_turn || config.force_turn;
    let mut urls = urls(config, with_turn)?;
    if config.socket.is_some() {
        // The worker asks STUN itself on the shared socket; webrtc-ice refuses STUN URLs when
        // it gathers no srflx candidate.
        urls.retain(|u| u.scheme != SchemeType::Stun);
    }
    // On the shared socket webrtc-ice gathers no srflx candidate: the worker asks STUN itself.
    let mut candidate_types = match &config.socket {
        Some(_) => vec![CandidateType::Host],
        None => vec![CandidateType::Host, CandidateType::ServerReflexive],
    };
    if with_turn {
        candidate_types.push(CandidateType::Relay);
    }
    let mut network_types = vec![NetworkType::Udp4];
    if udp6(config) {
        network_types.push(NetworkType::Udp6);
    }
    let udp_network = match &config.socket {
        Some(socket) => UDPNetwork::Muxed(socket.mux()),
        None => UDPNetwork::default(),
    };
    let interfaces = config.interfaces.clone();
    let ips = config.interfaces.clone();
    let agent_config = AgentConfig {
        urls,
        local_ufrag: session.local.ufrag.clone(),
        local_pwd: session.local.pwd.clone(),
        multicast_dns_mode: MulticastDnsMode::Disabled,
        disconnected_timeout: Some(config.disconnected_timeout),
        failed_timeout: Some(config.failed_timeout),
        keepalive_interval: Some(config.keepalive_interval),
        network_types,
        candidate_types,
        is_controlling: session.controlling,
        host_acceptance_min_wait: Some(config.host_acceptance_wait),
        srflx_acceptance_min_wait: Some(config.srflx_acceptance_wait),
        prflx_acceptance_min_wait: Some(config.prflx_acceptance_wait),
        relay_acceptance_min_wait: Some(config.relay_acceptance_wait),
        interface_filter: Arc::new(Some(Box::new(move |name: &str| {
            interfaces.allows_interface(name)
        }))),
        ip_filter: Arc::new(Some(Box::new(move |ip| ips.allows_ip(ip)))),
        include_loopback: config.interfaces.include_loopback,
        udp_network,
        ..AgentConfig::default()
    };
    Ok(Agent::new(agent_config).await?)
}

/// Whether sessions use IPv6 candidates: as configured, unless the shared socket is IPv4 only.
pub(crate) fn udp6(config: &IceConfig) -> bool {
    config.udp6 && !config.socket.as_ref().is_some_and(|s| s.is_v4())
}

/// Forwards the agent's callbacks to `signals`; `gathered` turns true when gathering ends.
pub(crate) fn forward_callbacks(
    agent: &Agent,
    signals: mpsc::Sender<AgentSignal>,
    gathered: watch::Sender<bool>,
) {
    let tx = signals.clone();
    agent.on_candidate(Box::new(move |c: Option<Arc<dyn Candidate + Send + Sync>>| {
        let signal = match &c {
            Some(c) => AgentSignal::LocalCandidate(c.marshal()),
            None => {
                gathered.send_replace(true);
                AgentSignal::GatheringComplete
            }
        };
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(signal).await;
        })
    }));
    let tx = signals.clone();
    agent.on_connection_state_change(Box::new(move |s: ConnectionState| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(AgentSignal::State(s)).await;
        })
    }));
    agent.on_selected_candidate_pair_change(Box::new(
        move |local: &Arc<dyn Candidate + Send + Sync>, remote: &Arc<dyn Candidate + Send + Sync>| {
            let signal = AgentSignal::SelectedPair {
                local: candidate_info(local.as_ref()),
                remote: candidate_info(remote.as_ref()),
            };
            let tx = signals.clone();
            Box::pin(async move {
                let _ = tx.send(signal).await;
            })
        },
    ));
}

/// A candidate's type and address (its resolved address; for a relay candidate, the address on
/// the TURN server).
pub(crate) fn candidate_info(c: &(dyn Candidate + Send + Sync)) -> Option<CandidateInfo> {
    let kind = CandidateKind::from_ice(c.candidate_type())?;
    let addr = c.addr();
    let addr = if addr.port() == 0 {
        // Unresolved (never for IP candidates); fall back to the advertised address.
        format!("{}:{}", c.address(), c.port())
            .parse::<SocketAddr>()
            .ok()?
    } else {
        addr
    };
    Some(CandidateInfo { kind, addr })
}

/// STUN URLs always; TURN URLs (UDP only, with credentials) when relay candidates are wanted.
fn urls(config: &IceConfig, with_turn: bool) -> Result<Vec<Url>, IceError> {
    let mut urls = Vec::new();
    for raw in &config.stun_urls {
        let url = parse(raw)?;
        if url.scheme != SchemeType::Stun {
            return Err(IceError::BadUrl {
                url: raw.clone(),
                reason: "a STUN URL must be stun:host[:port] (stuns is not supported)".to_owned(),
            });
        }
        urls.push(url);
    }
    if !with_turn {
        return Ok(urls);
    }
    for server in &config.turn_servers {
        let mut url = parse(&server.url)?;
        if url.scheme != SchemeType::Turn || url.proto != ProtoType::Udp {
            return Err(IceError::UnsupportedTurn {
                url: server.url.clone(),
            });
        }
        url.username.clone_from(&server.username);
        url.password.clone_from(&server.credential);
        urls.push(url);
    }
    Ok(urls)
}

fn parse(raw: &str) -> Result<Url, IceError> {
    Url::parse_url(raw).map_err(|e| IceError::BadUrl {
        url: raw.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ice::config::TurnServer;

    fn config(stun: &[&str], turn: &[&str]) -> IceConfig {
        IceConfig {
            stun_urls: stun.iter().map(|s| (*s).to_owned()).collect(),
            turn_servers: turn
                .iter()
                .map(|u| TurnServer {
                    url: (*u).to_owned(),
                    username: "u".to_owned(),
                    credential: "p".to_owned(),
                })
                .collect(),
            ..IceConfig::default()
        }
    }

    #[test]
    fn turn_urls_are_used_only_when_asked() {
        let c = config(&["stun:127.0.0.1:3478"], &["turn:127.0.0.1:3478"]);
        assert_eq!(urls(&c, false).unwrap().len(), 1);
        let with = urls(&c, true).unwrap();
        assert_eq!(with.len(), 2);
        assert_eq!(with[1].username, "u");
        assert_eq!(with[1].password, "p");
    }

    #[test]
    fn turn_over_tcp_or_tls_is_refused() {
        for url in ["turn:127.0.0.1:3478?transport=tcp", "turns:127.0.0.1:5349"] {
            assert!(matches!(
                urls(&config(&[], &[url]), true),
                Err(IceError::UnsupportedTurn { .. })
            ));
        }
    }

    #[test]
    fn bad_stun_urls_are_refused() {
        for url in [
            "127.0.0.1:3478",
            "stun://127.0.0.1",
            "turn:127.0.0.1",
            "stuns:127.0.0.1",
        ] {
            assert!(urls(&config(&[url], &[]), false).is_err(), "{url}");
        }
    }
}
