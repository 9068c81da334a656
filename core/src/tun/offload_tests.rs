use super::*;

/// An IPv4 or IPv6 TCP packet with `payload`, sequence 1000, flags `flags`, a 12-byte option
/// block (as timestamps make it), checksums left zero.
pub(crate) fn tcp_packet(v4: bool, payload: &[u8], flags: u8) -> Vec<u8> {
    let tcp_len = 32 + payload.len();
    let mut p = Vec::new();
    if v4 {
        let total = (20 + tcp_len) as u16;
        p.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, PROTO_TCP, 0, 0]);
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    } else {
        p.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, PROTO_TCP, 64]);
        p[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        p.extend_from_slice(&[0xfd; 16]);
        p.extend_from_slice(&[0xfe; 16]);
    }
    p.extend_from_slice(&[0x30, 0x39, 0x14, 0x51]); // ports 12345 → 5201
    p.extend_from_slice(&1000u32.to_be_bytes());
    p.extend_from_slice(&77u32.to_be_bytes());
    p.extend_from_slice(&[0x80, flags, 0x01, 0x00, 0, 0, 0, 0]);
    p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8]);
    p.extend_from_slice(payload);
    p
}

pub(crate) fn frame(hdr: VnetHdr, packet: &[u8]) -> Vec<u8> {
    let mut f = hdr.to_bytes().to_vec();
    f.extend_from_slice(packet);
    f
}

pub(crate) fn tso(v4: bool, mss: u16) -> VnetHdr {
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if v4 { GSO_TCPV4 } else { GSO_TCPV6 },
        hdr_len: 0,
        gso_size: mss,
        csum_start: if v4 { 20 } else { 40 },
        csum_offset: 16,
    }
}

pub(crate) fn split_all(mut f: Vec<u8>) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut scratch = vec![0u8; MAX_FRAME];
    let mut out = Vec::new();
    let n = split(&mut f, &mut scratch, |p| out.push(p.to_vec()))?;
    assert_eq!(n, out.len());
    Ok(out)
}

/// Whether the TCP checksum (and for IPv4 the header checksum) of `p` verifies.
pub(crate) fn checksums_verify(p: &[u8]) -> bool {
    let v4 = p[0] >> 4 == 4;
    let l4 = if v4 { 20 } else { 40 };
    let tcp_ok = fold(add(pseudo_header(p, v4, p.len() - l4), &p[l4..])) == 0xffff;
    let ip_ok = !v4 || fold(add(0, &p[..20])) == 0xffff;
    tcp_ok && ip_ok
}

#[test]
fn rfc1071_checksum_of_a_known_ipv4_header() {
    // The header from the Wikipedia article on the IPv4 checksum: its checksum is 0xb861.
    let h = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0,
        0xa8, 0x00, 0xc7,
    ];
    assert_eq!(!fold(add(0, &h)), 0xb861);
    // Odd lengths pad with a zero byte.
    assert_eq!(fold(add(0, &[0x01])), 0x0100);
}

#[test]
fn vnet_header_round_trips() {
    let h = tso(true, 1240);
    assert_eq!(VnetHdr::parse(&h.to_bytes()), Some(h));
    assert_eq!(VnetHdr::parse(&[0; 9]), None);
}

#[test]
fn tso_super_packet_becomes_the_segments_the_kernel_would_send() {
    for v4 in [true, false] {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let packet = tcp_packet(v4, &payload, 0x18 | TCP_FIN | TCP_CWR); // ACK PSH FIN CWR
        let segments = split_all(frame(tso(v4, 1000), &packet)).unwrap();
        assert_eq!(segments.len(), 3, "v4 {v4}");
        let l4 = if v4 { 20 } else { 40 };
        let mut rebuilt = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            assert!(checksums_verify(s), "v4 {v4} segment {i}: checksums");
            assert_eq!(s.len(), l4 + 32 + 1000, "v4 {v4} segment {i}: length");
            if v4 {
                assert_eq!(get_u16(s, 2), Some(s.len() as u16));
                assert_eq!(get_u16(s, 4), Some(0x1234 + i as u16), "ids count up");
            } else {
                assert_eq!(get_u16(s, 4), Some((s.len() - 40) as u16));
            }
            assert_eq!(get_u32(s, l4 + 4), Some(1000 + 1000 * i as u32), "sequence");
            assert_eq!(get_u32(s, l4 + 8), Some(77), "ack unchanged");
            let flags = s[l4 + 13];
            let last = i == 2;
            assert_eq!(flags & (TCP_FIN | TCP_PSH) != 0, last, "segment {i} FIN/PSH");
            assert_eq!(flags & TCP_CWR != 0, i == 0, "segment {i} CWR");
            assert_eq!(
                &s[l4 + 20..l4 + 32],
                &packet[l4 + 20..l4 + 32],
                "options repeated"
            );
            rebuilt.extend_from_slice(&s[l4 + 32..]);
        }
        assert_eq!(rebuilt, payload, "v4 {v4}: the payload in order");
    }
}

