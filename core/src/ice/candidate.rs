//! Remote candidates as they arrive from signal: parsed, checked and deduplicated before the
//! agent sees them. Pure: no agent, no sockets, so every refusal is testable on its own.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use webrtc_ice::candidate::candidate_base::unmarshal_candidate;
use webrtc_ice::candidate::{Candidate, CandidateType};
use webrtc_ice::network_type::NetworkType;

/// An SDP candidate attribute is well under 256 bytes (foundation ≤ 32, two addresses, a few
/// keywords); 1024 leaves room for extensions and refuses garbage early.
pub const MAX_CANDIDATE_LEN: usize = 1024;
/// A peer has a handful of interfaces × (host, srflx, relay) × (IPv4, IPv6); 64 distinct
/// candidates per session is far beyond that and bounds what a misbehaving peer can make us
/// pair against (each remote candidate costs a pair per local candidate).
pub const MAX_REMOTE_CANDIDATES: usize = 64;

/// A candidate's type, as status shows it (`host`, `srflx`, `prflx`, `relay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateKind {
    Host,
    ServerReflexive,
    PeerReflexive,
    Relay,
}

impl CandidateKind {
    pub(crate) fn from_ice(t: CandidateType) -> Option<Self> {
        match t {
            CandidateType::Host => Some(Self::Host),
            CandidateType::ServerReflexive => Some(Self::ServerReflexive),
            CandidateType::PeerReflexive => Some(Self::PeerReflexive),
            CandidateType::Relay => Some(Self::Relay),
            CandidateType::Unspecified => None,
        }
    }
}

impl fmt::Display for CandidateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CandidateKind::Host => "host",
            CandidateKind::ServerReflexive => "srflx",
            CandidateKind::PeerReflexive => "prflx",
            CandidateKind::Relay => "relay",
        })
    }
}

/// Why a remote candidate was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not a candidate in pion's marshal form: {reason}")]
    Malformed { reason: String },
    #[error("transport {transport:?} is not supported (UDP only)")]
    UnsupportedTransport { transport: String },
    #[error("an mDNS (.local) address, and mDNS is off")]
    MdnsAddress,
    #[error("an IPv6 candidate, and UDP6 is off")]
    Ipv6Disabled,
    #[error("already added in this session")]
    Duplicate,
    #[error("for session {got:?}, the current one is {current:?}")]
    StaleSession { got: String, current: String },
    #[error("more than {MAX_REMOTE_CANDIDATES} candidates in one session")]
    TooMany,
}

/// How many remote inputs were ignored, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectionCounters {
    pub malformed: u64,
    pub unsupported: u64,
    pub duplicate: u64,
    pub stale_session: u64,
    pub too_many: u64,
    /// Offers or restarts with empty or invalid remote credentials.
    pub bad_credentials: u64,
}

impl RejectionCounters {
    pub fn total(&self) -> u64 {
        self.malformed
            + self.unsupported
            + self.duplicate
            + self.stale_session
            + self.too_many
            + self.bad_credentials
    }

    pub(crate) fn count(&mut self, r: &Rejection) {
        let c = match r {
            Rejection::Malformed { .. } => &mut self.malformed,
            Rejection::UnsupportedTransport { .. } => &mut self.unsupported,
            Rejection::MdnsAddress => &mut self.unsupported,
            Rejection::Ipv6Disabled => &mut self.unsupported,
            Rejection::Duplicate => &mut self.duplicate,
            Rejection::StaleSession { .. } => &mut self.stale_session,
            Rejection::TooMany => &mut self.too_many,
        };
        *c = c.saturating_add(1);
    }
}

/// What identifies a candidate for duplicate detection: webrtc-ice's own `equal` (transport,
/// type, address, port, related address), not foundation or priority.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CandidateKey {
    network: String,
    kind: String,
    address: String,
    port: u16,
    related: Option<(String, u16)>,
}

/// The remote candidates of one session.
#[derive(Debug)]
pub struct RemoteCandidates {
    session: String,
    udp6: bool,
    seen: HashSet<CandidateKey>,
}

