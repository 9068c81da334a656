//! What the control plane is built from: the validated configuration turned into the signal,
//! relay and ICE settings of their modules.

use tokio_tungstenite::Connector;

use crate::config::{EngineConfig, IceSpec, RelaySettings};
use crate::ice::{IceConfig, InterfaceFilter, TurnServer};
use crate::relay::{RelayManagerConfig, RelayUrl};
use crate::signal::{GrpcSignalConfig, SignalHub};
use crate::socket::SocketFactory;

/// Where signal comes from.
#[derive(Clone)]
pub enum SignalSource {
    /// NetBird's signal server.
    Grpc(GrpcSignalConfig),
    /// An in-process hub (the demo, tests).
    Hub(SignalHub),
}

impl std::fmt::Debug for SignalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignalSource::Grpc(c) => write!(f, "Grpc({})", c.url),
            SignalSource::Hub(_) => f.write_str("Hub"),
        }
    }
}

#[derive(Clone)]
pub struct ConnSetup {
    pub relay: Option<RelayManagerConfig>,
    pub ice: Option<IceConfig>,
}

impl ConnSetup {
    /// The relay and ICE settings of `config`; `tun_name` is left out of ICE's interfaces.
    pub fn from_config(config: &EngineConfig, sockets: &SocketFactory, tun_name: Option<&str>) -> Self {
        let own = config.private_key.public_key();
        let relay = config.relay.as_ref().map(|r| {
            let mut c = RelayManagerConfig::new(own, r.urls.clone(), r.token.clone());
            c.sockets = sockets.clone();
            c.tls = relay_connector(r);
            c
        });
        let ice = config.ice.as_ref().map(|i| ice_config(i, tun_name));
        Self { relay, ice }
    }
}

/// The signal source a configuration names, if any.
pub fn signal_source(config: &EngineConfig, sockets: &SocketFactory) -> Option<SignalSource> {
    let s = config.signal.as_ref()?;
    let mut grpc = GrpcSignalConfig::new(s.url.clone());
    grpc.extra_ca_pem = s.ca_pem.as_ref().map(|p| p.as_bytes().to_vec());
    grpc.sockets = sockets.clone();
    Some(SignalSource::Grpc(grpc))
}

/// The TLS connector of the relays: with the app's CA when any configured relay is `rels://` or
/// a CA was given (a peer may advertise a `rels://` relay of the same deployment); otherwise
/// plain `rel://` needs none.
fn relay_connector(relay: &RelaySettings) -> Option<Connector> {
    let tls_wanted = relay.urls.iter().any(RelayUrl::is_tls) || relay.tls.extra_cas() > 0;
    tls_wanted.then(|| relay.tls.connector())
}

fn ice_config(spec: &IceSpec, tun_name: Option<&str>) -> IceConfig {
    let mut interfaces = match &spec.interfaces {
        Some(names) => InterfaceFilter {
            excluded_prefixes: Vec::new(),
            excluded_names: Vec::new(),
            only_names: names.clone(),
            include_loopback: names.iter().any(|n| n.starts_with("lo")),
        },
        None => InterfaceFilter::default(),
    };
    if let Some(tun) = tun_name {
        interfaces = interfaces.excluding(tun);
    }
    // Android names its VPN interfaces tun0, tun1, … as it rebuilds them; none may carry ICE.
    if cfg!(target_os = "android") && spec.interfaces.is_none() {
        interfaces.excluded_prefixes.push("tun".to_owned());
    }
    IceConfig {
        stun_urls: spec.stun.clone(),
        turn_servers: spec
            .turn
            .iter()
            .map(|t| TurnServer {
                url: t.url.clone(),
                username: t.username.clone(),
                credential: t.credential.clone(),
            })
            .collect(),
        force_turn: spec.force_turn,
        interfaces,
        ..IceConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EngineSpec, RelaySpec};
    use crate::keys::PrivateKey;

    fn relay_setup(url: &str) -> RelayManagerConfig {
        let spec = EngineSpec {
            private_key: PrivateKey::generate().to_base64(),
            relay: Some(RelaySpec {
                urls: vec![url.into()],
                secret: Some("s".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let config = spec.validate().unwrap();
        ConnSetup::from_config(&config, &SocketFactory::default(), None)
            .relay
            .unwrap()
    }

    #[test]
    fn a_rels_relay_gets_the_tls_connector_and_a_plain_one_none() {
        assert!(matches!(
            relay_setup("rels://relay.example").tls,
            Some(Connector::Rustls(_))
        ));
        assert!(relay_setup("rel://relay.example").tls.is_none());
    }
}
