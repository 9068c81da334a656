//! The packet filter's cost (issue 15): heap of a flow table at 10 000 flows and at the
//! per-peer bound, counted by a global allocator; and the time per packet of the checks the
//! data path makes (a reply on a tracked flow, outbound tracking, a scan of 50 port rules).
//! Prints one line per figure.
//!
//!     cargo bench -p peerlink-core --bench filter

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant as WallClock;

use peerlink_core::clock::Instant;
use peerlink_core::filter::{PeerFilter, RuleSet, Verdict, FLOWS_PER_PEER};
use peerlink_core::mgmt::proto::{
    FirewallRule, PortInfo, PortSelection, RuleAction, RuleDirection, RuleProtocol,
};
use peerlink_core::packet;

/// Live heap bytes, counted by [`Counting`].
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Checks timed per figure: enough for a stable mean on these machines (about 10 ms each).
const ITERATIONS: u32 = 200_000;

fn main() {
    let local: IpAddr = "100.64.0.1".parse().unwrap();
    let remote: IpAddr = "100.64.0.2".parse().unwrap();
    // Distinct flows: one UDP source port each (10 000 fit in the ports above 1024).
    let outbound = |port: u16| packet::udp(local, remote, port, 53, b"q").unwrap();
    let reply = |port: u16| packet::udp(remote, local, 53, port, b"a").unwrap();
    let now = Instant::now();

    for flows in [10_000, FLOWS_PER_PEER] {
        let before = LIVE.load(Ordering::Relaxed);
        let filter = PeerFilter::new(flows);
        let packets: Vec<Vec<u8>> = (0..flows).map(|i| outbound(1024 + i as u16)).collect();
        let packet_bytes = LIVE.load(Ordering::Relaxed) - before;
        for p in &packets {
            filter.outbound(p, now);
        }
        assert_eq!(filter.flows(), flows);
        let bytes = LIVE.load(Ordering::Relaxed) - before - packet_bytes;
        println!(
            "filter flow table, {flows} flows: {bytes} bytes on the heap ({:.0} B per flow, {:.2} MiB)",
            bytes as f64 / flows as f64,
            bytes as f64 / (1024.0 * 1024.0)
        );
        drop(packets);
    }

    // Per packet, on one peer's filter with a realistic rule set from management.
    let rules = port_rules(remote, 50);
    let filter = PeerFilter::default();
    let out = outbound(40_000);
    let back = reply(40_000);
    filter.outbound(&out, now);
    assert_eq!(filter.inbound(&rules, &back, now), Verdict::Pass);
    let unsolicited_last_rule = packet::udp(remote, local, 999, 1000 + 49, b"x").unwrap();
    let unsolicited_no_rule = packet::udp(remote, local, 999, 9, b"x").unwrap();
    assert_eq!(filter.inbound(&rules, &unsolicited_last_rule, now), Verdict::Pass);
    let figures = [
        (
            "a reply on a tracked flow",
            time(|| filter.inbound(&rules, black_box(&back), now) == Verdict::Pass),
        ),
        (
            "outbound tracking of a known flow",
            time(|| filter.outbound(black_box(&out), now) != peerlink_core::filter::Tracked::No),
        ),
        (
            "an unsolicited packet matching the last of 50 port rules",
            time(|| filter.inbound(&rules, black_box(&unsolicited_last_rule), now) == Verdict::Pass),
        ),
        (
            "an unsolicited packet no rule of 50 accepts",
            time(|| filter.inbound(&rules, black_box(&unsolicited_no_rule), now) != Verdict::Pass),
        ),
    ];
    for (what, ns) in figures {
        println!("filter per packet, {what}: {ns:.0} ns");
    }
}

/// Nanoseconds per call of `check`, which must return true.
fn time(mut check: impl FnMut() -> bool) -> f64 {
    let start = WallClock::now();
    for _ in 0..ITERATIONS {
        assert!(check());
    }
    start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS)
}

/// `n` UDP port rules (1000, 1001, …) from `source`, as management sends them.
fn port_rules(source: IpAddr, n: u32) -> RuleSet {
    let rules: Vec<FirewallRule> = (0..n)
        .map(|i| FirewallRule {
            peer_ip: source.to_string(),
            direction: RuleDirection::In as i32,
            action: RuleAction::Accept as i32,
            protocol: RuleProtocol::Udp as i32,
            port_info: Some(PortInfo {
                port_selection: Some(PortSelection::Port(1000 + i)),
            }),
            ..FirewallRule::default()
        })
        .collect();
    RuleSet::from_map(&rules, true)
}
