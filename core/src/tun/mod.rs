//! The tunnel interface: whole IP packets in and out of a file descriptor the platform gives us.

mod coalesce;
mod device;
mod framing;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod offload;

pub(crate) use coalesce::MAX_RUN_BYTES as COALESCE_RUN_BYTES;
pub use coalesce::{Coalescer, Frame};
pub use device::{packet_socketpair, FdOwnership, Tun, TunError};
pub use framing::{FrameError, Framing};
pub use offload::MAX_FRAME;
