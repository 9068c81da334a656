//! How the gRPC client reaches the server through a protected socket.
//!
//! tonic's custom-connector hook (`Endpoint::connect_with_connector`) wants a connection type
//! that implements hyper's I/O traits, and neither hyper nor hyper-util is a dependency of this
//! crate. So tonic talks to a loopback listener of ours, and each connection it makes there is
//! spliced to a TCP connection that [`SocketFactory::tcp_connect`] opened (and, on Android,
//! protected). TLS still runs end to end inside tonic: the endpoint is `https://127.0.0.1:port`
//! with the real host as TLS server name and as the request's authority. Loopback traffic never
//! enters the VPN, so the loopback leg needs no protection.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Uri};

use crate::signal::SignalError;
use crate::socket::SocketFactory;

/// NetBird's client keepalive (client/grpc/dialer.go): an HTTP/2 ping every 30 s.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// NetBird's keepalive timeout: no ping answer within 10 s and the connection is dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// NetBird's `ConnectTimeout` (shared/management/client/grpc.go), for DNS plus TCP plus TLS.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (descriptor exhaustion), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Where the signal server is, from its URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub tls: bool,
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// `scheme://authority` of the URL, sent as the requests' origin.
    pub origin: Uri,
}

impl Target {
    /// `http://host[:port]` or `https://host[:port]`; no path beyond `/`.
    pub fn parse(url: &str) -> Result<Self, SignalError> {
        let bad = |reason: &'static str| SignalError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("a signal URL has no path"));
        }
        // NetBird's defaults when the URL names no port: 443 with TLS, 80 without.
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let origin = format!("{}://{authority}", if tls { "https" } else { "http" });
        let origin = origin.parse().map_err(|_| bad("not a URL"))?;
        Ok(Self {
            tls,
            host,
            port,
            origin,
        })
    }
}

/// The TLS settings for a target: webpki roots (the platform stores are unreachable from
/// Rust on Android and iOS) plus an optional CA for self-hosted servers.
pub(crate) fn tls_config(
    target: &Target,
    extra_ca_pem: Option<&[u8]>,
) -> Result<ClientTlsConfig, SignalError> {
    let mut config = ClientTlsConfig::new()
        .with_webpki_roots()
        .domain_name(target.host.clone());
    if let Some(pem) = extra_ca_pem {
        // tonic skips certificates it cannot parse; refuse input without any PEM certificate.
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(SignalError::BadCaPem);
        }
        config = config.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(config)
}

/// The tonic endpoint for `target`, reached through a splice listening on `local`.
pub(crate) fn endpoint(
    target: &Target,
    local: SocketAddr,
    tls: Option<ClientTlsConfig>,
) -> Result<Endpoint, SignalError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{local}"))
        .map_err(|e| SignalError::Transport(e.to_string()))?
        .origin(target.origin.clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    match tls {
        Some(tls) => endpoint
            .tls_config(tls)
            .map_err(|e| SignalError::Tls(e.to_string())),
        None => Ok(endpoint),
    }
}

/// A loopback listener whose every connection is spliced to the target through a protected
/// socket. Dropping it stops the listener and every splice.
pub(crate) struct Splice {
    pub local: SocketAddr,
    /// Why the last dial to the real server failed.
    pub dial_error: DialError,
    task: JoinHandle<()>,
}

/// Why the last dial to the real server failed, so that a failed call names the real cause
/// (connection refused, DNS) rather than the loopback leg's "connection closed".
#[derive(Clone, Default)]
pub(crate) struct DialError(Arc<Mutex<Option<String>>>);

impl DialError {
    pub fn get(&self) -> Option<String> {
        self.0.lock().clone()
    }

    pub fn clear(&self) {
        *self.0.lock() = None;
    }

    fn set(&self, error: String) {
        *self.0.lock() = Some(error);
    }
}

impl Splice {
    /// Binds the loopback listener. Must be called inside a tokio runtime.
    pub fn start(target: Target, sockets: SocketFactory) -> Result<Self, SignalError> {
        let fail = |e: std::io::Error| SignalError::Transport(format!("loopback splice: {e}"));
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let listener = TcpListener::from_std(listener).map_err(fail)?;
        let local = listener.local_addr().map_err(fail)?;
        let dial_error = DialError::default();
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::new(target),
            sockets,
            dial_error.clone(),
        ));
        Ok(Self {
            local,
            dial_error,
            task,
        })
    }
}

impl Drop for Splice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: Arc<Target>,
    sockets: SocketFactory,
    dial_error: DialError,
) {
    // Dropped with this task: aborting the loop aborts every splice.
    let mut splices = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((local, _)) => {
                    splices.spawn(splice(local, target.clone(), sockets.clone(), dial_error.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "signal splice accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(_) = splices.join_next() => {}
        }
    }
}

async fn splice(mut local: TcpStream, target: Arc<Target>, sockets: SocketFactory, dial_error: DialError) {
    let dialed = tokio::time::timeout(CONNECT_TIMEOUT, dial(&target, &sockets)).await;
    let mut remote = match dialed {
        Ok(Ok(remote)) => remote,
        Ok(Err(e)) => {
            tracing::debug!(host = %target.host, port = target.port, error = %e, "signal dial failed");
            dial_error.set(e);
            return;
        }
        Err(_) => {
            dial_error.set(format!("no TCP connection within {CONNECT_TIMEOUT:?}"));
            return;
        }
    };
    let _ = local.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut local, &mut remote).await {
        tracing::trace!(error = %e, "signal splice ended");
    }
}

/// Resolves the target and connects to the first address that answers, through the factory.
async fn dial(target: &Target, sockets: &SocketFactory) -> Result<TcpStream, String> {
    let addrs = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("resolving {}: {e}", target.host))?;
    let mut last = format!("{} resolved to no address", target.host);
    for addr in addrs {
        match sockets.tcp_connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_netbird_default_ports() {
        let t = Target::parse("https://signal.example").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (true, "signal.example", 443));
        assert_eq!(t.origin.to_string(), "https://signal.example/");
        let t = Target::parse("http://[::1]:10000/").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (false, "::1", 10000));
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for url in [
            "signal.example:443",
            "grpc://x:1",
            "https://x/path",
            "http://",
            "nonsense url",
        ] {
            assert!(
                matches!(Target::parse(url), Err(SignalError::BadUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn a_ca_that_is_not_pem_is_refused() {
        let t = Target::parse("https://x").unwrap();
        assert!(matches!(
            tls_config(&t, Some(b"garbage")),
            Err(SignalError::BadCaPem)
        ));
    }
}
