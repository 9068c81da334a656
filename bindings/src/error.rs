//! The one error type the foreign side sees: a Kotlin sealed exception, a Swift `Error`.
//!
//! Fields are named `detail`, not `message`: uniffi's Kotlin exceptions override
//! `Throwable.message`, and a field of that name would clash with it.

use peerlink_core::config::ConfigError;
use peerlink_core::socket::SocketError;
use peerlink_core::tun::TunError;
use peerlink_core::EngineError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum PeerlinkError {
    /// The configuration was refused; `field` names the entry, e.g. `peers[2].allowed_ips[0]`.
    #[error("{detail}")]
    Config { field: String, detail: String },
    /// The tun file descriptor could not be used.
    #[error("tun: {detail}")]
    Tun { detail: String },
    /// A socket could not be opened, bound or protected from the VPN.
    #[error("socket: {detail}")]
    Socket { detail: String },
    /// `start` on a running engine (or while a stop or tun swap is still under way).
    #[error("the engine is already running; stop it first")]
    AlreadyStarted,
    /// The engine is not running; call `start` first.
    #[error("the engine is not running; call start first")]
    NotStarted,
    /// A bug: a panic inside the library, caught at the boundary. `detail` is the panic message.
    #[error("internal error (please report): {detail}")]
    Internal { detail: String },
}

impl PeerlinkError {
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::Internal {
            detail: detail.into(),
        }
    }

    pub(crate) fn config(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

impl From<ConfigError> for PeerlinkError {
    fn from(e: ConfigError) -> Self {
        let field = match &e {
            ConfigError::Key { field, .. } => field.clone(),
            ConfigError::Prefix { field, .. } => field.clone(),
            ConfigError::Endpoint { field, .. } => field.clone(),
            ConfigError::Mtu { .. } => "mtu".to_owned(),
            ConfigError::OverlappingAllowedIp { field, .. } => field.clone(),
            ConfigError::DuplicatePeer { field, .. } => field.clone(),
            ConfigError::SelfPeer { field } => field.clone(),
            ConfigError::Server { field, .. } => field.clone(),
        };
        // core's messages already start with the field and never contain key material.
        Self::Config {
            field,
            detail: e.to_string(),
        }
    }
}

impl From<TunError> for PeerlinkError {
    fn from(e: TunError) -> Self {
        Self::Tun {
            detail: e.to_string(),
        }
    }
}

impl From<SocketError> for PeerlinkError {
    fn from(e: SocketError) -> Self {
        Self::Socket {
            detail: e.to_string(),
        }
    }
}

impl From<EngineError> for PeerlinkError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Socket(e) => e.into(),
            EngineError::LocalAddr(e) => Self::Socket {
                detail: format!("reading the socket's address: {e}"),
            },
            EngineError::UnknownPeer(key) => Self::internal(format!("peer {key} is not configured")),
            EngineError::Signal(e) => Self::Socket {
                detail: format!("signal: {e}"),
            },
            EngineError::IceWithoutSignal => Self::config("ice", EngineError::IceWithoutSignal.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerlink_core::EngineSpec;

    #[test]
    fn config_errors_keep_the_field_they_name() {
        let spec = EngineSpec {
            private_key: "short".into(),
            ..Default::default()
        };
        let e: PeerlinkError = spec.validate().unwrap_err().into();
        assert!(
            matches!(&e, PeerlinkError::Config { field, .. } if field == "private_key"),
            "{e:?}"
        );
    }

    #[test]
    fn mtu_errors_name_the_mtu_field() {
        let e: PeerlinkError = ConfigError::Mtu {
            mtu: 10,
            min: 576,
            max: 9000,
        }
        .into();
        assert_eq!(
            e,
            PeerlinkError::Config {
                field: "mtu".into(),
                detail: "mtu: 10 is outside 576..=9000".into()
            }
        );
    }

    #[test]
    fn a_refused_protect_is_a_socket_error() {
        let e: PeerlinkError = EngineError::Socket(SocketError::ProtectRefused { fd: 7 }).into();
        assert!(
            matches!(&e, PeerlinkError::Socket { detail } if detail.contains("protect")),
            "{e:?}"
        );
    }
}
