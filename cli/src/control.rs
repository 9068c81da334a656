//! The control socket of `peerlink up`: `peerlink status` connects and reads the status text.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;

use peerlink_core::StatusSource;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

/// Where control sockets live; root-only like the tun itself.
const SOCKET_DIR: &str = "/run/peerlink";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("binding {path}: {source}")]
    Bind { path: String, source: std::io::Error },
    #[error("connecting to {path} (is `peerlink up` running?): {source}")]
    Connect { path: String, source: std::io::Error },
}

pub fn socket_path(interface: &str) -> String {
    format!("{SOCKET_DIR}/{interface}.sock")
}

/// Serves the status text to every connection until aborted.
pub fn serve(path: &Path, source: StatusSource) -> Result<tokio::task::JoinHandle<()>, ControlError> {
    let bind_err = |source| ControlError::Bind {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(bind_err)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let text = match source.status() {
                Some(status) => status.to_string(),
                None => "engine stopped\n".to_owned(),
            };
            let _ = stream.write_all(text.as_bytes()).await;
        }
    }))
}

pub fn query(path: &str) -> Result<String, ControlError> {
    let connect_err = |source| ControlError::Connect {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(connect_err)?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(connect_err)?;
    Ok(text)
}
