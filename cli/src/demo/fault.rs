//! The demo's second act: NetBird issue 4769 on demand. While alice pings bob every
//! [`PING_INTERVAL`], the middlebox on the ICE path starts dropping WireGuard and keeps passing
//! STUN, so ICE still reports the pair connected. The watcher must notice, condemn the path and
//! move traffic to the direct path; then the fault clears and ICE may take over again.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use peerlink_core::conn::SwitchReason;
use peerlink_core::packet::icmp_echo_request;
use peerlink_core::path::PathKind;
use peerlink_core::Event;
use tokio::sync::broadcast::{self, error::RecvError};

use super::middlebox::Middlebox;
use super::{kind_name, DemoError, Host, PING_PAYLOAD};

/// One ping every 25 ms: traffic the watcher sees as "in use", and a gap measured to 25 ms.
const PING_INTERVAL: Duration = Duration::from_millis(25);
/// Replies on the ICE path before the fault: the watcher has seen traffic flow.
const WARM_UP_REPLIES: usize = 20;
/// DESIGN 3's figures give a verdict about 2.5 s after the fault (1 s of silence, three probes
/// of 500 ms); 15 s is six times that, and a switch that takes longer has failed.
pub const SWITCH_TIMEOUT: Duration = Duration::from_secs(15);
/// Replies on the fallback before the fault clears: the fallback carries traffic, not one echo.
const FALLBACK_REPLIES: usize = 40;
/// Replies once both engines are back on ICE: traffic flows there again (and both control
/// planes have finished the pass that switched, so status shows it).
const RETURN_REPLIES: usize = 10;
/// A new ICE session proves itself in rounds that back off to 30 s (`PROVING_PAUSE_MAX`), so a
/// cleared fault is noticed within about half a minute; 40 s leaves a margin.
const RETURN_WAIT: Duration = Duration::from_secs(40);
/// Sequence numbers of the stream start here, clear of the first act's.
const FIRST_SEQ: u16 = 1000;

/// What the second act measured.
#[derive(Debug, Clone)]
pub struct FaultReport {
    /// The first switch away from ICE, on either engine: the watcher's verdict.
    pub verdict: Switched,
    /// From the fault to the first reply to a ping sent after it.
    pub gap: Duration,
    /// Pings sent while the fault was on, and how many were answered.
    pub during: (usize, usize),
    /// From clearing the fault until both engines were back on ICE, if within [`RETURN_WAIT`].
    pub back_on_ice: Option<Duration>,
    /// Pings sent after the fault cleared, and how many were answered.
    pub after: (usize, usize),
}

/// A path switch an engine reported.
#[derive(Debug, Clone)]
pub struct Switched {
    pub who: &'static str,
    /// Since the fault went on (or off, for the return).
    pub after: Duration,
    pub from: Option<PathKind>,
    pub to: Option<PathKind>,
    pub reason: String,
}

/// Runs the second act: alice pings bob through the switch and back.
pub async fn run(
    alice: &mut Host,
    bob: &Host,
    middlebox: &Middlebox,
    events: [&mut broadcast::Receiver<Event>; 2],
) -> Result<FaultReport, DemoError> {
    let mut act = Act {
        stream: Stream::new(alice.v4, bob.v4),
        events,
        tick: tokio::time::interval(PING_INTERVAL),
        since: None,
    };
    while act.events.iter_mut().any(|e| e.try_recv().is_ok()) {}
    while alice.replies.try_recv().is_ok() {}
    println!(
        "\n  the fault: the middlebox on the ICE path drops WireGuard and passes STUN (NetBird issue 4769);"
    );
    println!(
        "         alice pings bob every {} ms throughout",
        PING_INTERVAL.as_millis()
    );
    act.until_both_on_ice(alice, bob).await?;
    println!("  both engines carry traffic on ice-p2p; direct is their standby");
    act.until_replies(alice, WARM_UP_REPLIES, SWITCH_TIMEOUT).await?;

    let fault_at = Instant::now();
    middlebox.set_fault(true);
    act.since = Some(fault_at);
    let first_seq = act.stream.next_seq;
    let before = middlebox.counters();
    println!("  fault on");
    let (verdict, gap) = act.until_switched(alice, fault_at, first_seq).await?;
    act.until_replies(alice, FALLBACK_REPLIES, SWITCH_TIMEOUT).await?;
    println!(
        "  fault on ice-p2p → traffic on {} again after {:.2} s (verdict by {} after {:.2} s: {})",
        kind_name(verdict.to),
        gap.as_secs_f64(),
        verdict.who,
        verdict.after.as_secs_f64(),
        verdict.reason
    );
    let during = act.stream.counts_since(first_seq);
    let after = middlebox.counters();
    println!(
        "  while the fault was on: {} of {} pings answered; the middlebox dropped {} WireGuard datagrams and passed {} STUN messages",
        during.1,
        during.0,
        after.wireguard_dropped - before.wireguard_dropped,
        after.stun - before.stun
    );

    let cleared_at = Instant::now();
    middlebox.set_fault(false);
    act.since = Some(cleared_at);
    let cleared_seq = act.stream.next_seq;
    println!(
        "  fault cleared; waiting up to {} s for ICE to prove itself again",
        RETURN_WAIT.as_secs()
    );
    let back_on_ice = act.until_back_on_ice(alice, cleared_at).await?;
    match back_on_ice {
        Some(t) => {
            act.until_replies(alice, RETURN_REPLIES, SWITCH_TIMEOUT).await?;
            println!("  back on ice-p2p {:.2} s after the fault cleared", t.as_secs_f64());
        }
        None => println!(
            "  still on the fallback {} s after the fault cleared: the new ICE session has not proven itself; traffic stays on direct",
            RETURN_WAIT.as_secs()
        ),
    }
    let after = act.stream.counts_since(cleared_seq);
    println!(
        "  after the fault cleared: {} of {} pings answered",
        after.1, after.0
    );
    Ok(FaultReport {
        verdict,
        gap,
        during,
        back_on_ice,
        after,
    })
}

