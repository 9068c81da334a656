//! Apple: find the utun fd that `NEPacketTunnelProvider` created, by scanning the process's
//! descriptors for a `com.apple.net.utun_control` socket (the technique wireguard-apple uses;
//! the extension never hands the fd over itself).
//!
//! `find_utun_fd` is exported on every platform, so the interface (and the Swift generated from
//! it on Linux, committed under `ios/Sources/`) is the same everywhere; elsewhere it finds nothing.

#[cfg(any(target_vendor = "apple", test))]
use std::time::Duration;

/// wireguard-apple scans descriptors 0...1024; an extension has far fewer open.
#[cfg(target_vendor = "apple")]
const MAX_FD: i32 = 1024;
/// The utun exists once `setTunnelNetworkSettings` completed, but its descriptor can show up a
/// moment later; a few quick retries cover that without blocking the caller noticeably.
#[cfg(target_vendor = "apple")]
const ATTEMPTS: u32 = 3;
#[cfg(target_vendor = "apple")]
const RETRY_DELAY: Duration = Duration::from_millis(10);

/// The utun fd of this packet tunnel extension, or `None` if there is none (call it after the
/// tunnel network settings were applied). Blocks at most about 20 ms. Apple only: on other
/// platforms it always returns `None` (Android's `VpnService` hands over its fd itself).
#[uniffi::export]
pub fn find_utun_fd() -> Option<i32> {
    #[cfg(not(target_vendor = "apple"))]
    {
        tracing::warn!("find_utun_fd is Apple-only; there is no utun on this platform");
        None
    }
    #[cfg(target_vendor = "apple")]
    apple_scan()
}

#[cfg(target_vendor = "apple")]
fn apple_scan() -> Option<i32> {
    let found = std::panic::catch_unwind(|| scan_with_retry(MAX_FD, ATTEMPTS, RETRY_DELAY, sys::utun_name));
    match found {
        Ok(Some((fd, name))) => {
            tracing::info!(fd, interface = %name, "found the utun fd");
            Some(fd)
        }
        Ok(None) => {
            tracing::warn!("no utun fd found; were the tunnel network settings applied?");
            None
        }
        Err(payload) => {
            tracing::error!(detail = %crate::guard::panic_message(payload.as_ref()), "utun scan failed");
            None
        }
    }
}

/// Calls `probe` on fds 0..=max_fd until one names a utun interface, `attempts` times.
#[cfg(any(target_vendor = "apple", test))]
fn scan_with_retry(
    max_fd: i32,
    attempts: u32,
    delay: Duration,
    probe: impl Fn(i32) -> Option<String>,
) -> Option<(i32, String)> {
    for attempt in 0..attempts {
        if attempt > 0 {
            std::thread::sleep(delay);
        }
        if let Some(found) = (0..=max_fd).find_map(|fd| probe(fd).map(|name| (fd, name))) {
            return Some(found);
        }
    }
    None
}

#[cfg(target_vendor = "apple")]
mod sys {
    use std::mem::{size_of, MaybeUninit};

    /// sys/socket.h: kernel control sockets' address family (the same on every Apple OS; the
    /// libc crate only exports the control constants below for macOS, so we spell them here).
    const AF_SYSTEM: u8 = 32;
    /// sys/sys_domain.h.
    const SYSPROTO_CONTROL: libc::c_int = 2;
    /// net/if_utun.h: the interface name of a utun control socket.
    const UTUN_OPT_IFNAME: libc::c_int = 2;

    /// sys/kern_control.h `struct sockaddr_ctl`.
    #[repr(C)]
    struct SockaddrCtl {
        sc_len: u8,
        sc_family: u8,
        ss_sysaddr: u16,
        sc_id: u32,
        sc_unit: u32,
        sc_reserved: [u32; 5],
    }

    /// The interface name if `fd` is a connected utun control socket.
    pub(super) fn utun_name(fd: i32) -> Option<String> {
        let mut addr = MaybeUninit::<SockaddrCtl>::zeroed();
        let mut len = size_of::<SockaddrCtl>() as libc::socklen_t;
        // SAFETY: addr has room for `len` bytes; getpeername writes at most that many and
        // fails harmlessly (EBADF, ENOTSOCK, ENOTCONN) on anything but a connected socket.
        let rc = unsafe { libc::getpeername(fd, addr.as_mut_ptr().cast(), &mut len) };
        // SAFETY: zeroed is a valid SockaddrCtl, and getpeername only wrote plain bytes.
        let addr = unsafe { addr.assume_init() };
        if rc != 0 || addr.sc_family != AF_SYSTEM {
            return None;
        }
        let mut name = [0u8; libc::IFNAMSIZ];
        let mut name_len = name.len() as libc::socklen_t;
        // SAFETY: name has room for name_len bytes, which getsockopt does not exceed.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                SYSPROTO_CONTROL,
                UTUN_OPT_IFNAME,
                name.as_mut_ptr().cast(),
                &mut name_len,
            )
        };
        if rc != 0 {
            return None;
        }
        let name = name.get(..name_len as usize)?;
        let name = std::ffi::CStr::from_bytes_until_nul(name).ok()?.to_str().ok()?;
        name.starts_with("utun").then(|| name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(target_vendor = "apple"))]
    #[test]
    fn elsewhere_there_is_no_utun() {
        assert_eq!(find_utun_fd(), None);
    }

    #[test]
    fn the_scan_finds_the_first_utun_and_gives_up_after_its_attempts() {
        let probe = |fd: i32| (fd == 7 || fd == 9).then(|| format!("utun{fd}"));
        assert_eq!(
            scan_with_retry(16, 1, Duration::ZERO, probe),
            Some((7, "utun7".into()))
        );
        let calls = std::cell::Cell::new(0);
        let none = |_fd: i32| {
            calls.set(calls.get() + 1);
            None::<String>
        };
        assert_eq!(scan_with_retry(3, 2, Duration::ZERO, none), None);
        assert_eq!(calls.get(), 8);
    }
}
