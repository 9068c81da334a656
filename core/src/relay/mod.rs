//! NetBird's relay: a WebSocket connection per relay server, carrying WireGuard datagrams for
//! many peers as Transport messages (DESIGN.md §7 "Relay").
//!
//! - [`RelayManager`]: the engine's relays: a home relay kept up with backoff, foreign relays
//!   that peers advertise, a [`RelayState`] watch and [`RelayEvent`]s.
//! - [`RelayClient`]: one authenticated connection; [`RelayClient::open_peer`] gives a
//!   [`RelayPath`], the engine's [`crate::path::Path`] through the relay.
//! - [`messages`]: the wire format; [`RelayToken`]: NetBird's HMAC token; [`RelayTls`]: whom a
//!   `rels://` connection trusts.
//! - Pure policy: [`backoff`], [`health`], [`held`] take `now` and decide.

pub mod backoff;
mod client;
mod conn;
mod controller;
mod counters;
mod error;
mod events;
pub mod health;
pub mod held;
mod io;
mod manager;
pub mod messages;
mod path;
mod tls;
mod token;
mod transport;
mod url;

pub use backoff::BackoffPolicy;
pub use client::{ClientOptions, RelayClient, OPEN_TIMEOUT};
pub use conn::{CONTROL_QUEUE, DATA_QUEUE};
pub use controller::is_controller;
pub use counters::{RelayCounters, RelayCountersSnapshot};
pub use error::RelayError;
pub use events::{DisconnectReason, PathCloseReason, RelayEvent, RelayState, RELAY_EVENT_CAPACITY};
pub use manager::{RelayManager, RelayManagerConfig, FOREIGN_LINGER};
pub use path::RelayPath;
pub use tls::{RelayTls, TlsConfigError};
pub use token::{unix_now, RelayToken, TokenError};
pub use transport::CONNECT_TIMEOUT;
pub use url::{RelayUrl, UrlError};
