//! What the app does for the engine, implemented in Kotlin or Swift.
//!
//! Synchronous on purpose: uniffi 0.31–0.32's async foreign traits do not compile in Swift 6
//! language mode (DESIGN §12), and `VpnService.protect` is a quick synchronous call anyway.

use std::os::fd::RawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use peerlink_core::socket::Protector;

use crate::guard::panic_message;

/// Implemented by the app. New methods, when the engine needs them, come with a note in the
/// changelog: a foreign trait has no default methods.
#[uniffi::export(foreign)]
pub trait Platform: Send + Sync {
    /// Exempt socket `fd` from the VPN's routes (Android: `VpnService.protect(fd)`), before the
    /// engine sends anything on it. Return false if that failed: the engine then refuses to use
    /// the socket, since its packets would loop back into the tunnel. Apple: return true.
    /// Called on the thread that opens the socket (`start`'s caller or an engine thread).
    fn protect_socket(&self, fd: i32) -> bool;
}

/// Core's socket hook, backed by the app's `Platform`.
pub(crate) struct PlatformProtector(pub Arc<dyn Platform>);

impl Protector for PlatformProtector {
    fn protect(&self, fd: RawFd) -> bool {
        // A foreign exception surfaces in Rust as a panic; a socket we could not protect is
        // refused rather than used, and the engine reports the refusal as a typed error.
        match panic::catch_unwind(AssertUnwindSafe(|| self.0.protect_socket(fd))) {
            Ok(protected) => protected,
            Err(payload) => {
                tracing::error!(fd, detail = %panic_message(payload.as_ref()), "protect_socket failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Throwing;
    impl Platform for Throwing {
        fn protect_socket(&self, _fd: i32) -> bool {
            panic!("the app threw")
        }
    }

    #[test]
    fn a_throwing_platform_refuses_the_socket() {
        assert!(!PlatformProtector(Arc::new(Throwing)).protect(3));
    }
}
