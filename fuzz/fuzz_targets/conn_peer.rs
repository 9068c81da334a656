//! The per-peer state machine `Conn` in the simulated world of conn/peer/sim.rs, fed an
//! arbitrary sequence of its inputs (see `peerlink_core::fuzzing::ConnSim`).
#![no_main]

use arbitrary::{Result, Unstructured};
use peerlink_core::fuzzing::{ConnSim, SimEvent};

/// Inputs per run: with up to 64 s of steps or an hour of sleep between them, enough to reach
/// every state of one connection.
const MAX_EVENTS: usize = 64;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(seed), Ok(controlling)) = (u.arbitrary::<u64>(), u.arbitrary::<bool>()) else {
        return;
    };
    // Replaying one input with PEERLINK_FUZZ_EVENTS=1 prints its events (for a regression test).
    let print = std::env::var_os("PEERLINK_FUZZ_EVENTS").is_some();
    if print {
        eprintln!("ConnSim::new({seed:#x}, {controlling})");
    }
    let mut sim = ConnSim::new(seed, controlling);
    for _ in 0..MAX_EVENTS {
        if u.is_empty() {
            break;
        }
        let Ok(event) = event(&mut u) else { break };
        if print {
            eprintln!("{event:?}");
        }
        sim.handle(event);
    }
});

fn event(u: &mut Unstructured) -> Result<SimEvent> {
    Ok(match u.int_in_range(0..=16u8)? {
        0 => SimEvent::Run { steps: u.arbitrary()? },
        1 => SimEvent::Weather { roll: u.arbitrary()? },
        2 => SimEvent::RemoteDescription {
            is_offer: u.arbitrary()?,
            ice: credentials(u)?,
            relay: relay_url(u)?,
            session: u.arbitrary()?,
            version: u.arbitrary()?,
        },
        3 => SimEvent::RemoteCandidate(u.arbitrary()?),
        4 => SimEvent::RemoteGoIdle,
        5 => SimEvent::IceStartFailed { which: u.arbitrary()? },
        6 => SimEvent::IceConnected {
            relayed: u.arbitrary()?,
        },
        7 => SimEvent::IceState {
            which: u.arbitrary()?,
            state: u.arbitrary()?,
        },
        8 => SimEvent::RelayOpened,
        9 => SimEvent::RelayFailed { which: u.arbitrary()? },
        10 => SimEvent::RelayClosed { which: u.arbitrary()? },
        11 => SimEvent::HomeRelay(relay_url(u)?),
        12 => SimEvent::SignalConnected,
        13 => SimEvent::RelayTraffic,
        14 => SimEvent::Sleep { secs: u.arbitrary()? },
        _ => SimEvent::Run { steps: 40 },
    })
}

/// None, pion-shaped credentials (what peers send), or any strings.
fn credentials(u: &mut Unstructured) -> Result<Option<(String, String)>> {
    Ok(match u.int_in_range(0..=2u8)? {
        0 => None,
        1 => {
            let (a, b): (u64, u128) = (u.arbitrary()?, u.arbitrary()?);
            Some((format!("u{a:015x}"), format!("p{b:031x}")))
        }
        _ => Some((u.arbitrary()?, u.arbitrary()?)),
    })
}

/// None, one of two relay instances, or any string.
fn relay_url(u: &mut Unstructured) -> Result<Option<String>> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => None,
        1 => Some("rels://relay.sim/".to_owned()),
        2 => Some("rels://other.sim/".to_owned()),
        _ => Some(u.arbitrary()?),
    })
}
