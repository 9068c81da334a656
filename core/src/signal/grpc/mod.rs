//! The gRPC client of NetBird's signal server (`signalexchange.SignalExchange`), on tonic's
//! generic client with hand-written prost messages.

pub(crate) mod dial;
mod run;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use super::proto::{EncryptedMessage, SEND_PATH};
use super::{Incoming, Parts, SignalError, SignalHandle, SignalState, Transport};
use crate::keys::{PrivateKey, PublicKey};
use crate::socket::SocketFactory;

/// Attempts per `send`. NetBird makes 4 of 10–15 s each; the engine re-offers on its own
/// schedule, so 3 bounds a send to about 30 s while riding out a server restart.
pub const SEND_ATTEMPTS: u32 = 3;
/// Deadline of one `Send` call: NetBird's `ConnectTimeout`. The server forwards synchronously
/// and waits up to its own 10 s `sendTimeout` for the receiver's stream.
pub const SEND_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before a retry, times the attempt number: long enough for a restarting server or a
/// rebuilt channel to come up, short next to the attempt timeout.
pub const SEND_RETRY_PAUSE: Duration = Duration::from_millis(300);
/// Largest gRPC message accepted from the server: grpc-go's default receive limit (4 MiB), so
/// anything the server can forward is read and dropped by size, instead of failing the stream.
pub const MAX_DECODE_LEN: usize = 4 * 1024 * 1024;

/// How to reach a NetBird signal server.
#[derive(Debug, Clone)]
pub struct GrpcSignalConfig {
    /// `http://host:port` or `https://host:port` (NetBird's default ports: 80 and 443).
    pub url: String,
    /// PEM CA certificate(s) trusted besides the webpki roots, for self-hosted servers.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Creates (and on Android protects) the client's TCP sockets.
    pub sockets: SocketFactory,
}

impl GrpcSignalConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            extra_ca_pem: None,
            sockets: SocketFactory::default(),
        }
    }
}

/// Starts a client for `config` and returns at once, in state [`SignalState::Connecting`]; it
/// connects, registers and reconnects on its own. Must be called inside a tokio runtime.
/// Fails only on configuration errors (URL, CA).
pub fn connect_grpc(
    private_key: PrivateKey,
    config: GrpcSignalConfig,
) -> Result<(SignalHandle, tokio::sync::mpsc::Receiver<Incoming>), SignalError> {
    let target = dial::Target::parse(&config.url)?;
    let tls = target
        .tls
        .then(|| dial::tls_config(&target, config.extra_ca_pem.as_deref()))
        .transpose()?;
    let dialer = dial::Dialer::new(target, tls, config.sockets)?;
    let (parts, incoming) = Parts::new(private_key, SignalState::Connecting);
    let channel = ChannelSlot::default();
    let sender = Sender {
        channel: channel.clone(),
    };
    let (closing, reconnect) = parts.steering();
    let task = tokio::spawn(run::run(run::RunContext {
        private_key: parts.private_key.clone(),
        dialer,
        channel,
        sender: sender.clone(),
        state_tx: parts.state_tx.clone(),
        counters: parts.counters.clone(),
        closing,
        reconnect,
        deliver: parts.deliver.clone(),
    }));
    tracing::info!(url = %config.url, key = %parts.private_key.public_key(), "signal client started");
    Ok((parts.into_handle(Transport::Grpc(sender), vec![task]), incoming))
}

/// The channel of the current connection; replaced whenever the client reconnects.
#[derive(Clone, Default)]
pub(crate) struct ChannelSlot(Arc<Mutex<Option<Channel>>>);

impl ChannelSlot {
    fn get(&self) -> Option<Channel> {
        self.0.lock().clone()
    }

    fn set(&self, channel: Channel) {
        *self.0.lock() = Some(channel);
    }

    fn clear(&self) {
        *self.0.lock() = None;
    }
}

/// Sends with the unary `Send`, on whatever channel is current, with bounded retries.
#[derive(Clone)]
pub(crate) struct Sender {
    channel: ChannelSlot,
}

impl Sender {
    pub async fn send(&self, to: PublicKey, msg: EncryptedMessage) -> Result<(), SignalError> {
        let mut last = String::from("no connection to the signal server yet");
        for attempt in 1..=SEND_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(SEND_RETRY_PAUSE * (attempt - 1)).await;
            }
            let Some(channel) = self.channel.get() else {
                continue;
            };
            match tokio::time::timeout(SEND_ATTEMPT_TIMEOUT, send_once(channel, msg.clone())).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(status)) => last = format!("{}: {}", status.code(), status.message()),
                Err(_) => last = format!("no answer within {SEND_ATTEMPT_TIMEOUT:?}"),
            }
            tracing::debug!(to = %to, attempt, error = %last, "signal send failed");
        }
        Err(SignalError::SendFailed {
            to,
            attempts: SEND_ATTEMPTS,
            last,
        })
    }
}

async fn send_once(channel: Channel, msg: EncryptedMessage) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<EncryptedMessage, EncryptedMessage>::default();
    grpc.unary(
        tonic::Request::new(msg),
        PathAndQuery::from_static(SEND_PATH),
        codec,
    )
    .await?;
    Ok(())
}
