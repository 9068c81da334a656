//! Connection tracking of the flows this device starts, so that their replies pass whatever
//! the rules say. Timeouts are NetBird's (`client/firewall/uspfilter/conntrack`, v0.77.1); the
//! table is bounded and, like NetBird's, makes room for a new flow by evicting an expired one,
//! else the least recently seen of a small sample.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::header::{Header, Transport, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use crate::clock::Instant;

/// NetBird's `TCPHandshakeTimeout`: a SYN with no answer.
pub const TCP_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// NetBird's `DefaultTCPTimeout`: an established connection, idle.
pub const TCP_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(3 * 60 * 60);
/// NetBird's `FinWaitTimeout` (Linux's `nf_conntrack_tcp_timeout_fin_wait`): after a FIN or RST.
pub const TCP_CLOSING_TIMEOUT: Duration = Duration::from_secs(60);
/// NetBird's `DefaultUDPTimeout`.
pub const UDP_TIMEOUT: Duration = Duration::from_secs(30);
/// NetBird's `DefaultICMPTimeout`.
pub const ICMP_TIMEOUT: Duration = Duration::from_secs(30);
/// Entries looked at to find one to evict: NetBird's conntrack samples a few (O(1) per insert
/// under a flood) rather than scanning the table.
const EVICT_SAMPLE: usize = 8;

/// Room made up front: most peers see a handful of flows, so the table grows (amortised, up
/// to its bound) only for those that see more.
const INITIAL_FLOWS: usize = 64;

use crate::packet::{
    ICMPV6_ECHO_REPLY as ECHO_REPLY_V6, ICMPV6_ECHO_REQUEST as ECHO_REQUEST_V6,
    ICMP_ECHO_REPLY as ECHO_REPLY_V4, ICMP_ECHO_REQUEST as ECHO_REQUEST_V4,
};

/// One flow, from this device's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: u8,
    pub local: IpAddr,
    pub remote: IpAddr,
    /// Local port, or the echo identifier for ICMP.
    pub local_port: u16,
    /// Remote port, 0 for ICMP.
    pub remote_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TcpState {
    SynSent,
    Established,
    Closing,
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    last_seen: Instant,
    tcp: Option<TcpState>,
    /// The idle timeout of a UDP or ICMP flow.
    idle: Duration,
}

impl Flow {
    fn timeout(&self) -> Duration {
        match self.tcp {
            Some(TcpState::SynSent) => TCP_HANDSHAKE_TIMEOUT,
            Some(TcpState::Established) => TCP_ESTABLISHED_TIMEOUT,
            Some(TcpState::Closing) => TCP_CLOSING_TIMEOUT,
            None => self.idle,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) > self.timeout()
    }
}

/// One entry's memory, key and value (hashbrown adds a control byte and keeps a quarter of
/// its slots free): at the per-peer bound of 6656 flows, 8192 slots of ~100 bytes, under 1 MB.
const _: () = assert!(std::mem::size_of::<FlowKey>() + std::mem::size_of::<Flow>() <= 96);

/// What tracking an outbound packet did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// A new or known flow; `evicted` another one to make room.
    Yes { evicted: bool },
    /// Nothing to track (an ICMP error, a later fragment, another protocol).
    No,
}

/// The flows of one peer, at most `capacity` of them; allocates only when created.
#[derive(Debug)]
pub struct FlowTable {
    flows: HashMap<FlowKey, Flow>,
    capacity: usize,
}