/// The ping stream and the engines' events, read together.
struct Act<'a> {
    stream: Stream,
    events: [&'a mut broadcast::Receiver<Event>; 2],
    tick: tokio::time::Interval,
    /// What printed switch times count from: the fault going on, then off.
    since: Option<Instant>,
}

/// Which engine an event came from, by its index in [`Act::events`].
const NAMES: [&str; 2] = ["alice", "bob"];

enum Input {
    Tick,
    Reply(u16, Instant),
    Switch(usize, Option<PathKind>, Option<PathKind>, String),
    Timeout,
}

impl Act<'_> {
    /// Pings until `n` more replies came back.
    async fn until_replies(&mut self, alice: &mut Host, n: usize, within: Duration) -> Result<(), DemoError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut replies = 0;
        while replies < n {
            match self.next(alice, deadline).await? {
                Input::Tick => self.stream.send(alice).await?,
                Input::Reply(seq, _) => replies += usize::from(self.stream.answered(seq)),
                Input::Switch(who, from, to, reason) => self.print_switch(who, from, to, &reason),
                Input::Timeout => {
                    return Err(DemoError::NoReplies {
                        wanted: n,
                        got: replies,
                        within,
                    })
                }
            }
        }
        Ok(())
    }

    /// Pings until both engines carry traffic on ICE: the controlled side takes the ICE path
    /// over only once traffic proved it there, which can come after the first act's pings.
    async fn until_both_on_ice(&mut self, alice: &mut Host, bob: &Host) -> Result<(), DemoError> {
        let deadline = tokio::time::Instant::now() + SWITCH_TIMEOUT;
        let on_ice = |host: &Host| {
            host.engine
                .status()
                .peers
                .first()
                .is_some_and(|p| p.active_path == Some(PathKind::IceP2p))
        };
        // Status is read on every tick as well as on every switch: an engine may report a
        // switch a moment before its status shows it.
        while !(on_ice(alice) && on_ice(bob)) {
            match self.next(alice, deadline).await? {
                Input::Tick => self.stream.send(alice).await?,
                Input::Reply(seq, _) => {
                    self.stream.answered(seq);
                }
                Input::Switch(who, from, to, reason) => self.print_switch(who, from, to, &reason),
                Input::Timeout => return Err(DemoError::NotConnected(SWITCH_TIMEOUT)),
            }
        }
        Ok(())
    }

    /// Pings until an engine moved off ICE and a ping sent after the fault was answered.
    async fn until_switched(
        &mut self,
        alice: &mut Host,
        fault_at: Instant,
        first_seq: u16,
    ) -> Result<(Switched, Duration), DemoError> {
        let deadline = tokio::time::Instant::now() + SWITCH_TIMEOUT;
        let mut verdict: Option<Switched> = None;
        let mut first_reply: Option<Instant> = None;
        loop {
            if let (Some(v), Some(at)) = (&verdict, first_reply) {
                return Ok((v.clone(), at.saturating_duration_since(fault_at)));
            }
            match self.next(alice, deadline).await? {
                Input::Tick => self.stream.send(alice).await?,
                Input::Reply(seq, at) => {
                    if self.stream.answered(seq) && seq >= first_seq && first_reply.is_none() {
                        first_reply = Some(at);
                    }
                }
                Input::Switch(who, from, to, reason) => {
                    let after = fault_at.elapsed();
                    self.print_switch(who, from, to, &reason);
                    // The watcher's verdict, not the other side following it.
                    let follows = reason == SwitchReason::RemoteRestarted.to_string();
                    if verdict.is_none() && from == Some(PathKind::IceP2p) && !follows {
                        verdict = Some(Switched {
                            who: NAMES.get(who).copied().unwrap_or("?"),
                            after,
                            from,
                            to,
                            reason,
                        });
                    }
                }
                Input::Timeout => {
                    return Err(DemoError::NoSwitch {
                        within: SWITCH_TIMEOUT,
                        verdict: verdict
                            .map(|v| format!("{} → {}: {}", kind_name(v.from), kind_name(v.to), v.reason)),
                        replied: first_reply.is_some(),
                    })
                }
            }
        }
    }

    /// Pings until both engines switched back to ICE, or [`RETURN_WAIT`] passed.
    async fn until_back_on_ice(
        &mut self,
        alice: &mut Host,
        cleared_at: Instant,
    ) -> Result<Option<Duration>, DemoError> {
        let deadline = tokio::time::Instant::now() + RETURN_WAIT;
        let mut back = [false; 2];
        while !back.iter().all(|b| *b) {
            match self.next(alice, deadline).await? {
                Input::Tick => self.stream.send(alice).await?,
                Input::Reply(seq, _) => {
                    self.stream.answered(seq);
                }
                Input::Switch(who, from, to, reason) => {
                    self.print_switch(who, from, to, &reason);
                    if let Some(b) = back.get_mut(who) {
                        *b = to == Some(PathKind::IceP2p);
                    }
                }
                Input::Timeout => return Ok(None),
            }
        }
        Ok(Some(cleared_at.elapsed()))
    }

    fn print_switch(&self, who: usize, from: Option<PathKind>, to: Option<PathKind>, reason: &str) {
        let at = self
            .since
            .map_or_else(String::new, |t| format!("+{:.2} s ", t.elapsed().as_secs_f64()));
        println!(
            "    {at}{}: {} → {}: {reason}",
            NAMES.get(who).copied().unwrap_or("?"),
            kind_name(from),
            kind_name(to)
        );
    }

    async fn next(&mut self, alice: &mut Host, deadline: tokio::time::Instant) -> Result<Input, DemoError> {
        let [a, b] = &mut self.events;
        tokio::select! {
            _ = self.tick.tick() => Ok(Input::Tick),
            reply = alice.replies.recv() => match reply {
                Some((seq, at)) => Ok(Input::Reply(seq, at)),
                None => Err(DemoError::EngineGone("alice's tun")),
            },
            event = a.recv() => switch(0, event),
            event = b.recv() => switch(1, event),
            _ = tokio::time::sleep_until(deadline) => Ok(Input::Timeout),
        }
    }
}

