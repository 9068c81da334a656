//! NetBird's access policies on this device: a stateful packet filter between WireGuard and
//! the tun, fed by the `FirewallRules` of each network map.
//!
//! [`rules`] parses and matches the rules, [`flows`] tracks the flows this device starts so
//! that their replies pass, [`header`] reads the fields both need. [`PeerFilter`] puts them
//! together per peer, purely: packets and `now` in, a [`Verdict`] out; [`recent`] lets the
//! packets of busy flows through without a lock.

pub mod flows;
pub mod header;
pub mod recent;
pub mod rules;

pub use flows::{FlowTable, Tracked};
pub use header::Header;
pub use recent::RecentFlows;
pub use rules::{Decision, RuleError, RuleSet};

use parking_lot::Mutex;

use crate::clock::Instant;

/// Flows tracked per peer: NetBird's mobile caps (`conntrack/defaults_mobile.go`: 4096 TCP +
/// 2048 UDP + 512 ICMP, "well under 5 MB"), as one table per peer.
pub const FLOWS_PER_PEER: usize = 4096 + 2048 + 512;

/// What becomes of an inbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop(DropReason),
}

/// Why an inbound packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No rule accepts it and no flow of ours explains it.
    NoRule,
    /// A drop rule matched.
    Denied,
    /// Not a readable IP packet (NetBird's filter drops those too).
    Malformed,
}

/// The filter state of one peer: its flows. Shared by the tun and socket tasks: the flows of
/// the moment pass through [`RecentFlows`] without a lock; the rest take the table's.
#[derive(Debug)]
pub struct PeerFilter {
    flows: Mutex<FlowTable>,
    recent: RecentFlows,
    /// When a drop was last logged, to rate-limit the log (taken only on drops).
    last_drop_log: Mutex<Option<Instant>>,
}

impl Default for PeerFilter {
    fn default() -> Self {
        Self::new(FLOWS_PER_PEER)
    }
}

impl PeerFilter {
    pub fn new(capacity: usize) -> Self {
        Self {
            flows: Mutex::new(FlowTable::new(capacity)),
            recent: RecentFlows::default(),
            last_drop_log: Mutex::new(None),
        }
    }

    /// A decrypted packet from the peer, on its way to the tun.
    pub fn inbound(&self, rules: &RuleSet, packet: &[u8], now: Instant) -> Verdict {
        if rules.allow_all {
            return Verdict::Pass;
        }
        let Some(header) = Header::parse(packet) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        if let header::Transport::Fragment { .. } = header.transport {
            // A later fragment has no ports to judge; without the first fragment, which the
            // rules did judge, the stack cannot reassemble it and discards it.
            return Verdict::Pass;
        }
        let flow = flows::inbound_key(&header);
        if let Some((key, flags)) = &flow {
            if flows::is_steady(*flags) && self.recent.is_fresh(key, now) {
                return Verdict::Pass;
            }
        }
        if self.flows.lock().inbound(&header, now) {
            if let Some((key, _)) = &flow {
                self.recent.confirm(key, now);
            }
            return Verdict::Pass;
        }
        match rules.decide(&header) {
            Decision::Accept => Verdict::Pass,
            Decision::Denied => Verdict::Drop(DropReason::Denied),
            Decision::NoRule => Verdict::Drop(DropReason::NoRule),
        }
    }

    /// A packet from the tun to the peer: it always passes (NetBird's filter is stateful and
    /// ignores outbound rules); its flow is tracked so that the replies pass.
    pub fn outbound(&self, packet: &[u8], now: Instant) -> Tracked {
        let Some(header) = Header::parse(packet) else {
            return Tracked::No;
        };
        let Some((key, flags)) = flows::outbound_key(&header) else {
            return Tracked::No;
        };
        if flows::is_steady(flags) && self.recent.is_fresh(&key, now) {
            return Tracked::Yes { evicted: false };
        }
        let tracked = self.flows.lock().outbound(&header, now);
        self.recent.confirm(&key, now);
        tracked
    }

    /// Whether a drop seen at `now` may be logged: at most one per `interval`.
    pub fn should_log_drop(&self, now: Instant, interval: std::time::Duration) -> bool {
        let mut last = self.last_drop_log.lock();
        if last.is_some_and(|last| now.saturating_duration_since(last) < interval) {
            return false;
        }
        *last = Some(now);
        true
    }

    pub fn flows(&self) -> usize {
        self.flows.lock().len()
    }
}

#[cfg(test)]
mod tests;