impl FlowTable {
    pub fn new(capacity: usize) -> Self {
        Self {
            flows: HashMap::with_capacity(capacity.min(INITIAL_FLOWS)),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// An outbound packet: starts or refreshes its flow.
    pub fn outbound(&mut self, header: &Header, now: Instant) -> Tracked {
        let Some((key, flags)) = outbound_key(header) else {
            return Tracked::No;
        };
        if let Some(flow) = self.flows.get_mut(&key) {
            if flow.expired(now) {
                *flow = new_flow(key.proto, flags, now);
            } else {
                flow.last_seen = now;
                flow.tcp = flow.tcp.map(|s| tcp_next(s, flags, false));
            }
            return Tracked::Yes { evicted: false };
        }
        let evicted = self.flows.len() >= self.capacity && self.evict_one(now);
        self.flows.insert(key, new_flow(key.proto, flags, now));
        Tracked::Yes { evicted }
    }

    /// An inbound packet: true when it belongs to a live flow this device started.
    pub fn inbound(&mut self, header: &Header, now: Instant) -> bool {
        let Some((key, flags)) = inbound_key(header) else {
            return false;
        };
        let Some(flow) = self.flows.get_mut(&key) else {
            return false;
        };
        if flow.expired(now) {
            self.flows.remove(&key);
            return false;
        }
        flow.last_seen = now;
        flow.tcp = flow.tcp.map(|s| tcp_next(s, flags, true));
        true
    }

    /// Removes one entry: an expired one if the sample has one, else the least recently seen.
    fn evict_one(&mut self, now: Instant) -> bool {
        let mut victim: Option<(FlowKey, Instant)> = None;
        for (key, flow) in self.flows.iter().take(EVICT_SAMPLE) {
            if flow.expired(now) {
                victim = Some((*key, flow.last_seen));
                break;
            }
            if victim.is_none_or(|(_, seen)| flow.last_seen < seen) {
                victim = Some((*key, flow.last_seen));
            }
        }
        let Some((key, _)) = victim else { return false };
        self.flows.remove(&key);
        true
    }
}

fn new_flow(proto: u8, flags: u8, now: Instant) -> Flow {
    Flow {
        last_seen: now,
        tcp: (proto == super::header::PROTO_TCP).then(|| tcp_next(TcpState::SynSent, flags, false)),
        idle: if proto == super::header::PROTO_UDP {
            UDP_TIMEOUT
        } else {
            ICMP_TIMEOUT
        },
    }
}

/// The flags slot of a flow that is not TCP (never read for those).
const NOT_TCP: u8 = 0;

/// Whether a packet with these flags leaves its flow's state as it is (then only its time
/// matters): anything but a TCP SYN, FIN or RST.
pub(super) fn is_steady(flags: u8) -> bool {
    flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0
}

/// The state after a segment. A flow first seen mid-stream (no SYN, e.g. after a restart) is
/// taken as established, as NetBird's tracker does for an ACK without SYN.
fn tcp_next(state: TcpState, flags: u8, inbound: bool) -> TcpState {
    if flags & (TCP_FIN | TCP_RST) != 0 {
        return TcpState::Closing;
    }
    match state {
        TcpState::Closing => TcpState::Closing,
        TcpState::Established => TcpState::Established,
        TcpState::SynSent if inbound && flags & (TCP_SYN | TCP_ACK) != 0 => TcpState::Established,
        TcpState::SynSent if !inbound && flags & TCP_SYN == 0 => TcpState::Established,
        TcpState::SynSent => TcpState::SynSent,
    }
}

/// The flow an outbound packet belongs to, and its TCP flags (0 for other protocols).
pub(super) fn outbound_key(h: &Header) -> Option<(FlowKey, u8)> {
    let (proto, local_port, remote_port, flags) = match h.transport {
        Transport::Tcp { src, dst, flags } => (super::header::PROTO_TCP, src, dst, flags),
        Transport::Udp { src, dst } => (super::header::PROTO_UDP, src, dst, NOT_TCP),
        Transport::Icmp { v6, kind, id } if kind == echo_request(v6) => (icmp_proto(v6), id, 0, NOT_TCP),
        Transport::Icmp { .. } | Transport::Fragment { .. } | Transport::Other { .. } => return None,
    };
    let key = FlowKey {
        proto,
        local: h.src,
        remote: h.dst,
        local_port,
        remote_port,
    };
    Some((key, flags))
}

/// The flow of ours an inbound packet would belong to, and its TCP flags (0 for others).
pub(super) fn inbound_key(h: &Header) -> Option<(FlowKey, u8)> {
    let (proto, local_port, remote_port, flags) = match h.transport {
        Transport::Tcp { src, dst, flags } => (super::header::PROTO_TCP, dst, src, flags),
        Transport::Udp { src, dst } => (super::header::PROTO_UDP, dst, src, NOT_TCP),
        Transport::Icmp { v6, kind, id } if kind == echo_reply(v6) => (icmp_proto(v6), id, 0, NOT_TCP),
        Transport::Icmp { .. } | Transport::Fragment { .. } | Transport::Other { .. } => return None,
    };
    let key = FlowKey {
        proto,
        local: h.dst,
        remote: h.src,
        local_port,
        remote_port,
    };
    Some((key, flags))
}

fn icmp_proto(v6: bool) -> u8 {
    if v6 {
        super::header::PROTO_ICMPV6
    } else {
        super::header::PROTO_ICMP
    }
}

fn echo_request(v6: bool) -> u8 {
    if v6 {
        ECHO_REQUEST_V6
    } else {
        ECHO_REQUEST_V4
    }
}

fn echo_reply(v6: bool) -> u8 {
    if v6 {
        ECHO_REPLY_V6
    } else {
        ECHO_REPLY_V4
    }
}