#[test]
fn a_short_last_segment_and_a_super_packet_of_one() {
    let packet = tcp_packet(true, &[7u8; 2500], 0x10);
    let segments = split_all(frame(tso(true, 1000), &packet)).unwrap();
    let lens: Vec<usize> = segments.iter().map(|s| s.len() - 52).collect();
    assert_eq!(lens, [1000, 1000, 500]);
    assert!(segments.iter().all(|s| checksums_verify(s)));
    let packet = tcp_packet(false, &[], 0x10);
    let segments = split_all(frame(tso(false, 1000), &packet)).unwrap();
    assert_eq!(segments.len(), 1, "a bare ACK still goes out");
    assert!(checksums_verify(&segments[0]));
}

#[test]
fn a_partial_checksum_is_completed() {
    for v4 in [true, false] {
        let mut packet = tcp_packet(v4, b"hello, world", 0x18);
        let l4 = if v4 { 20 } else { 40 };
        if v4 {
            ipv4_header_checksum(&mut packet, 20);
        }
        // What the kernel leaves: the pseudo-header's sum, not inverted.
        let partial = fold(pseudo_header(&packet, v4, packet.len() - l4));
        set_u16(&mut packet, l4 + 16, partial).unwrap();
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: l4 as u16,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let out = split_all(frame(hdr, &packet)).unwrap();
        assert_eq!(out.len(), 1);
        assert!(checksums_verify(&out[0]), "v4 {v4}");
    }
}

#[test]
fn a_plain_frame_passes_unchanged() {
    let packet = tcp_packet(true, b"x", 0x10);
    assert_eq!(split_all(frame(VnetHdr::default(), &packet)).unwrap(), [packet]);
}

#[test]
fn malformed_frames_are_refused_and_yield_nothing() {
    let v4 = tcp_packet(true, &[1u8; 3000], 0x10);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("short", vec![0; 5]),
        (
            "UDP GSO",
            frame(
                VnetHdr {
                    gso_type: 3,
                    ..tso(true, 1000)
                },
                &v4,
            ),
        ),
        ("v6 type on v4", frame(tso(false, 1000), &v4)),
        ("zero mss", frame(tso(true, 0), &v4)),
        (
            "csum_start not the IP header",
            frame(
                VnetHdr {
                    csum_start: 24,
                    ..tso(true, 1000)
                },
                &v4,
            ),
        ),
        (
            "no NEEDS_CSUM",
            frame(
                VnetHdr {
                    flags: 0,
                    ..tso(true, 1000)
                },
                &v4,
            ),
        ),
        ("truncated TCP header", frame(tso(true, 1000), &v4[..30])),
        ("empty packet", frame(tso(true, 1000), &[])),
        (
            "checksum field beyond the packet",
            frame(
                VnetHdr {
                    flags: F_NEEDS_CSUM,
                    csum_start: 20,
                    csum_offset: 5000,
                    ..VnetHdr::default()
                },
                &v4,
            ),
        ),
    ];
    for (what, f) in cases {
        assert!(split_all(f).is_err(), "{what}");
    }
    let mut bad_offset = v4.clone();
    bad_offset[32] = 0x40; // data offset 4 words: less than TCP's minimum
    assert!(split_all(frame(tso(true, 1000), &bad_offset)).is_err());
    let mut small = vec![0u8; 100];
    let mut f = frame(tso(true, 1000), &v4);
    assert!(
        split(&mut f, &mut small, |_| panic!("nothing handed on")).is_err(),
        "a segment larger than the scratch buffer"
    );
}

#[test]
fn the_fast_sum_matches_rfc1071_word_by_word() {
    // The reference: big-endian 16-bit words, an odd last byte padded with zero.
    let reference = |data: &[u8]| -> u16 {
        let mut s: u64 = data
            .chunks(2)
            .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    };
    let data: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for len in (0..300).chain([1279, 1280, 1281, 65_535, 70_000]) {
        assert_eq!(
            fold(add(0, &data[..len])),
            reference(&data[..len]),
            "length {len}"
        );
    }
    assert_eq!(fold(add(0, &[0xff; 64])), 0xffff, "carries fold back in");
}
