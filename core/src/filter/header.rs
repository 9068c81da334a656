//! The few header fields the filter decides on, read in place from an IP packet (no copy, no
//! allocation).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IANA protocol numbers.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
/// IPv6 extension headers walked to reach the transport header (hop-by-hop, routing,
/// destination options); the fragment header (44) is handled on its own.
const IPV6_EXTENSIONS: [u8; 3] = [0, 43, 60];
/// IPv6 fragment header.
const IPV6_FRAGMENT: u8 = 44;
/// A bound on extension headers walked, so a chain of them cannot cost more.
const MAX_IPV6_EXTENSIONS: usize = 8;

/// TCP flag bits (RFC 9293).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// What the transport header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        src: u16,
        dst: u16,
        flags: u8,
    },
    Udp {
        src: u16,
        dst: u16,
    },
    /// ICMP or ICMPv6: `id` is the echo identifier (0 for other types).
    Icmp {
        v6: bool,
        kind: u8,
        id: u16,
    },
    /// A later fragment: no transport header.
    Fragment {
        proto: u8,
    },
    Other {
        proto: u8,
    },
}

/// The parsed header of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport,
}

impl Header {
    /// `None` for what is not a well-formed IPv4 or IPv6 packet with a readable transport
    /// header.
    pub fn parse(packet: &[u8]) -> Option<Header> {
        match packet.first()? >> 4 {
            4 => parse_v4(packet),
            6 => parse_v6(packet),
            _ => None,
        }
    }
}

fn parse_v4(p: &[u8]) -> Option<Header> {
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let frag = u16::from_be_bytes([*p.get(6)?, *p.get(7)?]);
    let proto = *p.get(9)?;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(p.get(12..16)?).ok()?);
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(p.get(16..20)?).ok()?);
    let transport = if frag & 0x1fff != 0 {
        Transport::Fragment { proto }
    } else {
        transport(proto, p.get(ihl..)?, false)?
    };
    Some(Header {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        transport,
    })
}

fn parse_v6(p: &[u8]) -> Option<Header> {
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(p.get(8..24)?).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(p.get(24..40)?).ok()?);
    let mut next = *p.get(6)?;
    let mut at = 40usize;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        if IPV6_EXTENSIONS.contains(&next) {
            let len = (usize::from(*p.get(at + 1)?) + 1) * 8;
            next = *p.get(at)?;
            at += len;
            continue;
        }
        if next == IPV6_FRAGMENT {
            let offset = u16::from_be_bytes([*p.get(at + 2)?, *p.get(at + 3)?]) >> 3;
            let proto = *p.get(at)?;
            at += 8;
            if offset != 0 {
                return Some(Header {
                    src: IpAddr::V6(src),
                    dst: IpAddr::V6(dst),
                    transport: Transport::Fragment { proto },
                });
            }
            next = proto;
            continue;
        }
        return Some(Header {
            src: IpAddr::V6(src),
            dst: IpAddr::V6(dst),
            transport: transport(next, p.get(at..)?, true)?,
        });
    }
    None
}

fn transport(proto: u8, l4: &[u8], v6: bool) -> Option<Transport> {
    let port = |i: usize| Some(u16::from_be_bytes([*l4.get(i)?, *l4.get(i + 1)?]));
    Some(match proto {
        PROTO_TCP => Transport::Tcp {
            src: port(0)?,
            dst: port(2)?,
            flags: *l4.get(13)?,
        },
        PROTO_UDP => Transport::Udp {
            src: port(0)?,
            dst: port(2)?,
        },
        PROTO_ICMP | PROTO_ICMPV6 if (proto == PROTO_ICMPV6) == v6 => {
            let kind = *l4.first()?;
            let id = if l4.len() >= 6 { port(4)? } else { 0 };
            Transport::Icmp { v6, kind, id }
        }
        other => Transport::Other { proto: other },
    })
}
