//! Management's firewall rules, parsed once per network map, and matched per inbound packet.
//!
//! Semantics are NetBird's userspace filter (`client/internal/acl`, `client/firewall/uspfilter`,
//! v0.77.1): only inbound rules count (the filter is stateful: outbound traffic always passes
//! and its replies are let back by flow state); a drop rule for the exact source wins over any
//! accept; an accept rule matches its source address, or every source when that address is
//! `0.0.0.0` or `::`; ICMP errors always pass; whatever no rule accepts is dropped.

use std::net::IpAddr;

use super::header::{Header, Transport};
use crate::mgmt::proto::{self, PortSelection, RuleAction, RuleDirection, RuleProtocol};

/// Why a rule from management was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("invalid source address {0:?}")]
    Address(String),
    #[error("unsupported protocol {0}")]
    Protocol(i32),
    #[error("unknown action {0}")]
    Action(i32),
    #[error("unknown direction {0}")]
    Direction(i32),
    #[error("invalid port {0:?}")]
    Port(String),
    #[error("empty port range {start}-{end}")]
    Range { start: u32, end: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    All,
    Tcp,
    Udp,
    /// ICMP for an IPv4 rule, ICMPv6 for an IPv6 one (as NetBird maps it).
    Icmp,
}

/// Destination ports on this device; `None` in a rule is every port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub first: u16,
    pub last: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// `None`: any source (NetBird's `0.0.0.0` / `::`).
    pub source: Option<IpAddr>,
    /// Whether the rule's address is IPv6, for ICMP's family when `source` is any.
    pub v6: bool,
    pub protocol: Protocol,
    pub ports: Option<Ports>,
    pub drop: bool,
}

/// The rules of one network map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    /// Management sent no rule and did not say the list is empty: an older server, whose
    /// peers are allowed everything (NetBird's client does the same).
    pub allow_all: bool,
    deny: Vec<Rule>,
    accept: Vec<Rule>,
    /// Rules skipped as malformed, for status.
    pub skipped: u32,
}

/// What the rules say about an unsolicited inbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// A drop rule matched.
    Denied,
    /// No rule accepts it.
    NoRule,
}

impl RuleSet {
    /// Everything passes.
    pub fn allow_all() -> Self {
        Self {
            allow_all: true,
            ..Self::default()
        }
    }

    /// The rule set of a network map's `FirewallRules`; malformed rules are skipped and
    /// counted, outbound rules ignored (the filter is stateful).
    pub fn from_map(rules: &[proto::FirewallRule], is_empty: bool) -> Self {
        if rules.is_empty() && !is_empty {
            return Self::allow_all();
        }
        let mut set = Self::default();
        for r in rules {
            match parse(r) {
                Ok(None) => {}
                Ok(Some(rule)) if rule.drop => set.deny.push(rule),
                Ok(Some(rule)) => set.accept.push(rule),
                Err(e) => {
                    tracing::warn!(error = %e, "firewall rule skipped");
                    set.skipped += 1;
                }
            }
        }
        set
    }

