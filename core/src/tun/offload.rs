//! Linux tun offload (`IFF_VNET_HDR` with `TUNSETOFFLOAD`): every frame on the fd starts with a
//! `virtio_net_hdr`. With TSO on, one read brings a TCP "super-packet" of up to 64 KiB that we
//! cut into MTU-sized segments here, so one syscall and one pass through the kernel's stack
//! stand for dozens of packets (wireguard-go does the same on Linux; per-packet tun reads were
//! the direct path's ceiling). Pure functions on byte slices: headers and checksums.

/// linux/virtio_net.h `struct virtio_net_hdr`: flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset; 10 bytes, host byte order on a tun (the legacy layout).
pub const VNET_HDR_LEN: usize = 10;
/// The largest frame a read brings: a GSO packet of the tun's default `gso_max_size` (64 KiB,
/// `GSO_LEGACY_MAX_SIZE`) behind its header.
pub const MAX_FRAME: usize = VNET_HDR_LEN + 65_536;

/// linux/virtio_net.h: the packet's L4 checksum is left for us to complete.
const F_NEEDS_CSUM: u8 = 1;
/// linux/virtio_net.h gso_type values; ECN is a flag bit on top of the TCP ones.
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_ECN: u8 = 0x80;
/// TCP flag bits (RFC 9293) that only the last (FIN, PSH) or first (CWR) segment keeps, as the
/// kernel's own segmentation does.
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
/// IANA protocol number of TCP, for the pseudo-header.
const PROTO_TCP: u8 = 6;
/// Fixed header lengths (RFC 791 minimum, RFC 8200, RFC 9293 minimum).
const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_MIN_HEADER: usize = 20;

/// A frame the kernel handed us that does not describe packets we can rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    #[error("frame of {0} bytes is shorter than its virtio header")]
    Short(usize),
    #[error("unsupported GSO type {0:#x}")]
    GsoType(u8),
    #[error("malformed offloaded packet: {0}")]
    Malformed(&'static str),
}

/// The header in front of every frame of an offloading tun.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8]) -> Option<Self> {
        let h: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let [flags, gso_type, l0, l1, s0, s1, c0, c1, o0, o1] = *h;
        Some(Self {
            flags,
            gso_type,
            hdr_len: u16::from_ne_bytes([l0, l1]),
            gso_size: u16::from_ne_bytes([s0, s1]),
            csum_start: u16::from_ne_bytes([c0, c1]),
            csum_offset: u16::from_ne_bytes([o0, o1]),
        })
    }

    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let [l0, l1] = self.hdr_len.to_ne_bytes();
        let [s0, s1] = self.gso_size.to_ne_bytes();
        let [c0, c1] = self.csum_start.to_ne_bytes();
        let [o0, o1] = self.csum_offset.to_ne_bytes();
        [self.flags, self.gso_type, l0, l1, s0, s1, c0, c1, o0, o1]
    }
}

/// Hands each IP packet that `frame` (header included) stands for to `each`: the packet itself,
/// with its checksum completed if the kernel left that to us, or the segments of a TCP
/// super-packet, built one at a time in `scratch`. Returns how many packets `each` saw; on an
/// error it saw none.
pub fn split(
    frame: &mut [u8],
    scratch: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let Some(hdr) = VnetHdr::parse(frame) else {
        return Err(OffloadError::Short(frame.len()));
    };
    let packet = frame.get_mut(VNET_HDR_LEN..).unwrap_or_default();
    match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0 {
                complete_checksum(packet, hdr)?;
            }
            each(packet);
            Ok(1)
        }
        GSO_TCPV4 | GSO_TCPV6 => segment_tcp(packet, hdr, scratch, each),
        other => Err(OffloadError::GsoType(other)),
    }
}

/// Finishes a checksum the kernel left partial: the field holds the pseudo-header's sum, and the
/// sum from `csum_start` to the end goes into it (the kernel's `skb_checksum_help`).
fn complete_checksum(packet: &mut [u8], hdr: VnetHdr) -> Result<(), OffloadError> {
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > packet.len() {
        return Err(OffloadError::Malformed("checksum field beyond the packet"));
    }
    let sum = packet.get(start..).map_or(0, |l4| add(0, l4));
    // A computed zero is sent as all ones (CSUM_MANGLED_0): zero means "no checksum" in UDP.
    let value = match !fold(sum) {
        0 => 0xffff,
        v => v,
    };
    set_u16(packet, field, value).ok_or(OffloadError::Malformed("checksum field beyond the packet"))
}

/// The layout of a TCP super-packet, checked once before any segment is built.
#[derive(Debug, Clone, Copy)]
struct TcpLayout {
    v4: bool,
    /// Where the TCP header starts (the IP header's length, extension headers included).
    l4: usize,
    /// IP and TCP headers together: what every segment repeats.
    headers: usize,
    mss: usize,
}

fn tcp_layout(packet: &[u8], hdr: VnetHdr) -> Result<TcpLayout, OffloadError> {
    let malformed = OffloadError::Malformed;
    let version = packet.first().map(|b| b >> 4);
    let v4 = match (version, hdr.gso_type & !GSO_ECN) {
        (Some(4), GSO_TCPV4) => true,
        (Some(6), GSO_TCPV6) => false,
        _ => return Err(malformed("GSO type does not match the IP version")),
    };
    let l4 = usize::from(hdr.csum_start);
    let ip_ok = if v4 {
        let ihl = packet.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
        ihl >= IPV4_MIN_HEADER && l4 == ihl && packet.get(9) == Some(&PROTO_TCP)
    } else {
        l4 >= IPV6_HEADER
    };
    if !ip_ok || hdr.flags & F_NEEDS_CSUM == 0 || hdr.csum_offset != 16 {
        return Err(malformed("TSO packet whose headers are not IP then TCP"));
    }
    let tcp_header = packet.get(l4 + 12).map_or(0, |b| usize::from(b >> 4) * 4);
    let headers = l4 + tcp_header;
    if tcp_header < TCP_MIN_HEADER || headers > packet.len() {
        return Err(malformed("TCP header beyond the packet"));
    }
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(malformed("TSO packet with a zero segment size"));
    }
    Ok(TcpLayout { v4, l4, headers, mss })
}

