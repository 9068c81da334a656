//! What the relay connections did, as cheap atomics: traffic, and every kind of input refused.
//! A manager shares one set among all its connections.

use std::sync::atomic::{AtomicU64, Ordering};

use super::messages::DecodeError;

#[derive(Debug, Default)]
pub struct RelayCounters {
    transport_in: AtomicU64,
    transport_in_bytes: AtomicU64,
    transport_out: AtomicU64,
    transport_out_bytes: AtomicU64,
    health_checks: AtomicU64,
    truncated: AtomicU64,
    bad_version: AtomicU64,
    retired_type: AtomicU64,
    unknown_type: AtomicU64,
    oversize: AtomicU64,
    wrong_direction: AtomicU64,
    short_transport: AtomicU64,
    partial_peer_id: AtomicU64,
    malformed_other: AtomicU64,
    not_binary: AtomicU64,
    unexpected_auth_response: AtomicU64,
    held: AtomicU64,
    held_refused: AtomicU64,
    held_delivered: AtomicU64,
    inbound_dropped: AtomicU64,
    congested: AtomicU64,
    too_large: AtomicU64,
    control_dropped: AtomicU64,
}

/// A snapshot of [`RelayCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCountersSnapshot {
    /// Transport messages received, and their payload bytes.
    pub transport_in: u64,
    pub transport_in_bytes: u64,
    /// Transport messages queued for sending, and their payload bytes.
    pub transport_out: u64,
    pub transport_out_bytes: u64,
    /// Health checks received (each is echoed).
    pub health_checks: u64,
    /// Refused input, by reason; each message was dropped and the connection kept.
    pub truncated: u64,
    pub bad_version: u64,
    pub retired_type: u64,
    pub unknown_type: u64,
    pub oversize: u64,
    pub wrong_direction: u64,
    pub short_transport: u64,
    pub partial_peer_id: u64,
    pub malformed_other: u64,
    /// Text WebSocket messages (the relay speaks binary only).
    pub not_binary: u64,
    /// An AuthResponse after the handshake.
    pub unexpected_auth_response: u64,
    /// Packets from peers not opened yet: held, refused (buffer full), handed over on open.
    pub held: u64,
    pub held_refused: u64,
    pub held_delivered: u64,
    /// Received payloads dropped because the path's consumer was full or gone.
    pub inbound_dropped: u64,
    /// Sends refused because the connection's queue was full.
    pub congested: u64,
    /// Sends refused because the datagram exceeds what one relay message carries.
    pub too_large: u64,
    /// Control messages (health echo, unsubscribe) dropped because the control queue was full.
    pub control_dropped: u64,
}

impl RelayCountersSnapshot {
    /// All refused input, whatever the reason.
    pub fn refused_input(&self) -> u64 {
        self.truncated
            + self.bad_version
            + self.retired_type
            + self.unknown_type
            + self.oversize
            + self.wrong_direction
            + self.short_transport
            + self.partial_peer_id
            + self.malformed_other
            + self.not_binary
            + self.unexpected_auth_response
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl RelayCounters {
    pub(super) fn transport_in(&self, len: usize) {
        bump(&self.transport_in);
        self.transport_in_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(super) fn transport_out(&self, len: usize) {
        bump(&self.transport_out);
        self.transport_out_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(super) fn health_check(&self) {
        bump(&self.health_checks);
    }

    pub(super) fn refused(&self, e: &DecodeError) {
        bump(match e {
            DecodeError::Truncated { .. } => &self.truncated,
            DecodeError::Version(_) => &self.bad_version,
            DecodeError::RetiredType(_) => &self.retired_type,
            DecodeError::UnknownType(_) => &self.unknown_type,
            DecodeError::Oversize { .. } => &self.oversize,
            DecodeError::WrongDirection(_) => &self.wrong_direction,
            DecodeError::ShortTransport { .. } => &self.short_transport,
            DecodeError::PartialPeerId { .. } => &self.partial_peer_id,
            DecodeError::ShortAuth { .. }
            | DecodeError::BadMagic
            | DecodeError::EmptyAuthResponse
            | DecodeError::AuthResponseNotUtf8
            | DecodeError::TrailingBytes { .. } => &self.malformed_other,
        });
    }

    pub(super) fn not_binary(&self) {
        bump(&self.not_binary);
    }

    pub(super) fn unexpected_auth_response(&self) {
        bump(&self.unexpected_auth_response);
    }

    pub(super) fn held(&self) {
        bump(&self.held);
    }

    pub(super) fn held_refused(&self) {
        bump(&self.held_refused);
    }

    pub(super) fn held_delivered(&self) {
        bump(&self.held_delivered);
    }

    pub(super) fn inbound_dropped(&self) {
        bump(&self.inbound_dropped);
    }

    pub(super) fn congested(&self) {
        bump(&self.congested);
    }

    pub(super) fn too_large(&self) {
        bump(&self.too_large);
    }

    pub(super) fn control_dropped(&self) {
        bump(&self.control_dropped);
    }

    pub fn snapshot(&self) -> RelayCountersSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RelayCountersSnapshot {
            transport_in: l(&self.transport_in),
            transport_in_bytes: l(&self.transport_in_bytes),
            transport_out: l(&self.transport_out),
            transport_out_bytes: l(&self.transport_out_bytes),
            health_checks: l(&self.health_checks),
            truncated: l(&self.truncated),
            bad_version: l(&self.bad_version),
            retired_type: l(&self.retired_type),
            unknown_type: l(&self.unknown_type),
            oversize: l(&self.oversize),
            wrong_direction: l(&self.wrong_direction),
            short_transport: l(&self.short_transport),
            partial_peer_id: l(&self.partial_peer_id),
            malformed_other: l(&self.malformed_other),
            not_binary: l(&self.not_binary),
            unexpected_auth_response: l(&self.unexpected_auth_response),
            held: l(&self.held),
            held_refused: l(&self.held_refused),
            held_delivered: l(&self.held_delivered),
            inbound_dropped: l(&self.inbound_dropped),
            congested: l(&self.congested),
            too_large: l(&self.too_large),
            control_dropped: l(&self.control_dropped),
        }
    }
}