    pub fn len(&self) -> usize {
        self.deny.len() + self.accept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The verdict of the rules on an inbound packet that no flow explains.
    pub fn decide(&self, header: &Header) -> Decision {
        if self.allow_all || is_icmp_error(header.transport) {
            return Decision::Accept;
        }
        let src = header.src;
        if self
            .deny
            .iter()
            .any(|r| r.source == Some(src) && r.matches(header))
        {
            return Decision::Denied;
        }
        if self
            .accept
            .iter()
            .any(|r| r.source.is_none_or(|s| s == src) && r.matches(header))
        {
            return Decision::Accept;
        }
        Decision::NoRule
    }
}

impl Rule {
    fn matches(&self, header: &Header) -> bool {
        let port_ok = |port: u16| self.ports.is_none_or(|p| (p.first..=p.last).contains(&port));
        match (self.protocol, header.transport) {
            (Protocol::All, _) => true,
            (Protocol::Tcp, Transport::Tcp { dst, .. }) => port_ok(dst),
            (Protocol::Udp, Transport::Udp { dst, .. }) => port_ok(dst),
            (Protocol::Icmp, Transport::Icmp { v6, .. }) => v6 == self.v6,
            (Protocol::Tcp | Protocol::Udp | Protocol::Icmp, _) => false,
        }
    }
}

/// ICMP errors (unreachable, time exceeded, packet too big, parameter problem) always pass,
/// as in NetBird's filter: they carry path MTU discovery and failure reports.
fn is_icmp_error(t: Transport) -> bool {
    match t {
        Transport::Icmp { v6: false, kind, .. } => matches!(kind, 3 | 11),
        Transport::Icmp { v6: true, kind, .. } => matches!(kind, 1..=4),
        Transport::Tcp { .. }
        | Transport::Udp { .. }
        | Transport::Fragment { .. }
        | Transport::Other { .. } => false,
    }
}

/// One rule; `Ok(None)` for an outbound rule, which a stateful filter does not need.
pub fn parse(r: &proto::FirewallRule) -> Result<Option<Rule>, RuleError> {
    let direction = RuleDirection::try_from(r.direction).map_err(|_| RuleError::Direction(r.direction))?;
    let action = RuleAction::try_from(r.action).map_err(|_| RuleError::Action(r.action))?;
    let protocol = match RuleProtocol::try_from(r.protocol) {
        Ok(RuleProtocol::All) => Protocol::All,
        Ok(RuleProtocol::Tcp) => Protocol::Tcp,
        Ok(RuleProtocol::Udp) => Protocol::Udp,
        Ok(RuleProtocol::Icmp) => Protocol::Icmp,
        Ok(RuleProtocol::Unknown | RuleProtocol::Custom | RuleProtocol::NetbirdSsh) | Err(_) => {
            return Err(RuleError::Protocol(r.protocol))
        }
    };
    let address = source(r)?;
    let ports = ports(r)?;
    match direction {
        RuleDirection::Out => Ok(None),
        RuleDirection::In => Ok(Some(Rule {
            source: (!address.is_unspecified()).then_some(address),
            v6: address.is_ipv6(),
            protocol,
            ports,
            drop: action == RuleAction::Drop,
        })),
    }
}

/// The first source prefix's address (as NetBird's client takes it), else `peer_ip`.
fn source(r: &proto::FirewallRule) -> Result<IpAddr, RuleError> {
    let Some(prefix) = r.source_prefixes.first() else {
        return r
            .peer_ip
            .parse::<IpAddr>()
            .map(|a| a.to_canonical())
            .map_err(|_| RuleError::Address(r.peer_ip.clone()));
    };
    let bad = || RuleError::Address(format!("{prefix:02x?}"));
    let (ip, bits) = match prefix.as_slice() {
        [a, b, c, d, bits] => (IpAddr::from([*a, *b, *c, *d]), *bits),
        [bytes @ .., bits] if bytes.len() == 16 => {
            let octets: [u8; 16] = bytes.try_into().map_err(|_| bad())?;
            (IpAddr::from(octets).to_canonical(), *bits)
        }
        _ => return Err(bad()),
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(bad());
    }
    Ok(ip)
}

/// `port_info` when present, else the old text `port`, else every port.
fn ports(r: &proto::FirewallRule) -> Result<Option<Ports>, RuleError> {
    let to_port = |v: u32| u16::try_from(v).ok().filter(|p| *p != 0);
    match r.port_info.as_ref().and_then(|p| p.port_selection.as_ref()) {
        // NetBird's client reads port 0 as "no port", which widens the rule to every port; a
        // rule that names port 0 is malformed here instead (issue 15's bad-input cases).
        Some(PortSelection::Port(p)) => {
            let port = to_port(*p).ok_or_else(|| RuleError::Port(p.to_string()))?;
            return Ok(Some(Ports {
                first: port,
                last: port,
            }));
        }
        Some(PortSelection::Range(range)) => {
            let (Some(first), Some(last)) = (to_port(range.start), to_port(range.end)) else {
                return Err(RuleError::Range {
                    start: range.start,
                    end: range.end,
                });
            };
            if first > last {
                return Err(RuleError::Range {
                    start: range.start,
                    end: range.end,
                });
            }
            return Ok(Some(Ports { first, last }));
        }
        None => {}
    }
    if r.port.is_empty() {
        return Ok(None);
    }
    let port = r
        .port
        .parse::<u32>()
        .ok()
        .and_then(to_port)
        .ok_or_else(|| RuleError::Port(r.port.clone()))?;
    Ok(Some(Ports {
        first: port,
        last: port,
    }))
}
