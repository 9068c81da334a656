//! The client's one task: connect, register, read the stream, watch it, reconnect.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tonic::codec::Streaming;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Code;

use super::dial::{Dialer, CONNECT_TIMEOUT};
use super::{ChannelSlot, Sender, MAX_DECODE_LEN};
use crate::clock::Instant;
use crate::keys::PrivateKey;
use crate::signal::backoff::Backoff;
use crate::signal::inbound::{CounterCells, Inbound};
use crate::signal::message::SignalMessage;
use crate::signal::proto::{EncryptedMessage, CONNECT_STREAM_PATH, HEADER_PEER_ID, HEADER_REGISTERED};
use crate::signal::watchdog::{ReceiveWatchdog, WatchdogAction};
use crate::signal::{seal, Control, Incoming, SignalError, SignalState};

/// How long opening the stream may take, connection and registration header included:
/// NetBird's `ConnectTimeout` plus a margin for the registration itself.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(15);
const _: () = assert!(REGISTRATION_TIMEOUT.as_secs() > CONNECT_TIMEOUT.as_secs());
/// What grpc-go reports when a newer stream with our key replaced ours: NetBird's
/// `ErrPeerRegisteredAgain` text, carried as status `Unknown` (signal/server/signal.go).
const REPLACED_MESSAGE: &str = "peer registered again";

pub(crate) struct RunContext {
    pub private_key: PrivateKey,
    pub dialer: Dialer,
    pub channel: ChannelSlot,
    pub sender: Sender,
    pub state_tx: Arc<watch::Sender<SignalState>>,
    pub counters: Arc<CounterCells>,
    pub closing: watch::Receiver<bool>,
    pub reconnect: Arc<Notify>,
    pub deliver: mpsc::Sender<Incoming>,
}

/// How one session (one stream) ended.
enum SessionEnd {
    Closing,
    ReconnectAsked,
    Failed { error: SignalError, registered: bool },
}

/// Where the loop goes after a failure.
enum Next {
    Close,
    Retry,
}

pub(crate) async fn run(ctx: RunContext) {
    let mut closing = ctx.closing.clone();
    let mut inbound = Inbound::new(ctx.private_key.clone(), ctx.counters.clone(), ctx.deliver.clone());
    let mut backoff = Backoff::new();
    let mut rng = StdRng::from_entropy();
    loop {
        let next = match session(&ctx, &mut inbound, &mut closing).await {
            SessionEnd::Closing => Next::Close,
            SessionEnd::ReconnectAsked => {
                backoff.reset();
                ctx.state_tx.send_replace(SignalState::Connecting);
                Next::Retry
            }
            SessionEnd::Failed {
                error: SignalError::Replaced,
                ..
            } => {
                tracing::warn!(key = %ctx.private_key.public_key(), "another client registered with our key; signal paused until reconnect");
                ctx.state_tx.send_replace(SignalState::Replaced);
                pause(&ctx, &mut closing, &mut backoff, None).await
            }
            SessionEnd::Failed { error, registered } => {
                if registered {
                    tracing::info!(error = %error, "signal connection lost; reconnecting");
                    backoff.reset();
                }
                let delay = backoff.next_delay(&mut rng);
                let attempt = backoff.failures();
                tracing::debug!(attempt, error = %error, retry_in = ?delay, "signal connection attempt failed");
                ctx.state_tx.send_replace(SignalState::Reconnecting {
                    attempt,
                    last_error: error.to_string(),
                });
                pause(&ctx, &mut closing, &mut backoff, Some(delay)).await
            }
        };
        match next {
            Next::Close => break,
            Next::Retry => {}
        }
    }
    ctx.channel.clear();
    ctx.state_tx.send_replace(SignalState::Closed);
}

