//! The two tasks of a relay connection. The reader runs for the connection's whole life (a
//! tungstenite connection answers pings and notices a close only while someone reads), handles
//! each message and watches the health deadline. The writer sends queued messages, control first,
//! flushing once per batch.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::conn::Conn;
use super::events::DisconnectReason;
use super::health::HealthWatch;
use super::messages::encode_close;
use super::transport::{is_closed, WsStream};
use crate::clock::Instant;

/// Messages the writer hands to tungstenite before one flush: enough to fill a 64 KiB write
/// buffer with full-size WireGuard packets, few enough to keep control messages prompt.
const WRITE_BATCH: usize = 64;
/// How long a local close waits to deliver the relay's Close message and a WebSocket close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub(super) async fn read_loop(conn: Arc<Conn>, mut stream: SplitStream<WsStream>, health_timeout: Duration) {
    let mut ended = conn.ended.subscribe();
    let mut health = HealthWatch::new(Instant::now(), health_timeout);
    let sleep = tokio::time::sleep(health_timeout);
    tokio::pin!(sleep);
    let reason = loop {
        let next = tokio::select! {
            biased;
            _ = ended.wait_for(Option::is_some) => return,
            () = &mut sleep => {
                let now = Instant::now();
                if health.is_dead(now) {
                    break DisconnectReason::HealthCheckTimeout;
                }
                let left = health.deadline().saturating_duration_since(now);
                sleep.as_mut().reset(tokio::time::Instant::now() + left);
                continue;
            }
            m = stream.next() => m,
        };
        let now = Instant::now();
        match next {
            Some(Ok(Message::Binary(bytes))) => {
                health.heard(now);
                if let Some(reason) = conn.on_message(&bytes, now) {
                    break reason;
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => health.heard(now),
            Some(Ok(Message::Text(_))) => {
                health.heard(now);
                conn.counters.not_binary();
            }
            Some(Ok(Message::Close(frame))) => {
                let detail = frame.map_or_else(
                    || "WebSocket closed".to_owned(),
                    |f| format!("WebSocket closed: {f}"),
                );
                break DisconnectReason::ConnectionLost { detail };
            }
            Some(Err(e)) if is_closed(&e) => {
                break DisconnectReason::ConnectionLost {
                    detail: format!("closed by the relay: {e}"),
                }
            }
            Some(Err(e)) => {
                break DisconnectReason::ConnectionLost {
                    detail: e.to_string(),
                }
            }
            None => {
                break DisconnectReason::ConnectionLost {
                    detail: "closed by the relay".into(),
                }
            }
        }
    };
    conn.end(reason);
}

pub(super) async fn write_loop(
    conn: Arc<Conn>,
    mut sink: SplitSink<WsStream, Message>,
    mut control: mpsc::Receiver<Bytes>,
    mut data: mpsc::Receiver<Bytes>,
) {
    let mut ended = conn.ended.subscribe();
    let work = async {
        loop {
            let first = tokio::select! {
                biased;
                m = control.recv() => m,
                m = data.recv() => m,
            };
            let Some(first) = first else { return Ok(()) };
            sink.feed(Message::Binary(first)).await?;
            for _ in 0..WRITE_BATCH {
                let next = match control.try_recv() {
                    Ok(m) => m,
                    Err(_) => match data.try_recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    },
                };
                sink.feed(Message::Binary(next)).await?;
            }
            sink.flush().await?;
        }
    };
    let result: Result<(), WsError> = tokio::select! {
        biased;
        _ = ended.wait_for(Option::is_some) => Ok(()),
        r = work => r,
    };
    if let Err(e) = result {
        conn.end(DisconnectReason::ConnectionLost {
            detail: format!("sending: {e}"),
        });
    }
    if conn.end_reason() == Some(DisconnectReason::ClosedLocally) {
        let farewell = async {
            sink.send(Message::Binary(encode_close())).await?;
            sink.close().await
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, farewell).await;
    }
}
