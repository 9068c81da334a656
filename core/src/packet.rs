//! Small IP packet builders and readers for the demo, tests and benchmarks: ICMP echo (v4 and
//! v6) and UDP, with correct checksums so a real kernel on the far side accepts them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IANA protocol numbers.
const PROTO_ICMP: u8 = 1;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
/// RFC 792 / RFC 4443 message types (the packet filter's flow tracking reads them too).
pub(crate) const ICMP_ECHO_REQUEST: u8 = 8;
pub(crate) const ICMP_ECHO_REPLY: u8 = 0;
pub(crate) const ICMPV6_ECHO_REQUEST: u8 = 128;
pub(crate) const ICMPV6_ECHO_REPLY: u8 = 129;
/// Default TTL / hop limit (Linux's).
const TTL: u8 = 64;

/// An ICMP echo request from `src` to `dst` with `payload_len` payload bytes (both addresses
/// must be of one family; a mixed pair yields `None`).
pub fn icmp_echo_request(src: IpAddr, dst: IpAddr, id: u16, seq: u16, payload_len: usize) -> Option<Vec<u8>> {
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(ipv4(
            s,
            d,
            PROTO_ICMP,
            &icmp(ICMP_ECHO_REQUEST, id, seq, &payload, None),
        )),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(ipv6(
            s,
            d,
            PROTO_ICMPV6,
            &icmp(ICMPV6_ECHO_REQUEST, id, seq, &payload, Some((s, d))),
        )),
        _ => None,
    }
}

/// A UDP datagram inside an IP packet; the IP packet is `header + 8 + payload.len()` long.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(8 + payload.len()).ok()?;
    let mut seg = Vec::with_capacity(8 + payload.len());
    seg.extend_from_slice(&sport.to_be_bytes());
    seg.extend_from_slice(&dport.to_be_bytes());
    seg.extend_from_slice(&len.to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
    seg.extend_from_slice(payload);
    let sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum(&[&pseudo_v4(s, d, PROTO_UDP, seg.len()), &seg]),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum(&[&pseudo_v6(s, d, PROTO_UDP, seg.len()), &seg]),
        _ => return None,
    };
    // RFC 768: a computed zero is sent as all ones.
    let sum = if sum == 0 { 0xffff } else { sum };
    seg.get_mut(6..8)?.copy_from_slice(&sum.to_be_bytes());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(ipv4(s, d, PROTO_UDP, &seg)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(ipv6(s, d, PROTO_UDP, &seg)),
        _ => None,
    }
}

/// An echo request or reply, read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub reply: bool,
    pub id: u16,
    pub seq: u16,
}

/// Reads an ICMP or ICMPv6 echo request or reply; `None` for anything else.
pub fn parse_echo(packet: &[u8]) -> Option<Echo> {
    let (src, dst) = crate::net::packet_addrs(packet)?;
    let (proto, icmp) = match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet.first()? & 0x0f) * 4;
            (*packet.get(9)?, packet.get(ihl..)?)
        }
        6 => (*packet.get(6)?, packet.get(40..)?),
        _ => return None,
    };
    let ty = *icmp.first()?;
    let reply = match (proto, ty) {
        (PROTO_ICMP, ICMP_ECHO_REQUEST) | (PROTO_ICMPV6, ICMPV6_ECHO_REQUEST) => false,
        (PROTO_ICMP, ICMP_ECHO_REPLY) | (PROTO_ICMPV6, ICMPV6_ECHO_REPLY) => true,
        _ => return None,
    };
    let id = u16::from_be_bytes(icmp.get(4..6)?.try_into().ok()?);
    let seq = u16::from_be_bytes(icmp.get(6..8)?.try_into().ok()?);
    Some(Echo {
        src,
        dst,
        reply,
        id,
        seq,
    })
}

/// The reply a host would send to an echo request: addresses swapped, type changed.
pub fn echo_reply_to(request: &[u8]) -> Option<Vec<u8>> {
    let echo = parse_echo(request)?;
    if echo.reply {
        return None;
    }
    let payload = match request.first()? >> 4 {
        4 => request.get(usize::from(request.first()? & 0x0f) * 4 + 8..)?,
        _ => request.get(48..)?,
    };
    match (echo.dst, echo.src) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(ipv4(
            s,
            d,
            PROTO_ICMP,
            &icmp(ICMP_ECHO_REPLY, echo.id, echo.seq, payload, None),
        )),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(ipv6(
            s,
            d,
            PROTO_ICMPV6,
            &icmp(ICMPV6_ECHO_REPLY, echo.id, echo.seq, payload, Some((s, d))),
        )),
        _ => None,
    }
}

fn icmp(ty: u8, id: u16, seq: u16, payload: &[u8], v6: Option<(Ipv6Addr, Ipv6Addr)>) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + payload.len());
    m.extend_from_slice(&[ty, 0, 0, 0]);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let sum = match v6 {
        Some((s, d)) => checksum(&[&pseudo_v6(s, d, PROTO_ICMPV6, m.len()), &m]),
        None => checksum(&[&m]),
    };
    if let Some(c) = m.get_mut(2..4) {
        c.copy_from_slice(&sum.to_be_bytes());
    }
    m
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, body: &[u8]) -> Vec<u8> {
    let total = (20 + body.len()) as u16;
    let mut p = Vec::with_capacity(total as usize);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, TTL, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = checksum(&[p.get(..20).unwrap_or_default()]);
    if let Some(c) = p.get_mut(10..12) {
        c.copy_from_slice(&sum.to_be_bytes());
    }
    p.extend_from_slice(body);
    p
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + body.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, TTL]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(body);
    p
}

fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(12);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&[0, proto]);
    h.extend_from_slice(&(len as u16).to_be_bytes());
    h
}

fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(40);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&(len as u32).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, next]);
    h
}

/// RFC 1071 Internet checksum over the concatenation of `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for b in parts.iter().flat_map(|p| p.iter()) {
        match odd.take() {
            Some(hi) => sum += u32::from(u16::from_be_bytes([hi, *b])),
            None => odd = Some(*b),
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_round_trips_v4_and_v6() {
        for (s, d) in [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")] {
            let (s, d): (IpAddr, IpAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let req = icmp_echo_request(s, d, 7, 9, 56).unwrap();
            assert_eq!(
                parse_echo(&req),
                Some(Echo {
                    src: s,
                    dst: d,
                    reply: false,
                    id: 7,
                    seq: 9
                })
            );
            let rep = echo_reply_to(&req).unwrap();
            assert_eq!(
                parse_echo(&rep),
                Some(Echo {
                    src: d,
                    dst: s,
                    reply: true,
                    id: 7,
                    seq: 9
                })
            );
            assert_eq!(rep.len(), req.len());
        }
    }

    #[test]
    fn ipv4_header_checksum_verifies() {
        let p = icmp_echo_request("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 1, 1, 3).unwrap();
        assert_eq!(checksum(&[&p[..20]]), 0);
        assert_eq!(checksum(&[&p[20..]]), 0, "odd-length ICMP checksum");
    }

    #[test]
    fn udp_has_exact_length() {
        let p = udp(
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            1,
            2,
            &[0; 100],
        )
        .unwrap();
        assert_eq!(p.len(), 40 + 8 + 100);
        assert!(udp("fd00::1".parse().unwrap(), "10.0.0.1".parse().unwrap(), 1, 2, &[]).is_none());
    }
}
