//! The receive watchdog, as a pure policy: a stream can look healthy to HTTP/2 keepalive while
//! the server no longer delivers to it. After a silence the client sends a HEARTBEAT to itself
//! through the server; if that does not come back, the stream is dead and is rebuilt.
//! (NetBird's `watchReceiveStream` in shared/signal/client/grpc.go, which checks on a 10 s
//! ticker; here the deadlines are exact, so the shell sleeps until [`ReceiveWatchdog::poll_timeout`].)

use std::time::Duration;

use crate::clock::Instant;

/// NetBird's `receiveInactivityThreshold`: silence before the watchdog probes.
pub const INACTIVITY: Duration = Duration::from_secs(30);
/// NetBird's `receiveProbeTimeout`: how long the probe may take to come back.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the shell must do after [`ReceiveWatchdog::handle_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogAction {
    /// Nothing yet; sleep until `poll_timeout`.
    Wait,
    /// Send a HEARTBEAT addressed to ourselves.
    SendProbe,
    /// The probe did not come back: tear the stream down and reconnect.
    Reconnect,
}

#[derive(Debug, Clone)]
pub struct ReceiveWatchdog {
    last_received: Instant,
    probe_sent: Option<Instant>,
}

impl ReceiveWatchdog {
    /// A watchdog for a stream that just connected (connecting counts as hearing from it).
    pub fn new(now: Instant) -> Self {
        Self {
            last_received: now,
            probe_sent: None,
        }
    }

    /// Anything arrived on the stream (a probe echo, a message, even one we drop).
    pub fn handle_received(&mut self, now: Instant) {
        self.last_received = now;
        self.probe_sent = None;
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to decide.
    pub fn poll_timeout(&self) -> Instant {
        match self.probe_sent {
            Some(sent) => sent + PROBE_TIMEOUT,
            None => self.last_received + INACTIVITY,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> WatchdogAction {
        if let Some(sent) = self.probe_sent {
            return if now.saturating_duration_since(sent) >= PROBE_TIMEOUT {
                WatchdogAction::Reconnect
            } else {
                WatchdogAction::Wait
            };
        }
        if now.saturating_duration_since(self.last_received) >= INACTIVITY {
            self.probe_sent = Some(now);
            return WatchdogAction::SendProbe;
        }
        WatchdogAction::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::from_epoch(Duration::from_secs(secs))
    }

    #[test]
    fn a_busy_stream_is_never_probed() {
        let mut w = ReceiveWatchdog::new(at(0));
        for s in (5..3600).step_by(5) {
            w.handle_received(at(s));
            assert_eq!(w.handle_timeout(at(s + 4)), WatchdogAction::Wait);
        }
    }

    #[test]
    fn silence_brings_one_probe_then_a_reconnect() {
        let mut w = ReceiveWatchdog::new(at(100));
        assert_eq!(w.poll_timeout(), at(130));
        assert_eq!(w.handle_timeout(at(129)), WatchdogAction::Wait);
        assert_eq!(w.handle_timeout(at(130)), WatchdogAction::SendProbe);
        assert_eq!(w.poll_timeout(), at(140));
        assert_eq!(w.handle_timeout(at(135)), WatchdogAction::Wait);
        assert_eq!(w.handle_timeout(at(140)), WatchdogAction::Reconnect);
    }

    #[test]
    fn the_echo_clears_the_probe() {
        let mut w = ReceiveWatchdog::new(at(0));
        assert_eq!(w.handle_timeout(at(30)), WatchdogAction::SendProbe);
        w.handle_received(at(31));
        assert_eq!(w.poll_timeout(), at(61));
        assert_eq!(w.handle_timeout(at(45)), WatchdogAction::Wait);
        assert_eq!(w.handle_timeout(at(61)), WatchdogAction::SendProbe);
    }

    #[test]
    fn a_night_asleep_probes_at_once_on_wake() {
        // The clock counts sleep: the first check after waking sees hours of silence.
        let mut w = ReceiveWatchdog::new(at(0));
        assert_eq!(w.handle_timeout(at(8 * 3600)), WatchdogAction::SendProbe);
        assert_eq!(w.handle_timeout(at(8 * 3600 + 10)), WatchdogAction::Reconnect);
    }
}
