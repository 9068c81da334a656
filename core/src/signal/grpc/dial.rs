//! How the gRPC client reaches the server: tonic's channel runs over TCP connections that
//! [`SocketFactory::tcp_connect`] opens (and, on Android, protects from the VPN), through
//! tonic's custom-connector hook. tonic layers its TLS on top of whatever the connector returns
//! when the endpoint is `https://` and has a TLS config, so TLS stays tonic's, end to end.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

use crate::signal::SignalError;
use crate::socket::{SocketError, SocketFactory};

/// NetBird's client keepalive (client/grpc/dialer.go): an HTTP/2 ping every 30 s.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// NetBird's keepalive timeout: no ping answer within 10 s and the connection is dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// NetBird's `ConnectTimeout` (shared/management/client/grpc.go), for DNS plus TCP plus TLS.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens channels to one signal server, each on its own protected connection.
pub(crate) struct Dialer {
    endpoint: Endpoint,
    target: Arc<Target>,
    sockets: SocketFactory,
}

impl Dialer {
    pub fn new(
        target: Target,
        tls: Option<ClientTlsConfig>,
        sockets: SocketFactory,
    ) -> Result<Self, SignalError> {
        let endpoint = Endpoint::from(target.origin.clone())
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT);
        let endpoint = match tls {
            Some(tls) => endpoint
                .tls_config(tls)
                .map_err(|e| SignalError::Tls(e.to_string()))?,
            None => endpoint,
        };
        Ok(Self {
            endpoint,
            target: Arc::new(target),
            sockets,
        })
    }

    /// A channel that connects on first use. A failed dial surfaces as an `Unavailable` status
    /// whose message is the [`DialError`]; the connect timeout covers the dial and TLS.
    pub fn channel(&self) -> Channel {
        let target = self.target.clone();
        let sockets = self.sockets.clone();
        // The URI tonic passes is the endpoint's, i.e. the target's: nothing new to read in it.
        let connector = tower::service_fn(move |_: Uri| {
            let target = target.clone();
            let sockets = sockets.clone();
            async move {
                let stream = dial(&target, &sockets).await.inspect_err(|e| {
                    tracing::debug!(host = %target.host, port = target.port, error = %e, "signal dial failed");
                })?;
                Ok::<_, DialError>(TokioIo::new(stream))
            }
        });
        self.endpoint.connect_with_connector_lazy(connector)
    }
}

/// Why no TCP connection to the server could be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("resolving {host}: {source}")]
    Resolve { host: String, source: std::io::Error },
    #[error("{host} resolved to no address")]
    NoAddress { host: String },
    #[error(transparent)]
    Connect(SocketError),
}

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

/// Resolves the target and connects to the first address that answers, through the factory.
async fn dial(target: &Target, sockets: &SocketFactory) -> Result<TcpStream, DialError> {
    let addrs = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|source| DialError::Resolve {
            host: target.host.clone(),
            source,
        })?;
    let mut last = DialError::NoAddress {
        host: target.host.clone(),
    };
    for addr in addrs {
        match sockets.tcp_connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                tracing::trace!(addr = %addr, error = %e, "signal server address did not answer");
                last = DialError::Connect(e);
            }
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

    #[tokio::test]
    async fn a_failed_dial_names_the_address_in_the_status() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let target = Target::parse(&format!("http://{closed}")).unwrap();
        let dialer = Dialer::new(target, None, SocketFactory::default()).unwrap();

        let status = unary_send(dialer.channel()).await.unwrap_err();

        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains(&format!("connecting to {closed}")),
            "{status:?}"
        );
    }

    async fn unary_send(channel: Channel) -> Result<(), tonic::Status> {
        use crate::signal::proto::{EncryptedMessage, SEND_PATH};
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<EncryptedMessage, EncryptedMessage>::default();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(SEND_PATH);
        grpc.unary(tonic::Request::new(EncryptedMessage::default()), path, codec)
            .await
            .map(drop)
    }
}
