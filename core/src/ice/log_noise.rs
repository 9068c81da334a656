//! webrtc-ice logs through the `log` crate (bridged into `tracing` by tracing-subscriber's
//! `init`/`try_init`). Two of its warnings need no human: one is routine with a NetBird peer,
//! the other comes once per datagram that anyone sends to an ICE port (a flood would fill the
//! app's log). [`IceLogNoise`] lets them through only when debug logging is on, as if they were
//! debug lines. Every other warning, webrtc-ice's included, is untouched.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Where webrtc-ice 0.17 logs "discard message from (…), unknown TransactionID 0x…"
/// (src/agent/agent_selector.rs, both selectors): a STUN success response whose transaction
/// it no longer tracks. A NetBird peer answers each of our binding requests twice, because its
/// UDP mux hands a request to both the host and the server-reflexive candidate that share its
/// WireGuard socket (`forwardToAllConnections` in client/iface/udpmux/mux.go, v0.77.1); the
/// first answer counts, the second is this warning, about every 2 s on a healthy pair.
const SELECTOR_TARGET: &str = "webrtc_ice::agent::agent_selector";
const UNKNOWN_TRANSACTION: &str = "unknown TransactionID";
/// Where webrtc-ice 0.17 logs "[controlling]: Discarded message, not a valid remote candidate"
/// (src/agent/agent_internal.rs, `handle_inbound_candidate_msg`): a datagram that is not STUN,
/// from an address that is no remote candidate. One per datagram: a stranger's flood at an ICE
/// port made 118 000 lines in 6 s at an app's info level (tests/lab/netns_flood.sh).
const INTERNAL_TARGET: &str = "webrtc_ice::agent::agent_internal";
const NOT_A_CANDIDATE: &str = "not a valid remote candidate";
/// Room for the message up to and past [`UNKNOWN_TRANSACTION`]: 22 bytes of prefix, an IPv6
/// socket address with a scope (at most about 65), then the phrase itself.
const MESSAGE_ROOM: usize = 160;

/// A layer that drops webrtc-ice's routine warnings unless debug logging is on. Add it to the
/// subscriber next to the filter: `registry().with(filter).with(fmt).with(IceLogNoise)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct IceLogNoise;

impl<S: Subscriber> Layer<S> for IceLogNoise {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        !is_routine_ice_warning(event) || LevelFilter::current() >= LevelFilter::DEBUG
    }
}

/// Whether `event` is webrtc-ice's "unknown TransactionID" or "not a valid remote candidate"
/// warning, bridged from `log`.
pub fn is_routine_ice_warning(event: &Event<'_>) -> bool {
    if *event.metadata().level() != Level::WARN {
        return false;
    }
    let mut record = LogRecord::default();
    event.record(&mut record);
    match record.target {
        Some(Target::Selector) => record.message.contains(UNKNOWN_TRANSACTION),
        Some(Target::Internal) => record.message.contains(NOT_A_CANDIDATE),
        None => false,
    }
}

/// The webrtc-ice modules whose routine warnings we know.
#[derive(Clone, Copy)]
enum Target {
    Selector,
    Internal,
}

/// The two fields of a bridged `log` record that tell the warnings apart.
#[derive(Default)]
struct LogRecord {
    target: Option<Target>,
    message: StackText,
}

impl Visit for LogRecord {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.target = match value {
                SELECTOR_TARGET => Some(Target::Selector),
                INTERNAL_TARGET => Some(Target::Internal),
                _ => None,
            };
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            // A full buffer truncates; the check then simply fails.
            let _ = write!(self.message, "{value:?}");
        }
    }
}

/// The start of a message, on the stack: no allocation per log line.
struct StackText {
    bytes: [u8; MESSAGE_ROOM],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        Self {
            bytes: [0; MESSAGE_ROOM],
            len: 0,
        }
    }
}

impl StackText {
    fn contains(&self, needle: &str) -> bool {
        let text = self.bytes.get(..self.len).unwrap_or_default();
        text.windows(needle.len()).any(|w| w == needle.as_bytes())
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MESSAGE_ROOM - self.len;
        let take = s.len().min(room);
        let (Some(dst), Some(src)) = (
            self.bytes.get_mut(self.len..self.len + take),
            s.as_bytes().get(..take),
        ) else {
            return Ok(());
        };
        dst.copy_from_slice(src);
        self.len += take;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Records what `is_routine_ice_warning` says of each event.
    #[derive(Clone, Default)]
    struct Verdicts(Arc<Mutex<Vec<bool>>>);

    impl<S: Subscriber> Layer<S> for Verdicts {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            if let Ok(mut v) = self.0.lock() {
                v.push(is_routine_ice_warning(event));
            }
        }
    }

    #[test]
    fn only_webrtc_ices_unknown_transaction_and_stranger_warnings_are_routine() {
        let verdicts = Verdicts::default();
        let subscriber = tracing_subscriber::registry().with(verdicts.clone());
        tracing::subscriber::with_default(subscriber, || {
            // As tracing-log bridges `log::warn!` from webrtc-ice's selector.
            tracing::warn!(
                log.target = "webrtc_ice::agent::agent_selector",
                "discard message from (192.168.1.7:51820), unknown TransactionID 0x[1, 2, 3]"
            );
            tracing::warn!(
                log.target = "webrtc_ice::agent::agent_selector",
                "discard message from ([fd00:1:2:3:4:5:6:7]:51820), unknown TransactionID 0x[9]"
            );
            // Other warnings stay warnings.
            tracing::warn!(
                log.target = "webrtc_ice::agent::agent_selector",
                "Failed to handle inbound ICE from: a to: b error: c"
            );
            tracing::warn!(
                log.target = "webrtc_ice::agent::agent_gather",
                "unknown TransactionID"
            );
            tracing::error!(
                log.target = "webrtc_ice::agent::agent_selector",
                "discard message from (192.168.1.7:51820), unknown TransactionID 0x[1]"
            );
            // A datagram from a stranger at an ICE port.
            tracing::warn!(
                log.target = "webrtc_ice::agent::agent_internal",
                "[controlled]: Discarded message, not a valid remote candidate"
            );
            tracing::warn!(
                log.target = "webrtc_ice::agent::agent_internal",
                "[controlling]: failed to write packet: full"
            );
            tracing::warn!(
                log.target = "webrtc_ice::agent::agent_selector",
                "[controlled]: Discarded message, not a valid remote candidate"
            );
        });
        let seen = verdicts.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(seen, [true, true, false, false, false, true, false, false]);
    }
}