/// Cuts a TCP super-packet into segments of `gso_size` payload bytes, as the kernel's
/// `tcp_gso_segment` would: the headers repeated, IPv4 ids counting up, sequence numbers
/// advancing, FIN and PSH on the last segment only, CWR on the first only, both checksums
/// computed in full.
fn segment_tcp(
    packet: &[u8],
    hdr: VnetHdr,
    scratch: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let layout = tcp_layout(packet, hdr)?;
    let TcpLayout { v4, l4, headers, mss } = layout;
    if headers + mss > scratch.len() {
        return Err(OffloadError::Malformed("segment larger than the scratch buffer"));
    }
    let (head, payload) = packet.split_at_checked(headers).unwrap_or_default();
    let first_seq = get_u32(packet, l4 + 4).unwrap_or_default();
    let first_id = if v4 {
        get_u16(packet, 4).unwrap_or_default()
    } else {
        0
    };
    let flags = packet.get(l4 + 13).copied().unwrap_or_default();
    let count = payload.len().div_ceil(mss).max(1);
    for i in 0..count {
        let chunk = payload
            .get(i * mss..payload.len().min((i + 1) * mss))
            .unwrap_or_default();
        let len = headers + chunk.len();
        let Some(seg) = scratch.get_mut(..len) else {
            return Err(OffloadError::Malformed("segment larger than the scratch buffer"));
        };
        let (seg_head, seg_body) = seg.split_at_mut(headers);
        seg_head.copy_from_slice(head);
        seg_body.copy_from_slice(chunk);
        let mut seg_flags = flags;
        if i + 1 < count {
            seg_flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            seg_flags &= !TCP_CWR;
        }
        // Offsets below were checked by `tcp_layout`: the headers are inside every segment.
        let _ = set_u32(seg, l4 + 4, first_seq.wrapping_add((i * mss) as u32));
        if let Some(f) = seg.get_mut(l4 + 13) {
            *f = seg_flags;
        }
        if v4 {
            let _ = set_u16(seg, 2, len as u16);
            let _ = set_u16(seg, 4, first_id.wrapping_add(i as u16));
            ipv4_header_checksum(seg, l4);
        } else {
            let _ = set_u16(seg, 4, (len - IPV6_HEADER) as u16);
        }
        tcp_checksum(seg, l4, v4);
        each(seg);
    }
    Ok(count)
}

/// Recomputes an IPv4 header's checksum over its `ihl` bytes.
fn ipv4_header_checksum(packet: &mut [u8], ihl: usize) {
    let _ = set_u16(packet, 10, 0);
    let sum = packet.get(..ihl).map_or(0, |h| add(0, h));
    let _ = set_u16(packet, 10, !fold(sum));
}

/// Computes the TCP checksum of `segment`, whose TCP header starts at `l4`, in full.
fn tcp_checksum(segment: &mut [u8], l4: usize, v4: bool) {
    let _ = set_u16(segment, l4 + 16, 0);
    let sum = pseudo_header(segment, v4, segment.len() - l4);
    let sum = segment.get(l4..).map_or(sum, |tcp| add(sum, tcp));
    let _ = set_u16(segment, l4 + 16, !fold(sum));
}

/// The pseudo-header's sum (RFC 9293 3.1, RFC 8200 8.1): addresses, protocol, L4 length.
pub(crate) fn pseudo_header(packet: &[u8], v4: bool, l4_len: usize) -> u64 {
    let addresses = if v4 { packet.get(12..20) } else { packet.get(8..40) };
    add(
        u64::from(PROTO_TCP) + l4_len as u64,
        addresses.unwrap_or_default(),
    )
}

/// Adds `data` (big-endian 16-bit words, an odd last byte padded with zero) to a
/// one's-complement sum (RFC 1071). The words are summed in native byte order, 64 bits at a
/// time as two 32-bit halves, and the folded result swapped once (RFC 1071 2(B): the sum is
/// byte-order independent); that lets the loop vectorize, about twice as fast as big-endian
/// words. A 64 KiB packet cannot overflow the 64-bit accumulator.
pub(crate) fn add(sum: u64, data: &[u8]) -> u64 {
    let mut native = 0u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_ne_bytes(w.try_into().unwrap_or_default());
        native += (v & 0xffff_ffff) + (v >> 32);
    }
    let rest = words.remainder();
    let mut tail = [0u8; 8];
    if let Some(t) = tail.get_mut(..rest.len()) {
        t.copy_from_slice(rest);
    }
    let v = u64::from_ne_bytes(tail);
    native += (v & 0xffff_ffff) + (v >> 32);
    let folded = fold(native);
    let big_endian = if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    };
    sum + u64::from(big_endian)
}

/// Folds a one's-complement sum to 16 bits.
pub(crate) fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

pub(crate) fn get_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn set_u16(b: &mut [u8], at: usize, v: u16) -> Option<()> {
    b.get_mut(at..at + 2)?.copy_from_slice(&v.to_be_bytes());
    Some(())
}

fn set_u32(b: &mut [u8], at: usize, v: u32) -> Option<()> {
    b.get_mut(at..at + 4)?.copy_from_slice(&v.to_be_bytes());
    Some(())
}

#[cfg(test)]
#[path = "offload_tests.rs"]
pub(super) mod tests;
