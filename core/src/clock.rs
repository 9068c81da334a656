//! The one clock the policy sees: it keeps counting while the device sleeps.
//!
//! `std::time::Instant` and tokio's clock stop during suspend on Linux and Android, so after a
//! night in a pocket every deadline measured with them would be hours off. Like boringtun's
//! `sleepyinstant`, we read `CLOCK_BOOTTIME` on Linux and Android and `CLOCK_MONOTONIC` on Apple
//! (which counts sleep there). Shells read it once per event and pass `now` into pure code.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time on the sleep-counting clock. Only differences mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// Reads the sleep-counting clock.
    pub fn now() -> Self {
        Self(read_clock())
    }

    /// An instant at a given offset from an arbitrary epoch: for tests and simulations that
    /// drive pure state machines through simulated time.
    pub const fn from_epoch(offset: Duration) -> Self {
        Self(offset)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    pub fn checked_sub(self, d: Duration) -> Option<Instant> {
        self.0.checked_sub(d).map(Self)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(rhs))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const CLOCK_ID: libc::clockid_t = libc::CLOCK_BOOTTIME;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const CLOCK_ID: libc::clockid_t = libc::CLOCK_MONOTONIC;

fn read_clock() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(CLOCK_ID, &mut ts) };
    if rc != 0 {
        // Both clocks exist on every platform we build for; a failure here would be a kernel bug.
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_moves_forward() {
        let a = Instant::now();
        let b = Instant::now();
        assert!(b >= a);
        assert!(a > Instant::from_epoch(Duration::ZERO));
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_epoch(Duration::from_secs(5));
        assert_eq!(t + Duration::from_secs(1) - t, Duration::from_secs(1));
        assert_eq!(t - (t + Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(t.checked_sub(Duration::from_secs(6)), None);
    }
}
