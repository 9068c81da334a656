//! Receive offload towards a Linux tun (`IFF_VNET_HDR`): consecutive segments of one TCP flow,
//! as they come out of a run of WireGuard datagrams, are written to the tun as one super-packet
//! that the kernel takes as a GRO'd packet, so its stack runs once per run instead of once per
//! segment (what wireguard-go does on Linux). Anything else goes through one by one, in order.
//! Pure: the caller hands packets in and writes the frames it is given.

use super::offload::{add, fold, get_u16, get_u32, pseudo_header, set_u16, VnetHdr, VNET_HDR_LEN};

/// linux/virtio_net.h values (see `offload`).
const F_NEEDS_CSUM: u8 = 1;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
/// TCP flag bits (RFC 9293): a run carries ACK, and PSH ends it.
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// IANA protocol number of TCP.
const PROTO_TCP: u8 = 6;
/// Header lengths this coalesces: IPv4 without options (RFC 791), IPv6 without extension
/// headers (RFC 8200), and TCP's minimum (RFC 9293).
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_MIN_HEADER: usize = 20;
/// The largest super-packet: IPv4's total-length field (IPv6's payload length would allow 40
/// bytes more; one bound keeps it simple).
pub(crate) const MAX_RUN_BYTES: usize = u16::MAX as usize;

/// One frame for the tun: a header and the packet behind it.
#[derive(Debug)]
pub struct Frame<'a> {
    pub header: [u8; VNET_HDR_LEN],
    pub packet: &'a [u8],
    /// How many packets the frame stands for, and their bytes as IP packets.
    pub packets: usize,
    pub ip_bytes: usize,
}

/// Builds runs of TCP segments into super-packets.
#[derive(Debug)]
pub struct Coalescer {
    /// The run's packet: the first segment's headers, then every segment's payload.
    buf: Vec<u8>,
    run: Option<Run>,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    v4: bool,
    l4: usize,
    headers: usize,
    /// Bytes in `buf`.
    len: usize,
    /// Payload bytes of every segment but possibly the last.
    segment: usize,
    count: usize,
    next_seq: u32,
    /// A PSH or a short segment ended it: it takes nothing more.
    closed: bool,
}