/// Waits for `delay` (forever when `None`) unless a reconnect is asked for or the client
/// closes first.
async fn pause(
    ctx: &RunContext,
    closing: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
    delay: Option<Duration>,
) -> Next {
    let sleep = async {
        match delay {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = Control::closing(closing) => Next::Close,
        _ = ctx.reconnect.notified() => {
            backoff.reset();
            ctx.state_tx.send_replace(SignalState::Connecting);
            Next::Retry
        }
        _ = sleep => Next::Retry,
    }
}

/// One stream on a fresh channel (tonic channels do not always recover on their own).
async fn session(ctx: &RunContext, inbound: &mut Inbound, closing: &mut watch::Receiver<bool>) -> SessionEnd {
    let channel = ctx.dialer.channel();
    ctx.channel.set(channel.clone());
    let own = ctx.private_key.public_key().to_base64();
    let opened = tokio::select! {
        biased;
        _ = Control::closing(closing) => return SessionEnd::Closing,
        _ = ctx.reconnect.notified() => return SessionEnd::ReconnectAsked,
        opened = tokio::time::timeout(REGISTRATION_TIMEOUT, open_stream(channel, &own)) => opened,
    };
    let failed = |error| SessionEnd::Failed {
        error,
        registered: false,
    };
    let mut stream = match opened {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return failed(error),
        Err(_) => return failed(SignalError::RegistrationTimeout(REGISTRATION_TIMEOUT)),
    };
    CounterCells::bump(&ctx.counters.registrations);
    ctx.state_tx.send_replace(SignalState::Connected);
    tracing::info!(key = %ctx.private_key.public_key(), "signal registered");

    let mut watchdog = ReceiveWatchdog::new(Instant::now());
    let mut probe = ProbeTask(None);
    loop {
        let wait = watchdog.poll_timeout().saturating_duration_since(Instant::now());
        tokio::select! {
            biased;
            _ = Control::closing(closing) => return SessionEnd::Closing,
            _ = ctx.reconnect.notified() => return SessionEnd::ReconnectAsked,
            received = stream.message() => match received {
                Ok(Some(msg)) => {
                    watchdog.handle_received(Instant::now());
                    inbound.handle(msg);
                }
                Ok(None) => return SessionEnd::Failed { error: SignalError::StreamEnded, registered: true },
                Err(status) => return SessionEnd::Failed { error: classify(&status), registered: true },
            },
            _ = tokio::time::sleep(wait) => match watchdog.handle_timeout(Instant::now()) {
                WatchdogAction::Wait => {}
                WatchdogAction::SendProbe => {
                    tracing::debug!("signal stream silent; sending a heartbeat to ourselves");
                    probe.replace(tokio::spawn(send_probe(ctx.sender.clone(), ctx.private_key.clone())));
                }
                WatchdogAction::Reconnect => {
                    tracing::warn!("signal heartbeat did not come back; reconnecting");
                    return SessionEnd::Failed { error: SignalError::Stalled, registered: true };
                }
            },
        }
    }
}

/// Opens `ConnectStream` with our key and waits for the registration header.
async fn open_stream(channel: Channel, own: &str) -> Result<Streaming<EncryptedMessage>, SignalError> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_DECODE_LEN);
    grpc.ready()
        .await
        .map_err(|e| SignalError::Transport(e.to_string()))?;
    // We never send on the stream (messages go by unary Send), but it must stay open: a
    // stream that never yields keeps the request half open for as long as we read.
    let mut request = tonic::Request::new(stream::pending::<EncryptedMessage>());
    let id = MetadataValue::try_from(own).map_err(|e| SignalError::Transport(e.to_string()))?;
    request.metadata_mut().insert(HEADER_PEER_ID, id);
    let codec = tonic_prost::ProstCodec::<EncryptedMessage, EncryptedMessage>::default();
    let response = grpc
        .streaming(request, PathAndQuery::from_static(CONNECT_STREAM_PATH), codec)
        .await
        .map_err(|status| match status.code() {
            // Statuses only a server sends: it answered, and said no.
            Code::FailedPrecondition
            | Code::Unimplemented
            | Code::Internal
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::InvalidArgument
            | Code::NotFound
            | Code::ResourceExhausted => {
                SignalError::Refused(format!("{}: {}", status.code(), status.message()))
            }
            _ => classify(&status),
        })?;
    if response.metadata().get(HEADER_REGISTERED).is_none() {
        return Err(SignalError::NotRegistered);
    }
    Ok(response.into_inner())
}

fn classify(status: &tonic::Status) -> SignalError {
    if status.code() == Code::Unknown && status.message().contains(REPLACED_MESSAGE) {
        return SignalError::Replaced;
    }
    SignalError::Transport(format!("{}: {}", status.code(), status.message()))
}

/// A HEARTBEAT from us to us: the server routes it back on our stream.
async fn send_probe(sender: Sender, private_key: PrivateKey) {
    let own = private_key.public_key();
    let body = SignalMessage::Heartbeat.to_body().encode_to_vec();
    let msg = EncryptedMessage {
        key: own.to_base64(),
        remote_key: own.to_base64(),
        body: seal::seal(&private_key, &own, &body),
    };
    if let Err(e) = sender.send(own, msg).await {
        tracing::debug!(error = %e, "signal heartbeat could not be sent");
    }
}

/// The in-flight heartbeat send, aborted when the session ends.
struct ProbeTask(Option<JoinHandle<()>>);

impl ProbeTask {
    fn replace(&mut self, task: JoinHandle<()>) {
        if let Some(old) = self.0.replace(task) {
            old.abort();
        }
    }
}

impl Drop for ProbeTask {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
