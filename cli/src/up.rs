//! `peerlink up`: the engine on a real Linux tun, until SIGINT or SIGTERM. SIGUSR1 tells the
//! engine that the network changed (`Engine::network_changed(true)`), as a platform would.

use std::path::Path;

use peerlink_core::tun::TunError;
use peerlink_core::{ConfigError, Engine, EngineError, EngineOptions, EngineSpec};
use serde::Deserialize as _;

use crate::control;

/// The interface name when the configuration names none.
pub const DEFAULT_INTERFACE: &str = "peerlink0";

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
    #[error("tun: {0}")]
    Tun(#[from] TunError),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("control socket: {0}")]
    Control(#[from] control::ControlError),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

/// The CLI's configuration file: the engine's configuration plus `interface = "name"`.
pub struct UpConfig {
    pub interface: String,
    pub engine: EngineSpec,
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
    let engine = EngineSpec::deserialize(table).map_err(|source| UpError::Toml {
        path: path.into(),
        source,
    })?;
    Ok(UpConfig { interface, engine })
}

pub fn run(path: &str) -> Result<(), UpError> {
    let up = load(path)?;
    let config = up.engine.validate().map_err(|source| UpError::Config {
        path: path.into(),
        source,
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
        let engine = Engine::start(config, tun, options)?;
        let socket = control::socket_path(&up.interface);
        let server = control::serve(Path::new(&socket), engine.status_source())?;
        println!(
            "peerlink up: interface {} public key {} listening on {}",
            up.interface,
            engine.public_key().to_base64(),
            engine.listen_addr()
        );
        wait_for_signal(&engine).await;
        server.abort();
        let _ = std::fs::remove_file(&socket);
        engine.stop().await;
        Ok(())
    })
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