/// A TCP segment that may join a run.
#[derive(Debug, Clone, Copy)]
struct Segment {
    v4: bool,
    l4: usize,
    headers: usize,
    payload: usize,
    seq: u32,
    flags: u8,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl Coalescer {
    pub fn new() -> Self {
        Self {
            buf: vec![0; MAX_RUN_BYTES],
            run: None,
        }
    }

    /// Adds a packet. Frames that are complete (the run it cannot join, or the packet itself
    /// when it cannot start one) go to `write` at once; the rest waits for [`Coalescer::flush`].
    pub fn push(&mut self, packet: &[u8], mut write: impl FnMut(Frame<'_>)) {
        let segment = Segment::parse(packet);
        if let Some(s) = segment {
            if self.append(packet, s) {
                return;
            }
        }
        self.flush(&mut write);
        match segment {
            Some(s) => self.start(packet, s),
            None => write(Frame {
                header: [0; VNET_HDR_LEN],
                packet,
                packets: 1,
                ip_bytes: packet.len(),
            }),
        }
    }

    /// Writes the pending run, if any.
    pub fn flush(&mut self, mut write: impl FnMut(Frame<'_>)) {
        let Some(run) = self.run.take() else { return };
        let Some(packet) = self.buf.get_mut(..run.len) else {
            return;
        };
        if run.count == 1 {
            // One segment, as it arrived: nothing to redo.
            write(Frame {
                header: [0; VNET_HDR_LEN],
                packet,
                packets: 1,
                ip_bytes: run.len,
            });
            return;
        }
        let (gso_type, length_at, length) = if run.v4 {
            (GSO_TCPV4, 2, run.len)
        } else {
            (GSO_TCPV6, 4, run.len - IPV6_HEADER)
        };
        let _ = set_u16(packet, length_at, length as u16);
        if run.v4 {
            let _ = set_u16(packet, 10, 0);
            let sum = packet.get(..IPV4_HEADER).map_or(0, |h| add(0, h));
            let _ = set_u16(packet, 10, !fold(sum));
        }
        // CHECKSUM_PARTIAL: the field holds the pseudo-header's sum, as the kernel's own GRO
        // leaves it; the payload was checked segment by segment on the way in.
        let partial = fold(pseudo_header(packet, run.v4, run.len - run.l4));
        let _ = set_u16(packet, run.l4 + 16, partial);
        let header = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: run.headers as u16,
            gso_size: run.segment as u16,
            csum_start: run.l4 as u16,
            csum_offset: 16,
        };
        write(Frame {
            header: header.to_bytes(),
            packet,
            packets: run.count,
            ip_bytes: run.count * run.headers + (run.len - run.headers),
        });
    }

    fn start(&mut self, packet: &[u8], s: Segment) {
        let Some(dst) = self.buf.get_mut(..packet.len()) else {
            return;
        };
        dst.copy_from_slice(packet);
        self.run = Some(Run {
            v4: s.v4,
            l4: s.l4,
            headers: s.headers,
            len: packet.len(),
            segment: s.payload,
            count: 1,
            next_seq: s.seq.wrapping_add(s.payload as u32),
            closed: s.flags & TCP_PSH != 0,
        });
    }

    /// Appends `packet` to the run if it is the flow's next segment with the same headers.
    fn append(&mut self, packet: &[u8], s: Segment) -> bool {
        let Some(run) = self.run.as_mut() else {
            return false;
        };
        let joins = !run.closed
            && s.v4 == run.v4
            && s.headers == run.headers
            && s.seq == run.next_seq
            && s.payload <= run.segment
            && run.len + s.payload <= MAX_RUN_BYTES
            && same_headers(self.buf.get(..run.headers).unwrap_or_default(), packet, s);
        let payload = packet.get(s.headers..).unwrap_or_default();
        let Some(dst) = self
            .buf
            .get_mut(run.len..run.len + payload.len())
            .filter(|_| joins)
        else {
            return false;
        };
        dst.copy_from_slice(payload);
        run.len += payload.len();
        run.count += 1;
        run.next_seq = run.next_seq.wrapping_add(payload.len() as u32);
        if s.payload < run.segment {
            run.closed = true;
        }
        if s.flags & TCP_PSH != 0 {
            if let Some(flags) = self.buf.get_mut(run.l4 + 13) {
                *flags |= TCP_PSH;
            }
            run.closed = true;
        }
        true
    }
}

impl Segment {
    /// A TCP data segment carrying ACK (and maybe PSH) and nothing else, with no IP options or
    /// fragments, whose checksum verifies (a run's checksum is not checked again).
    fn parse(p: &[u8]) -> Option<Segment> {
        let v4 = match p.first()? >> 4 {
            4 => {
                let plain = *p.first()? == 0x45
                    && *p.get(9)? == PROTO_TCP
                    && get_u16(p, 6)? & 0x3fff == 0
                    && usize::from(get_u16(p, 2)?) == p.len();
                plain.then_some(true)?
            }
            6 => {
                let plain = *p.get(6)? == PROTO_TCP && usize::from(get_u16(p, 4)?) + IPV6_HEADER == p.len();
                plain.then_some(false)?
            }
            _ => return None,
        };
        let l4 = if v4 { IPV4_HEADER } else { IPV6_HEADER };
        let headers = l4 + usize::from(*p.get(l4 + 12)? >> 4) * 4;
        let flags = *p.get(l4 + 13)?;
        let payload = p.len().checked_sub(headers)?;
        let fits = headers >= l4 + TCP_MIN_HEADER && payload > 0 && flags & !TCP_PSH == TCP_ACK;
        if !fits || fold(add(pseudo_header(p, v4, p.len() - l4), p.get(l4..)?)) != 0xffff {
            return None;
        }
        Some(Segment {
            v4,
            l4,
            headers,
            payload,
            seq: get_u32(p, l4 + 4)?,
            flags,
        })
    }
}

/// Whether `packet`'s headers match the run's (`first`) in everything a run must share: the IP
/// header but its length, id and checksum; the TCP header but its sequence number, flags and
/// checksum.
fn same_headers(first: &[u8], packet: &[u8], s: Segment) -> bool {
    let l4 = s.l4;
    let ip_ranges: &[(usize, usize)] = if s.v4 {
        &[(0, 2), (6, 10), (12, IPV4_HEADER)]
    } else {
        &[(0, 4), (6, IPV6_HEADER)]
    };
    let tcp_ranges = [
        (l4, l4 + 4),
        (l4 + 8, l4 + 13),
        (l4 + 14, l4 + 16),
        (l4 + 18, s.headers),
    ];
    ip_ranges
        .iter()
        .chain(tcp_ranges.iter())
        .all(|&(a, b)| first.get(a..b).is_some_and(|x| Some(x) == packet.get(a..b)))
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;
