use super::*;
use crate::tun::offload::tests::{checksums_verify, frame, split_all, tcp_packet, tso};

/// The segments the kernel would send for a TCP super-packet of `payload` bytes, as a peer's
/// stack sends them (valid checksums, ids and sequence numbers counting up).
fn segments(v4: bool, payload: usize, mss: u16, flags: u8) -> Vec<Vec<u8>> {
    let data: Vec<u8> = (0..payload).map(|i| (i % 253) as u8).collect();
    split_all(frame(tso(v4, mss), &tcp_packet(v4, &data, flags))).unwrap()
}

/// Pushes every packet, flushes, and returns the frames written, each as header + packet.
fn coalesce(packets: &[Vec<u8>]) -> Vec<(VnetHdr, Vec<u8>, usize)> {
    let mut c = Coalescer::new();
    let mut frames = Vec::new();
    let mut take =
        |f: Frame<'_>| frames.push((VnetHdr::parse(&f.header).unwrap(), f.packet.to_vec(), f.packets));
    for p in packets {
        c.push(p, &mut take);
    }
    c.flush(&mut take);
    frames
}

fn as_frame(h: VnetHdr, p: &[u8]) -> Vec<u8> {
    frame(h, p)
}

#[test]
fn a_run_of_segments_becomes_one_super_packet_that_segments_back_the_same() {
    for v4 in [true, false] {
        let original = segments(v4, 20_000, 1000, 0x18);
        let frames = coalesce(&original);
        assert_eq!(frames.len(), 1, "v4 {v4}: one frame");
        let (h, packet, count) = &frames[0];
        assert_eq!(*count, 20);
        assert_eq!(h.gso_size, 1000);
        assert_eq!(h.gso_type, if v4 { GSO_TCPV4 } else { GSO_TCPV6 });
        // What the kernel does with it: cut it as TSO would, which must give back the segments.
        let again = split_all(as_frame(*h, packet)).unwrap();
        assert_eq!(again, original, "v4 {v4}");
    }
}

#[test]
fn a_lone_segment_goes_out_unchanged() {
    let one = segments(true, 500, 1000, 0x18);
    let frames = coalesce(&one);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, VnetHdr::default());
    assert_eq!(frames[0].1, one[0]);
}

#[test]
fn psh_and_a_short_segment_end_a_run() {
    // 2500 bytes: 1000, 1000, 500 with PSH on the last; then the next run.
    let mut first = segments(true, 2500, 1000, 0x18);
    let next_seq = get_u32(&first[2], 24).unwrap() + 500;
    let mut second = segments(true, 2000, 1000, 0x10);
    for s in &mut second {
        let seq = get_u32(s, 24).unwrap() - 1000 + next_seq;
        s[24..28].copy_from_slice(&seq.to_be_bytes());
        fix_tcp(s);
    }
    first.append(&mut second);
    let frames = coalesce(&first);
    let counts: Vec<usize> = frames.iter().map(|f| f.2).collect();
    assert_eq!(counts, [3, 2], "the run ends at the short PSH segment");
    assert!(frames[0].1[33] & TCP_PSH != 0, "the run keeps the PSH");
}

#[test]
fn a_gap_another_flow_or_another_protocol_flushes_in_order() {
    let run = segments(true, 4000, 1000, 0x10);
    // A gap: the third segment is missing.
    let frames = coalesce(&[run[0].clone(), run[1].clone(), run[3].clone()]);
    assert_eq!(frames.iter().map(|f| f.2).collect::<Vec<_>>(), [2, 1]);
    // Another flow (another source port) in between.
    let mut other = run[2].clone();
    other[20] ^= 1;
    fix_tcp(&mut other);
    let frames = coalesce(&[run[0].clone(), other.clone(), run[1].clone()]);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[1].1, other);
    // Not TCP (ICMP): written alone, between the runs, unchanged.
    let icmp = vec![
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 8, 0, 0, 0, 0, 0, 0, 0,
    ];
    let frames = coalesce(&[
        run[0].clone(),
        run[1].clone(),
        icmp.clone(),
        run[2].clone(),
        run[3].clone(),
    ]);
    assert_eq!(frames.iter().map(|f| f.2).collect::<Vec<_>>(), [2, 1, 2]);
    assert_eq!(frames[1].1, icmp);
}

#[test]
fn a_segment_whose_checksum_fails_is_never_merged() {
    let mut run = segments(true, 3000, 1000, 0x10);
    run[1][100] ^= 0xff;
    let frames = coalesce(&run);
    assert_eq!(frames.iter().map(|f| f.2).collect::<Vec<_>>(), [1, 1, 1]);
    assert_eq!(
        frames[1].1, run[1],
        "handed on as it came, for the kernel to drop"
    );
}

#[test]
fn a_run_stops_below_the_ip_length_limit() {
    let run = segments(false, 100_000, 1200, 0x10);
    let frames = coalesce(&run);
    assert!(frames.len() >= 2);
    assert!(frames.iter().all(|f| f.1.len() <= MAX_RUN_BYTES));
    let total: usize = frames.iter().map(|f| f.2).sum();
    assert_eq!(total, run.len());
    let mut again = Vec::new();
    for (h, p, _) in &frames {
        again.extend(split_all(as_frame(*h, p)).unwrap());
    }
    assert_eq!(again, run);
    assert!(again.iter().all(|p| checksums_verify(p)));
}

/// Recomputes an IPv4 test segment's TCP checksum after an edit.
fn fix_tcp(s: &mut [u8]) {
    s[36] = 0;
    s[37] = 0;
    let sum = add(pseudo_header(s, true, s.len() - 20), &s[20..]);
    let c = !fold(sum);
    s[36..38].copy_from_slice(&c.to_be_bytes());
}