/// A path switch as an input; other events are ticks in disguise (nothing to do).
fn switch(who: usize, event: Result<Event, RecvError>) -> Result<Input, DemoError> {
    match event {
        Ok(Event::PathSwitched { from, to, reason, .. }) => Ok(Input::Switch(who, from, to, reason)),
        Ok(
            Event::HandshakeCompleted { .. }
            | Event::PathChanged { .. }
            | Event::PeersUpdated { .. }
            | Event::SignalStateChanged(_)
            | Event::RelayStateChanged(_)
            | Event::IceStateChanged { .. }
            | Event::InterfaceChanged(_)
            | Event::DnsChanged(_)
            | Event::ManagementStateChanged(_)
            | Event::PeerActivity { .. }
            | Event::Stopped,
        )
        | Err(RecvError::Lagged(_)) => Ok(Input::Tick),
        Err(RecvError::Closed) => Err(DemoError::EngineGone(NAMES.get(who).copied().unwrap_or("?"))),
    }
}

/// Alice's echo requests to bob: when each went out, and which came back.
struct Stream {
    src: IpAddr,
    dst: IpAddr,
    next_seq: u16,
    /// Indexed by `seq - FIRST_SEQ`: answered.
    sent: Vec<bool>,
}

impl Stream {
    fn new(src: IpAddr, dst: IpAddr) -> Self {
        Self {
            src,
            dst,
            next_seq: FIRST_SEQ,
            sent: Vec::new(),
        }
    }

    async fn send(&mut self, from: &Host) -> Result<(), DemoError> {
        let seq = self.next_seq;
        let Some(request) = icmp_echo_request(self.src, self.dst, super::PING_ID, seq, PING_PAYLOAD) else {
            return Ok(());
        };
        from.os.send(&request).await.map_err(DemoError::TunWrite)?;
        self.sent.push(false);
        self.next_seq = seq.wrapping_add(1);
        Ok(())
    }

    /// Marks `seq` answered; false for a reply that is not ours or came twice.
    fn answered(&mut self, seq: u16) -> bool {
        let Some(entry) = seq
            .checked_sub(FIRST_SEQ)
            .and_then(|i| self.sent.get_mut(usize::from(i)))
        else {
            return false;
        };
        !std::mem::replace(entry, true)
    }

    /// Pings sent from `seq` on, and how many were answered.
    fn counts_since(&self, seq: u16) -> (usize, usize) {
        let from = usize::from(seq.saturating_sub(FIRST_SEQ));
        let tail = self.sent.get(from..).unwrap_or_default();
        (tail.len(), tail.iter().filter(|answered| **answered).count())
    }
}
