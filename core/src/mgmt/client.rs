//! The calls of NetBird's management service, each sealed for the server's key of the moment:
//! `GetServerKey` before every call (the key changes when the server restarts), then `Login` or
//! `Sync`. Transport is signal's dialer (protected sockets, tonic's TLS, NetBird's keepalive).

use std::time::Duration;

use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Streaming;

use super::proto::{
    Empty, EncryptedMessage, LoginRequest, LoginResponse, ServerKeyResponse, SyncRequest, SyncResponse,
    GET_SERVER_KEY_PATH, LOGIN_PATH, SYNC_PATH,
};
use super::ManagementError;
use crate::keys::{PrivateKey, PublicKey};
use crate::signal::grpc::dial::{tls_config, Dialer, Target};
use crate::signal::seal;
use crate::socket::SocketFactory;

/// NetBird's receive limit for management messages (`defaultMaxRecvMsgSize`): a network map of
/// thousands of peers fits.
pub const MAX_DECODE_LEN: usize = 16 * 1024 * 1024;
/// NetBird's deadline for `GetServerKey` (`getServerPublicKey`).
pub const SERVER_KEY_TIMEOUT: Duration = Duration::from_secs(5);
/// NetBird's `ConnectTimeout`, its deadline for `Login` and for opening `Sync`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One management server, dialled afresh for each session (DESIGN 12: tonic channels do not
/// always recover on their own).
pub(crate) struct Client {
    dialer: Dialer,
    own: PrivateKey,
}

impl Client {
    pub fn new(
        url: &str,
        extra_ca_pem: Option<&[u8]>,
        sockets: SocketFactory,
        own: PrivateKey,
    ) -> Result<Self, ManagementError> {
        let bad = |e: crate::signal::SignalError| ManagementError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        };
        let target = Target::parse(url).map_err(bad)?;
        let tls = target
            .tls
            .then(|| tls_config(&target, extra_ca_pem))
            .transpose()
            .map_err(bad)?;
        let dialer = Dialer::new(target, tls, sockets).map_err(bad)?;
        Ok(Self { dialer, own })
    }

    /// A channel for one session (login and the sync stream that follows).
    pub fn channel(&self) -> Channel {
        self.dialer.channel()
    }

    pub async fn server_key(&self, channel: &Channel) -> Result<PublicKey, ManagementError> {
        let mut grpc = grpc(channel.clone()).await?;
        let codec = tonic_prost::ProstCodec::<Empty, ServerKeyResponse>::default();
        let call = grpc.unary(
            tonic::Request::new(Empty {}),
            PathAndQuery::from_static(GET_SERVER_KEY_PATH),
            codec,
        );
        let response = timed("GetServerKey", SERVER_KEY_TIMEOUT, call).await?;
        PublicKey::from_base64(&response.into_inner().key).map_err(ManagementError::ServerKey)
    }

    /// Logs in (registering with the setup key if the server does not know this key yet).
    pub async fn login(
        &self,
        channel: &Channel,
        request: &LoginRequest,
    ) -> Result<LoginResponse, ManagementError> {
        let server = self.server_key(channel).await?;
        let mut grpc = grpc(channel.clone()).await?;
        let codec = tonic_prost::ProstCodec::<EncryptedMessage, EncryptedMessage>::default();
        let sealed = self.seal(&server, request);
        let call = grpc.unary(
            tonic::Request::new(sealed),
            PathAndQuery::from_static(LOGIN_PATH),
            codec,
        );
        let response = timed("Login", CALL_TIMEOUT, call).await?;
        open(&self.own, &server, &response.into_inner().body)
    }

    /// Opens the sync stream; its messages are opened with [`SyncStream::next`].
    pub async fn sync(
        &self,
        channel: &Channel,
        request: &SyncRequest,
    ) -> Result<SyncStream, ManagementError> {
        let server = self.server_key(channel).await?;
        let mut grpc = grpc(channel.clone()).await?;
        let codec = tonic_prost::ProstCodec::<EncryptedMessage, EncryptedMessage>::default();
        let sealed = self.seal(&server, request);
        let call = grpc.server_streaming(
            tonic::Request::new(sealed),
            PathAndQuery::from_static(SYNC_PATH),
            codec,
        );
        let stream = timed("Sync", CALL_TIMEOUT, call).await?.into_inner();
        Ok(SyncStream {
            stream,
            server,
            own: self.own.clone(),
        })
    }

    fn seal(&self, server: &PublicKey, message: &impl Message) -> EncryptedMessage {
        EncryptedMessage {
            wg_pub_key: self.own.public_key().to_base64(),
            body: seal::seal(&self.own, server, &message.encode_to_vec()),
            version: 0,
        }
    }
}

/// The server's updates, opened with the key the stream was opened under.
pub(crate) struct SyncStream {
    stream: Streaming<EncryptedMessage>,
    server: PublicKey,
    own: PrivateKey,
}

impl SyncStream {
    /// The next update; `Ok(None)` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<SyncResponse>, ManagementError> {
        let message = self
            .stream
            .message()
            .await
            .map_err(|s| ManagementError::from_status("Sync", &s))?;
        message
            .map(|m| open(&self.own, &self.server, &m.body))
            .transpose()
    }
}

async fn grpc(channel: Channel) -> Result<tonic::client::Grpc<Channel>, ManagementError> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_DECODE_LEN);
    grpc.ready().await.map_err(|e| ManagementError::Unreachable {
        message: e.to_string(),
    })?;
    Ok(grpc)
}

async fn timed<T>(
    call: &'static str,
    limit: Duration,
    future: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, ManagementError> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(|s| ManagementError::from_status(call, &s)),
        Err(_) => Err(ManagementError::Unreachable {
            message: format!("no answer to {call} within {limit:?}"),
        }),
    }
}

/// Opens a body the server sealed for us and decodes it.
pub(crate) fn open<M: Message + Default>(
    own: &PrivateKey,
    server: &PublicKey,
    body: &[u8],
) -> Result<M, ManagementError> {
    let plain = seal::open(own, server, body).map_err(|e| ManagementError::BadMessage {
        problem: format!("does not open with the server's key: {e}"),
    })?;
    M::decode(plain.as_slice()).map_err(|e| ManagementError::BadMessage {
        problem: format!("does not decode: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_sealed_with_another_key_is_a_bad_message() {
        let (own, server, intruder) = (
            PrivateKey::generate(),
            PrivateKey::generate(),
            PrivateKey::generate(),
        );
        let body = seal::seal(
            &intruder,
            &own.public_key(),
            &SyncResponse::default().encode_to_vec(),
        );

        let result = open::<SyncResponse>(&own, &server.public_key(), &body);

        assert!(
            matches!(result, Err(ManagementError::BadMessage { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn a_body_from_the_server_opens_and_decodes() {
        let (own, server) = (PrivateKey::generate(), PrivateKey::generate());
        let response = LoginResponse {
            peer_config: Some(super::super::proto::PeerConfig {
                address: "100.64.0.5/16".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = seal::seal(&server, &own.public_key(), &response.encode_to_vec());

        assert_eq!(
            open::<LoginResponse>(&own, &server.public_key(), &body),
            Ok(response)
        );
    }

    #[test]
    fn a_url_without_a_scheme_is_refused() {
        let result = Client::new(
            "mgmt.example:443",
            None,
            SocketFactory::default(),
            PrivateKey::generate(),
        );
        assert!(matches!(result, Err(ManagementError::BadUrl { .. })));
    }
}