impl RemoteCandidates {
    /// Candidates for the session whose remote ufrag is `session`.
    pub fn new(session: &str, udp6: bool) -> Self {
        Self {
            session: session.to_owned(),
            udp6,
            seen: HashSet::new(),
        }
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// Parses and checks one candidate string. `for_session` is the remote ufrag the candidate
    /// was sent under, when the caller knows it; `None` means the current session.
    pub fn admit(
        &mut self,
        for_session: Option<&str>,
        raw: &str,
    ) -> Result<Arc<dyn Candidate + Send + Sync>, Rejection> {
        if let Some(got) = for_session {
            if got != self.session {
                return Err(Rejection::StaleSession {
                    got: got.to_owned(),
                    current: self.session.clone(),
                });
            }
        }
        let raw = strip_prefix(raw.trim());
        check_shape(raw)?;
        let candidate = unmarshal_candidate(raw).map_err(|e| Rejection::Malformed {
            reason: e.to_string(),
        })?;
        check_candidate(&candidate, self.udp6)?;
        let key = CandidateKey {
            network: candidate.network_type().to_string(),
            kind: candidate.candidate_type().to_string(),
            address: candidate.address(),
            port: candidate.port(),
            related: candidate.related_address().map(|r| (r.address, r.port)),
        };
        if self.seen.contains(&key) {
            return Err(Rejection::Duplicate);
        }
        if self.seen.len() >= MAX_REMOTE_CANDIDATES {
            return Err(Rejection::TooMany);
        }
        self.seen.insert(key);
        Ok(Arc::new(candidate))
    }
}

/// Accepts the SDP attribute with its `candidate:` prefix too (browsers and some signal
/// layers keep it); pion's marshal form has none.
fn strip_prefix(raw: &str) -> &str {
    let raw = raw.strip_prefix("a=").unwrap_or(raw);
    raw.strip_prefix("candidate:").unwrap_or(raw)
}

/// Refuses what `unmarshal_candidate` would misread: too long, too few fields, no `typ`
/// keyword, a transport other than UDP.
fn check_shape(raw: &str) -> Result<(), Rejection> {
    if raw.len() > MAX_CANDIDATE_LEN {
        return Err(Rejection::Malformed {
            reason: format!("{} bytes, at most {MAX_CANDIDATE_LEN}", raw.len()),
        });
    }
    let fields: Vec<&str> = raw.split_whitespace().collect();
    let (Some(transport), Some(typ_keyword), Some(_typ)) = (fields.get(2), fields.get(6), fields.get(7))
    else {
        return Err(Rejection::Malformed {
            reason: format!("{} fields, at least 8", fields.len()),
        });
    };
    if *typ_keyword != "typ" {
        return Err(Rejection::Malformed {
            reason: "no `typ` keyword in the seventh field".to_owned(),
        });
    }
    if !transport.eq_ignore_ascii_case("udp") {
        return Err(Rejection::UnsupportedTransport {
            transport: (*transport).to_owned(),
        });
    }
    Ok(())
}

fn check_candidate(c: &impl Candidate, udp6: bool) -> Result<(), Rejection> {
    if c.address().ends_with(".local") {
        return Err(Rejection::MdnsAddress);
    }
    if CandidateKind::from_ice(c.candidate_type()).is_none() {
        return Err(Rejection::Malformed {
            reason: "unknown candidate type".to_owned(),
        });
    }
    match c.network_type() {
        NetworkType::Udp4 => Ok(()),
        NetworkType::Udp6 if udp6 => Ok(()),
        NetworkType::Udp6 => Err(Rejection::Ipv6Disabled),
        other @ (NetworkType::Tcp4 | NetworkType::Tcp6 | NetworkType::Unspecified) => {
            Err(Rejection::UnsupportedTransport {
                transport: other.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "1052353102 1 udp 2130706431 192.168.1.2 51820 typ host";
    const SRFLX: &str = "2130706431 1 udp 1694498815 203.0.113.5 40000 typ srflx raddr 0.0.0.0 rport 40000";
    const RELAY: &str = "3 1 udp 16777215 198.51.100.1 50000 typ relay raddr 0.0.0.0 rport 41000";

    #[test]
    fn host_srflx_and_relay_candidates_are_admitted() {
        let mut rc = RemoteCandidates::new("abc", true);
        for raw in [HOST, SRFLX, RELAY] {
            let c = rc.admit(None, raw).unwrap();
            assert_eq!(c.marshal(), raw);
        }
        assert!(
            rc.admit(None, &format!("candidate:{HOST} ")).is_err(),
            "second time: duplicate"
        );
    }

    #[test]
    fn the_same_candidate_twice_is_a_duplicate_even_with_another_priority() {
        let mut rc = RemoteCandidates::new("abc", true);
        rc.admit(None, HOST).unwrap();
        let other_priority = HOST.replace("2130706431", "2130706430");
        assert_eq!(rc.admit(None, &other_priority).err(), Some(Rejection::Duplicate));
    }

    #[test]
    fn malformed_strings_are_refused() {
        let mut rc = RemoteCandidates::new("abc", true);
        for raw in [
            "",
            "garbage",
            "1 1 udp 1 1.2.3.4 5 host",
            "1 1 udp x 1.2.3.4 5 typ host",
            "1 1 udp 1 1.2.3.4 99999 typ host",
            "1 1 udp 1 not-an-ip 5 typ host",
            "1 1 udp 1 1.2.3.4 5 typ whatever",
            "1 1 udp 1 1.2.3.4 5 typ srflx raddr",
            "1 1 udp 1 1.2.3.4 5 nottyp host",
        ] {
            assert!(
                matches!(rc.admit(None, raw), Err(Rejection::Malformed { .. })),
                "{raw:?}: {:?}",
                rc.admit(None, raw).err()
            );
        }
        let long = format!("{HOST} {}", "x".repeat(MAX_CANDIDATE_LEN));
        assert!(matches!(rc.admit(None, &long), Err(Rejection::Malformed { .. })));
    }

    #[test]
    fn tcp_and_mdns_candidates_are_unsupported() {
        let mut rc = RemoteCandidates::new("abc", true);
        let tcp = "1 1 tcp 1 1.2.3.4 5 typ host tcptype passive";
        assert!(matches!(
            rc.admit(None, tcp),
            Err(Rejection::UnsupportedTransport { .. })
        ));
        let mdns = "1 1 udp 1 8f2a9c.local 5 typ host";
        assert_eq!(rc.admit(None, mdns).err(), Some(Rejection::MdnsAddress));
    }

    #[test]
    fn ipv6_candidates_follow_the_udp6_switch() {
        let v6 = "1 1 udp 1 fd00::2 5 typ host";
        assert!(RemoteCandidates::new("abc", true).admit(None, v6).is_ok());
        assert_eq!(
            RemoteCandidates::new("abc", false).admit(None, v6).err(),
            Some(Rejection::Ipv6Disabled)
        );
    }

    #[test]
    fn candidates_for_another_session_are_stale() {
        let mut rc = RemoteCandidates::new("current", true);
        assert!(matches!(
            rc.admit(Some("old"), HOST),
            Err(Rejection::StaleSession { .. })
        ));
        assert!(rc.admit(Some("current"), HOST).is_ok());
    }

    #[test]
    fn a_session_admits_a_bounded_number_of_candidates() {
        let mut rc = RemoteCandidates::new("abc", true);
        for port in 0..MAX_REMOTE_CANDIDATES {
            rc.admit(None, &format!("1 1 udp 1 10.0.0.1 {} typ host", port + 1000))
                .unwrap();
        }
        assert_eq!(
            rc.admit(None, "1 1 udp 1 10.0.0.2 1 typ host").err(),
            Some(Rejection::TooMany)
        );
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // A cheap fuzz: random tokens from a vocabulary that reaches every parser branch.
        use rand::{Rng, SeedableRng};
        let vocab = [
            "1",
            "udp",
            "tcp",
            "UDP",
            "typ",
            "host",
            "srflx",
            "prflx",
            "relay",
            "raddr",
            "rport",
            "tcptype",
            "passive",
            "active",
            "1.2.3.4",
            "::1",
            "x.local",
            "65535",
            "65536",
            "-1",
            "",
            "candidate:",
            "\u{0}",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut rc = RemoteCandidates::new("abc", true);
        for _ in 0..20_000 {
            let n = rng.gen_range(0..14);
            let raw: Vec<&str> = (0..n).map(|_| vocab[rng.gen_range(0..vocab.len())]).collect();
            let _ = rc.admit(None, &raw.join(" "));
        }
    }

    #[test]
    fn counters_sort_rejections_by_reason() {
        let mut c = RejectionCounters::default();
        c.count(&Rejection::Duplicate);
        c.count(&Rejection::MdnsAddress);
        c.count(&Rejection::Ipv6Disabled);
        assert_eq!((c.duplicate, c.unsupported, c.total()), (1, 2, 3));
    }
}
