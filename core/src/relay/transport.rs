//! Opening a relay connection: a protected TCP socket from the engine's [`SocketFactory`], the
//! WebSocket (and TLS) handshake over it, then NetBird's Auth exchange.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::TlsError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{client_async_tls_with_config, Connector, MaybeTlsStream, WebSocketStream};

use super::error::RelayError;
use super::messages::{decode_server, encode_auth, PeerId, ServerMessage};
use super::tls::RelayTls;
use super::token::{unix_now, RelayToken};
use super::url::RelayUrl;
use crate::socket::{SocketError, SocketFactory};

pub(super) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// NetBird's `dialer.DefaultConnectionTimeout`: the whole dial, TCP to AuthResponse.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// One TCP connect to one resolved address; the next address is tried after it.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// NetBird's `serverResponseTimeout` (relay/client/client.go): Auth sent to AuthResponse read.
const AUTH_RESPONSE_TIMEOUT: Duration = Duration::from_secs(8);
/// Largest WebSocket message tungstenite will assemble. Relay messages are at most 8820 bytes; a
/// larger one is read whole, then dropped and counted by the codec, so the connection survives
/// it. Beyond this bound tungstenite fails the connection instead of buffering.
const WS_MAX_MESSAGE: usize = 64 * 1024;
/// tungstenite's read and write buffers, allocated per connection: 64 KiB holds seven full relay
/// messages and keeps a phone's few connections (home plus foreign relays) small.
const WS_BUFFER: usize = 64 * 1024;

/// A connected, authenticated WebSocket and the relay's instance URL.
pub(super) struct Authenticated {
    pub ws: WsStream,
    pub instance_url: String,
}

pub(super) async fn connect(
    url: &RelayUrl,
    own: &PeerId,
    token: &RelayToken,
    sockets: &SocketFactory,
    tls: Option<Connector>,
) -> Result<Authenticated, RelayError> {
    let server = url.as_str().to_owned();
    let work = async {
        let mut ws = open_websocket(url, sockets, tls).await?;
        let instance_url = authenticate(&mut ws, url, own, token).await?;
        Ok(Authenticated { ws, instance_url })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| RelayError::Timeout {
            server,
            stage: "connection",
            after: CONNECT_TIMEOUT,
        })?
}

async fn open_websocket(
    url: &RelayUrl,
    sockets: &SocketFactory,
    tls: Option<Connector>,
) -> Result<WsStream, RelayError> {
    let server = || url.as_str().to_owned();
    let tcp = connect_tcp(url, sockets).await?;
    let request = url
        .websocket_url()
        .into_client_request()
        .map_err(|e| RelayError::WebSocket {
            server: server(),
            detail: e.to_string(),
        })?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(WS_MAX_MESSAGE))
        .max_frame_size(Some(WS_MAX_MESSAGE))
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER);
    let tls = match tls {
        Some(tls) => Some(tls),
        // tungstenite's own default would install a process-wide crypto provider.
        None if url.is_tls() => Some(
            RelayTls::webpki()
                .map_err(|e| RelayError::Tls {
                    server: server(),
                    detail: e.to_string(),
                })?
                .connector(),
        ),
        None => None,
    };
    let (ws, _response) = client_async_tls_with_config(request, tcp, Some(config), tls)
        .await
        .map_err(|e| handshake_error(url, e))?;
    Ok(ws)
}

/// Tells a refused certificate and other TLS failures apart from the WebSocket's own: the first
/// is the one a user can fix (by supplying the relay's CA).
fn handshake_error(url: &RelayUrl, e: WsError) -> RelayError {
    let server = url.as_str().to_owned();
    let rustls_error = match &e {
        WsError::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        WsError::Tls(TlsError::Rustls(inner)) => Some(&**inner),
        _ => None,
    };
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert)) => RelayError::CertificateRefused {
            server,
            detail: cert.to_string(),
        },
        Some(other) => RelayError::Tls {
            server,
            detail: other.to_string(),
        },
        None if matches!(e, WsError::Tls(_)) => RelayError::Tls {
            server,
            detail: e.to_string(),
        },
        None => RelayError::WebSocket {
            server,
            detail: e.to_string(),
        },
    }
}

/// Tries each address of the host in turn on a protected socket.
async fn connect_tcp(url: &RelayUrl, sockets: &SocketFactory) -> Result<TcpStream, RelayError> {
    let server = || url.as_str().to_owned();
    let addrs: Vec<SocketAddr> = match url.host().parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, url.port())],
        Err(_) => tokio::net::lookup_host((url.host(), url.port()))
            .await
            .map_err(|e| RelayError::Resolve {
                server: server(),
                detail: e.to_string(),
            })?
            .collect(),
    };
    let mut last = format!("{} resolved to no address", url.host());
    for addr in addrs {
        match tokio::time::timeout(TCP_CONNECT_TIMEOUT, sockets.tcp_connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(SocketError::ProtectRefused { .. })) => {
                return Err(RelayError::ProtectRefused { server: server() })
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("{addr}: no answer within {TCP_CONNECT_TIMEOUT:?}"),
        }
        tracing::debug!(server = %url, %addr, error = %last, "relay address failed");
    }
    Err(RelayError::Connect {
        server: server(),
        detail: last,
    })
}

/// Sends Auth and waits for AuthResponse. NetBird's relay answers a bad token by closing the
/// connection without a word, so a close here is a refusal; whether the token had expired by our
/// wall clock tells the two refusals apart.
async fn authenticate(
    ws: &mut WsStream,
    url: &RelayUrl,
    own: &PeerId,
    token: &RelayToken,
) -> Result<String, RelayError> {
    let server = || url.as_str().to_owned();
    let auth = encode_auth(own, token.as_bytes())?;
    ws.send(Message::Binary(auth))
        .await
        .map_err(|e| RelayError::WebSocket {
            server: server(),
            detail: e.to_string(),
        })?;
    let refused = || {
        if token.is_expired_at(unix_now()) {
            RelayError::TokenExpired {
                server: server(),
                expired_at: token.expires_unix(),
            }
        } else {
            RelayError::AuthRejected { server: server() }
        }
    };
    let read = async {
        loop {
            let msg = match ws.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) if is_closed(&e) => return Err(refused()),
                Some(Err(e)) => {
                    return Err(RelayError::WebSocket {
                        server: server(),
                        detail: e.to_string(),
                    })
                }
                None => return Err(refused()),
            };
            let bytes = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => return Err(refused()),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Text(_) => {
                    return Err(RelayError::Handshake {
                        server: server(),
                        detail: "text message".into(),
                    })
                }
            };
            return match decode_server(&bytes) {
                Ok(ServerMessage::AuthResponse { instance_url }) => Ok(instance_url.to_owned()),
                Ok(other) => Err(RelayError::Handshake {
                    server: server(),
                    detail: format!("expected AuthResponse, got {other:?}"),
                }),
                Err(e) => Err(RelayError::Handshake {
                    server: server(),
                    detail: e.to_string(),
                }),
            };
        }
    };
    tokio::time::timeout(AUTH_RESPONSE_TIMEOUT, read)
        .await
        .map_err(|_| RelayError::Timeout {
            server: server(),
            stage: "auth response",
            after: AUTH_RESPONSE_TIMEOUT,
        })?
}

/// Errors that mean "the other side closed the connection".
pub(super) fn is_closed(e: &WsError) -> bool {
    use std::io::ErrorKind;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => true,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => true,
        WsError::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionReset
                | ErrorKind::UnexpectedEof
                | ErrorKind::BrokenPipe
                | ErrorKind::ConnectionAborted
        ),
        _ => false,
    }
}
