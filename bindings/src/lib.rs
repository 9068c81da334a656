//! peerlink-ffi: the engine as Kotlin and Swift see it (uniffi, library mode).
//!
//! One [`Engine`] object per tunnel, built from one [`EngineConfig`] record; the app implements
//! [`Platform`]; every error is a [`PeerlinkError`], panics included. `core` knows nothing of
//! uniffi: everything foreign-facing lives here.

uniffi::setup_scaffolding!("peerlink");

mod config;
mod engine;
mod error;
mod guard;
mod logging;
mod management;
mod model;
mod platform;
mod status;
mod utun;

pub use config::{
    generate_key_pair, interface_settings, public_key_of, EngineConfig, IceConfig, InterfaceSettings,
    IpPrefix, KeyPair, PeerConfig, RelayConfig, SignalConfig, TunFdOwnership, TunFraming, TurnServer,
};
pub use engine::{Engine, MAX_BLOCKING_THREADS, THREAD_STACK_SIZE, WORKER_THREADS};
pub use error::PeerlinkError;
pub use logging::{init_logging, set_log_level, LogLevel};
pub use management::{ManagedDns, ManagedInterface, ManagementConfig, ManagementState, ManagementStatus};
pub use model::{PeerState, TunnelModel, TunnelState, TunnelUpdate};
pub use platform::Platform;
pub use status::{
    EngineDrops, EngineStatus, Event, IceState, PathHealth, PathKind, PathStatus, PathSwitch, PeerCounters,
    PeerStatus, RelayState, SignalState,
};
// Exported on every platform (None outside Apple) so the interface is the same everywhere.
pub use utun::find_utun_fd;
