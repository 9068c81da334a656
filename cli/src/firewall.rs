//! `[[firewall]]` in `up`'s configuration: inbound rules for an engine without management
//! (benchmarks, tests, a fixed pair of peers), in the terms of NetBird's policies. They go
//! through the same parser as management's `FirewallRules`, so they mean the same thing; a
//! network map from management replaces them.
//!
//! ```toml
//! [[firewall]]
//! source = "100.64.0.2"   # a peer's address; "0.0.0.0" or "::" for every peer
//! protocol = "tcp"        # all, tcp, udp, icmp
//! ports = "22"            # or "8000-8100"; none: every port
//! action = "accept"       # or "drop"
//! ```
//!
//! `firewall = []` is an empty rule list: every unsolicited inbound packet is dropped.

use peerlink_core::filter::{rules, RuleSet};
use peerlink_core::mgmt::proto::{
    FirewallRule, PortInfo, PortRange, PortSelection, RuleAction, RuleDirection, RuleProtocol,
};
use serde::Deserialize;

/// One rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallSpec {
    pub source: String,
    pub protocol: String,
    #[serde(default)]
    pub ports: Option<String>,
    #[serde(default = "accept")]
    pub action: String,
}

fn accept() -> String {
    "accept".to_owned()
}

/// A rule the configuration gets wrong, with its place in the list.
#[derive(Debug, thiserror::Error)]
#[error("firewall[{index}]: {problem}")]
pub struct FirewallError {
    pub index: usize,
    pub problem: String,
}

/// The rule set of the `[[firewall]]` list; refuses the first malformed rule.
pub fn rule_set(specs: &[FirewallSpec]) -> Result<RuleSet, FirewallError> {
    let mut proto_rules = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let bad = |problem: String| FirewallError { index, problem };
        let rule = to_proto(spec).map_err(bad)?;
        rules::parse(&rule).map_err(|e| bad(e.to_string()))?;
        proto_rules.push(rule);
    }
    Ok(RuleSet::from_map(&proto_rules, true))
}

fn to_proto(spec: &FirewallSpec) -> Result<FirewallRule, String> {
    let protocol = match spec.protocol.as_str() {
        "all" => RuleProtocol::All,
        "tcp" => RuleProtocol::Tcp,
        "udp" => RuleProtocol::Udp,
        "icmp" => RuleProtocol::Icmp,
        other => return Err(format!("protocol `{other}`: use all, tcp, udp or icmp")),
    };
    let action = match spec.action.as_str() {
        "accept" => RuleAction::Accept,
        "drop" => RuleAction::Drop,
        other => return Err(format!("action `{other}`: use accept or drop")),
    };
    let port_info = spec.ports.as_deref().map(ports).transpose()?;
    Ok(FirewallRule {
        peer_ip: spec.source.trim().to_owned(),
        direction: RuleDirection::In as i32,
        action: action as i32,
        protocol: protocol as i32,
        port_info,
        ..FirewallRule::default()
    })
}

/// "22" or "8000-8100".
fn ports(text: &str) -> Result<PortInfo, String> {
    let number = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("ports `{text}`: a port (22) or a range (8000-8100)"))
    };
    let port_selection = match text.split_once('-') {
        Some((start, end)) => PortSelection::Range(PortRange {
            start: number(start)?,
            end: number(end)?,
        }),
        None => PortSelection::Port(number(text)?),
    };
    Ok(PortInfo {
        port_selection: Some(port_selection),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: &str, protocol: &str, ports: Option<&str>) -> FirewallSpec {
        FirewallSpec {
            source: source.into(),
            protocol: protocol.into(),
            ports: ports.map(Into::into),
            action: accept(),
        }
    }

    #[test]
    fn rules_as_written_become_a_rule_set() {
        let set = rule_set(&[
            spec("10.0.0.2", "tcp", Some("22")),
            spec("0.0.0.0", "udp", Some("8000-8100")),
            spec("::", "icmp", None),
        ])
        .expect("valid rules");
        assert_eq!(set.len(), 3);
        assert!(!set.allow_all);
        assert!(
            rule_set(&[]).expect("no rules").is_empty(),
            "an empty list drops unsolicited inbound"
        );
    }

    #[test]
    fn a_malformed_rule_is_refused_with_its_index() {
        for (bad, what) in [
            (spec("10.0.0.300", "tcp", Some("22")), "source address"),
            (spec("10.0.0.2", "sctp", None), "protocol"),
            (spec("10.0.0.2", "tcp", Some("0")), "port"),
            (spec("10.0.0.2", "tcp", Some("90-80")), "range"),
            (spec("10.0.0.2", "tcp", Some("http")), "ports"),
        ] {
            let err = rule_set(&[spec("10.0.0.2", "tcp", None), bad]).expect_err(what);
            assert_eq!(err.index, 1, "{what}: {err}");
        }
    }
}
