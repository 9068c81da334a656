//! `peerlink up`: the engine on a real Linux tun, until SIGINT or SIGTERM. SIGUSR1 tells the
//! engine that the network changed (`Engine::network_changed(true)`), as a platform would.
//! With a management URL and a setup key it joins a NetBird network: the address, peers and
//! servers come from management, and the interface is reconfigured when they change.

use std::path::Path;

use peerlink_core::config::ManagementSpec;
use peerlink_core::tun::TunError;
use peerlink_core::{ConfigError, Engine, EngineError, EngineOptions, EngineSpec, Event, PrivateKey};
use serde::Deserialize as _;

use crate::control;
use crate::firewall::FirewallSpec;

/// The interface name when the configuration names none.
pub const DEFAULT_INTERFACE: &str = "peerlink0";
/// Where `up` keeps the identity (the WireGuard private key) of an interface whose
/// configuration has none: management knows the peer by this key.
const KEY_DIR: &str = "/var/lib/peerlink";

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Toml { path: String, source: toml::de::Error },
    #[error("{path}: `interface` must be a string")]
    InterfaceName { path: String },
    #[error("{path}: {source}")]
    Config { path: String, source: ConfigError },
    #[error("{path}: {source}")]
    Firewall {
        path: String,
        source: crate::firewall::FirewallError,
    },
    #[error("key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
    #[error("key file {path}: {source}")]
    Key {
        path: String,
        source: peerlink_core::keys::KeyError,
    },
    #[error("tun: {0}")]
    Tun(#[from] TunError),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("control socket: {0}")]
    Control(#[from] control::ControlError),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

/// What the command line says.
#[derive(Debug, Default)]
pub struct UpArgs {
    pub config: Option<String>,
    pub interface: Option<String>,
    pub management_url: Option<String>,
    pub setup_key: Option<String>,
    pub hostname: Option<String>,
    pub key_file: Option<String>,
}

/// The CLI's configuration file: the engine's configuration plus `interface = "name"`.
pub struct UpConfig {
    pub interface: String,
    pub engine: EngineSpec,
    /// `[[firewall]]`: inbound rules without management; `None`: no filter.
    pub firewall: Option<Vec<FirewallSpec>>,
}

pub fn load(path: &str) -> Result<UpConfig, UpError> {
    let text = std::fs::read_to_string(path).map_err(|source| UpError::Read {
        path: path.into(),
        source,
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|source| UpError::Toml {
        path: path.into(),
        source,
    })?;
    let interface = match table.remove("interface") {
        None => DEFAULT_INTERFACE.to_owned(),
        Some(toml::Value::String(s)) => s,
        Some(_) => return Err(UpError::InterfaceName { path: path.into() }),
    };
    let toml_err = |source: toml::de::Error| UpError::Toml {
        path: path.into(),
        source,
    };
    let firewall = table
        .remove("firewall")
        .map(Vec::<FirewallSpec>::deserialize)
        .transpose()
        .map_err(toml_err)?;
    let engine = EngineSpec::deserialize(table).map_err(toml_err)?;
    Ok(UpConfig {
        interface,
        engine,
        firewall,
    })
}

pub fn run(args: UpArgs) -> Result<(), UpError> {
    let mut up = match &args.config {
        Some(path) => load(path)?,
        None => UpConfig {
            interface: DEFAULT_INTERFACE.to_owned(),
            engine: EngineSpec::default(),
            firewall: None,
        },
    };
    if let Some(name) = &args.interface {
        up.interface = name.clone();
    }
    if let Some(url) = &args.management_url {
        let previous = up.engine.management.take().unwrap_or_default();
        up.engine.management = Some(ManagementSpec {
            url: url.clone(),
            setup_key: args.setup_key.clone().unwrap_or(previous.setup_key),
            hostname: args.hostname.clone().or(previous.hostname),
            ca_pem: previous.ca_pem,
        });
    }
    if up.engine.private_key.is_empty() {
        let path = args
            .key_file
            .clone()
            .unwrap_or_else(|| format!("{KEY_DIR}/{}.key", up.interface));
        up.engine.private_key = load_or_create_key(&path)?;
    }
    let source = args.config.clone().unwrap_or_else(|| "command line".to_owned());
    let config = up.engine.validate().map_err(|source_err| UpError::Config {
        path: source.clone(),
        source: source_err,
    })?;
    let rules = up
        .firewall
        .as_deref()
        .map(crate::firewall::rule_set)
        .transpose()
        .map_err(|source_err| UpError::Firewall {
            path: source.clone(),
            source: source_err,
        })?;
    // Two workers: the tun and socket loops each get a core on these small machines.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(UpError::Runtime)?;
    runtime.block_on(async move {
        let tun = peerlink_core::tun::linux::open(&up.interface, &config.addresses, config.mtu)?;
        let options = EngineOptions {
            tun_name: Some(up.interface.clone()),
            ..EngineOptions::default()
        };
        let managed = config.management.is_some();
        let engine = Engine::start(config, tun, options)?;
        if let Some(rules) = rules {
            println!(
                "peerlink up: firewall: {} inbound rules from the configuration",
                rules.len()
            );
            engine.set_firewall_rules(Some(rules));
        }
        let events = managed.then(|| engine.subscribe());
        let socket = control::socket_path(&up.interface);
        let server = control::serve(Path::new(&socket), engine.status_source())?;
        println!(
            "peerlink up: interface {} public key {} listening on {}",
            up.interface,
            engine.public_key().to_base64(),
            engine.listen_addr()
        );
        // An interface that arrived before the subscription is in status already.
        let initial = engine.status().management.and_then(|m| m.interface);
        let follower = events.map(|rx| tokio::spawn(follow_management(up.interface.clone(), rx, initial)));
        wait_for_signal(&engine).await;
        server.abort();
        if let Some(f) = follower {
            f.abort();
        }
        let _ = std::fs::remove_file(&socket);
        engine.stop().await;
        Ok(())
    })
}

/// The private key in `path`, or a new one written there (mode 0600) on first use.
fn load_or_create_key(path: &str) -> Result<String, UpError> {
    let file_err = |source| UpError::KeyFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = PrivateKey::from_base64(text.trim()).map_err(|source| UpError::Key {
                path: path.to_owned(),
                source,
            })?;
            Ok(key.to_base64())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            if let Some(dir) = Path::new(path).parent() {
                std::fs::create_dir_all(dir).map_err(file_err)?;
            }
            let key = PrivateKey::generate().to_base64();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(file_err)?;
            writeln!(file, "{key}").map_err(file_err)?;
            Ok(key)
        }
        Err(e) => Err(file_err(e)),
    }
}

/// Applies what management says about the interface: on Linux the tun is reconfigured in
/// place (a mobile app rebuilds its VPN interface and calls `set_tun`).
async fn follow_management(
    interface: String,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    initial: Option<peerlink_core::mgmt::InterfaceConfig>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut pending = initial.map(Event::InterfaceChanged);
    loop {
        let next = match pending.take() {
            Some(event) => Ok(event),
            None => events.recv().await,
        };
        match next {
            Ok(Event::InterfaceChanged(config)) => {
                let name = interface.clone();
                let result = tokio::task::spawn_blocking(move || {
                    peerlink_core::tun::linux::reconfigure(
                        &name,
                        &config.addresses,
                        config.mtu,
                        &config.routes,
                    )
                    .map(|()| config)
                })
                .await;
                match result {
                    Ok(Ok(config)) => {
                        let addresses: Vec<String> = config.addresses.iter().map(|a| a.to_string()).collect();
                        println!("peerlink up: address {} ({})", addresses.join(", "), config.fqdn);
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "reconfiguring the interface failed"),
                    Err(e) => tracing::warn!(error = %e, "reconfiguring the interface failed"),
                }
            }
            Ok(Event::ManagementStateChanged(state)) => println!("peerlink up: management {state}"),
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => tracing::debug!(missed = n, "events missed"),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Waits for SIGINT or SIGTERM; meanwhile each SIGUSR1 reports a network change to the engine.
async fn wait_for_signal(engine: &Engine) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        // Without signal handlers the only way out is being killed, which is still clean for a tun.
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = usr1.recv() => engine.network_changed(true),
        }
    }
}
