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

    fn raw(clock: libc::clockid_t) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: as in read_clock.
        assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// The policy's clock is the one that counts suspend (DESIGN 10): read between two raw
    /// readings of CLOCK_BOOTTIME, it lies between them; where this machine has slept (its
    /// boot time ahead of CLOCK_MONOTONIC), it is also not the monotonic clock.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn clock_is_boottime_which_counts_suspend() {
        let before = raw(libc::CLOCK_BOOTTIME);
        let now = Instant::now();
        let after = raw(libc::CLOCK_BOOTTIME);
        assert!(
            Instant(before) <= now && now <= Instant(after),
            "{before:?} <= {now:?} <= {after:?}"
        );
        let monotonic = raw(libc::CLOCK_MONOTONIC);
        let slept = after.saturating_sub(monotonic);
        if slept > Duration::from_millis(10) {
            assert!(
                now.0 > monotonic,
                "{now:?} reads CLOCK_MONOTONIC ({monotonic:?}), which stops in suspend"
            );
        }
        eprintln!("CLOCK_BOOTTIME is {slept:?} ahead of CLOCK_MONOTONIC here (time suspended since boot)");
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_epoch(Duration::from_secs(5));
        assert_eq!(t + Duration::from_secs(1) - t, Duration::from_secs(1));
        assert_eq!(t - (t + Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(t.checked_sub(Duration::from_secs(6)), None);
    }
}
