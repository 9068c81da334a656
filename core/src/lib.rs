//! peerlink-core: a NetBird-compatible WireGuard connection engine for mobile apps.
//!
//! The app hands [`Engine::start`] a configuration and a tun ([`tun::Tun`]); the engine moves IP
//! packets between that tun and its peers over the best path it has.

pub mod backoff;
pub mod clock;
pub mod config;
pub mod conn;
pub mod engine;
pub mod events;
pub mod filter;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod ice;
pub mod keys;
pub mod mgmt;
pub mod net;
pub mod packet;
pub mod path;
pub mod relay;
pub mod signal;
pub mod socket;
pub mod tun;
pub mod wg;

pub use config::{
    ConfigError, EngineConfig, EngineSpec, IceSpec, PeerConfig, PeerSpec, RelaySpec, SignalSpec, TurnSpec,
};
pub use conn::{Health, StaleReason};
pub use engine::{
    Engine, EngineError, EngineOptions, EngineStatus, Event, PathStatus, PeerStatus, StatusSource,
    SwitchRecord,
};
pub use keys::{PresharedKey, PrivateKey, PublicKey};
