//! NetBird's management server as the app sees it: where to join (a URL and a setup key), the
//! client's state, and what management says the VPN interface must look like.

use peerlink_core::config::ManagementSpec;
use peerlink_core::mgmt::{
    DnsSettings as CoreDnsSettings, InterfaceConfig, ManagementError, ManagementState as CoreState,
};

/// Join a NetBird network: with this set, the tunnel address, the peers and the servers come
/// from management (leave `addresses`, `peers`, `signal`, `relay` empty). The peer's identity
/// is `private_key`: store it in the Keystore/Keychain and reuse it on every start.
#[derive(Clone, uniffi::Record)]
pub struct ManagementConfig {
    /// `https://host:port` (or `http://` for a server without TLS).
    pub url: String,
    /// A setup key from the NetBird dashboard; only needed until this key is registered.
    /// Never logged.
    #[uniffi(default = "")]
    pub setup_key: String,
    /// The device's name in the network; unset means the system's host name.
    #[uniffi(default = None)]
    pub hostname: Option<String>,
    /// PEM CA certificate(s) to trust besides the public roots (a self-hosted server).
    #[uniffi(default = None)]
    pub ca_pem: Option<String>,
}

impl ManagementConfig {
    pub(crate) fn to_spec(&self) -> ManagementSpec {
        ManagementSpec {
            url: self.url.clone(),
            setup_key: self.setup_key.clone(),
            hostname: self.hostname.clone(),
            ca_pem: self.ca_pem.clone(),
        }
    }
}

/// Where the engine stands with management.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ManagementState {
    Connecting,
    /// Logged in, the network map stream is open; `serial` is the last map applied.
    Connected {
        serial: Option<u64>,
    },
    /// Unreachable or refused for now; retrying with backoff while the network is up.
    Retrying {
        attempt: u32,
        detail: String,
    },
    /// The app said there is no network.
    Offline,
    /// The setup key is unknown, revoked, expired or used up: ask the user for a new one.
    InvalidSetupKey {
        detail: String,
    },
    /// The server wants a user login (SSO) or the login expired; peerlink has no SSO flow.
    LoginRequired {
        detail: String,
    },
    /// Any other permanent failure (a bad URL).
    Failed {
        detail: String,
    },
}

impl From<CoreState> for ManagementState {
    fn from(s: CoreState) -> Self {
        match s {
            CoreState::Connecting => ManagementState::Connecting,
            CoreState::Connected { serial } => ManagementState::Connected { serial },
            CoreState::Retrying { error, attempt } => ManagementState::Retrying {
                attempt,
                detail: error.to_string(),
            },
            CoreState::Offline => ManagementState::Offline,
            CoreState::Failed(e) => match e {
                ManagementError::InvalidSetupKey { .. } => ManagementState::InvalidSetupKey {
                    detail: e.to_string(),
                },
                ManagementError::LoginRequired { .. } => ManagementState::LoginRequired {
                    detail: e.to_string(),
                },
                ManagementError::Unreachable { .. }
                | ManagementError::Refused { .. }
                | ManagementError::BadMessage { .. }
                | ManagementError::ServerKey(_)
                | ManagementError::BadUrl { .. } => ManagementState::Failed {
                    detail: e.to_string(),
                },
            },
        }
    }
}

/// The VPN interface management asks for: rebuild it with these and call `set_tun` (the
/// Kotlin and Swift helpers do this themselves).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ManagedInterface {
    /// e.g. `100.64.0.5/16`.
    pub addresses: Vec<String>,
    pub mtu: u16,
    /// Networks routed through peers (besides the overlay network of `addresses`).
    pub routes: Vec<String>,
    /// This device's name in the network.
    pub fqdn: String,
}

impl From<InterfaceConfig> for ManagedInterface {
    fn from(i: InterfaceConfig) -> Self {
        Self {
            addresses: i.addresses.iter().map(ToString::to_string).collect(),
            mtu: i.mtu,
            routes: i.routes.iter().map(ToString::to_string).collect(),
            fqdn: i.fqdn,
        }
    }
}

/// DNS settings from management, for the app's interface (the engine resolves nothing).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ManagedDns {
    /// `ip:port`, primary first.
    pub servers: Vec<String>,
    pub match_domains: Vec<String>,
    pub search_domains: Vec<String>,
}

impl From<CoreDnsSettings> for ManagedDns {
    fn from(d: CoreDnsSettings) -> Self {
        Self {
            servers: d.servers,
            match_domains: d.match_domains,
            search_domains: d.search_domains,
        }
    }
}

/// Management's part of the status.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ManagementStatus {
    pub state: ManagementState,
    /// The interface management gave, once it has.
    pub interface: Option<ManagedInterface>,
    /// Network-map entries skipped as malformed since start.
    pub skipped: u64,
}

impl From<peerlink_core::engine::ManagementStatus> for ManagementStatus {
    fn from(m: peerlink_core::engine::ManagementStatus) -> Self {
        Self {
            state: m.state.into(),
            interface: m.interface.map(ManagedInterface::from),
            skipped: m.skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{event_from_core, Event};
    use peerlink_core::Event as CoreEvent;

    #[test]
    fn a_refused_setup_key_reaches_the_app_as_its_own_state() {
        let state: ManagementState = CoreState::Failed(ManagementError::InvalidSetupKey {
            message: "setup key not found".into(),
        })
        .into();
        assert!(
            matches!(state, ManagementState::InvalidSetupKey { ref detail } if detail.contains("new one")),
            "{state:?}"
        );
        let state: ManagementState = CoreState::Failed(ManagementError::LoginRequired {
            message: "expired".into(),
        })
        .into();
        assert!(
            matches!(state, ManagementState::LoginRequired { .. }),
            "{state:?}"
        );
    }

    #[test]
    fn the_interface_event_carries_addresses_routes_and_mtu() {
        let core = InterfaceConfig {
            addresses: vec!["100.64.0.5/16".parse().unwrap()],
            mtu: 1280,
            routes: vec!["192.168.50.0/24".parse().unwrap()],
            fqdn: "phone.netbird.selfhosted".into(),
        };
        let event = event_from_core(CoreEvent::InterfaceChanged(core.clone()));
        let Some(Event::InterfaceChanged { interface }) = event else {
            panic!("{event:?}");
        };
        assert_eq!(interface.addresses, vec!["100.64.0.5/16".to_owned()]);
        assert_eq!(interface.routes, vec!["192.168.50.0/24".to_owned()]);
        assert_eq!(interface.mtu, 1280);

        let config = crate::config::tests::config();
        let settings = crate::config::Validated::new(&config)
            .unwrap()
            .managed_interface_settings(&core);
        let routes: Vec<String> = settings
            .routes
            .iter()
            .map(|r| format!("{}/{}", r.address, r.prefix_len))
            .collect();
        assert_eq!(routes, ["100.64.0.0/16", "192.168.50.0/24"]);
    }
}
