//! What a connection shows of itself: per-path health and the history of path switches.

use std::fmt;
use std::time::Duration;

use super::lazy::{Activity, ActivityReason};
use super::watcher::{Health, StaleReason};
use super::Conn;
use crate::clock::Instant;
use crate::path::{PathId, PathKind};

/// One peer's connection at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnStatus {
    pub active: Option<PathId>,
    pub paths: Vec<PathHealthStatus>,
    /// The newest switches last.
    pub switches: Vec<Switch>,
    /// Open, idle (lazy connections) or waking, and why it last changed.
    pub activity: Activity,
    pub activity_reason: Option<ActivityReason>,
}

/// One path's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathHealthStatus {
    pub id: PathId,
    pub kind: PathKind,
    pub health: Health,
    /// Can carry traffic: up, not condemned, and (for a standby) proven once.
    pub usable: bool,
    /// Age of the last authenticated packet received on it.
    pub last_proof: Option<Duration>,
    pub rtt: Option<Duration>,
}

/// The active path changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub at: Instant,
    pub from: Option<PathKind>,
    pub to: Option<PathKind>,
    pub reason: SwitchReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchReason {
    /// The peer had no path before.
    FirstPath,
    /// A better path showed proof of life.
    Better,
    /// The watcher condemned the active path.
    Stale(StaleReason),
    /// The path went away (closed, failed, disconnected).
    Lost(&'static str),
    /// The peer restarted its ICE session or moved its relay.
    RemoteRestarted,
    /// The platform reported a network change.
    NetworkChanged,
    /// The connection was closed for inactivity (lazy connections).
    Idle,
}

impl fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchReason::FirstPath => f.write_str("first path"),
            SwitchReason::Better => f.write_str("better path proven"),
            SwitchReason::Stale(reason) => write!(f, "{reason}"),
            SwitchReason::Lost(what) => f.write_str(what),
            SwitchReason::RemoteRestarted => f.write_str("peer restarted its session"),
            SwitchReason::NetworkChanged => f.write_str("network changed"),
            SwitchReason::Idle => f.write_str("connection idle"),
        }
    }
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |k: Option<PathKind>| k.map_or_else(|| "none".to_owned(), |k| k.to_string());
        write!(f, "{} → {}: {}", name(self.from), name(self.to), self.reason)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Alive => f.write_str("alive"),
            Health::Probing { sent } => write!(f, "probing ({sent} sent)"),
            Health::Stale(reason) => write!(f, "stale ({reason})"),
        }
    }
}

pub(super) fn build(conn: &Conn, now: Instant) -> ConnStatus {
    ConnStatus {
        active: conn.active,
        paths: conn
            .paths
            .iter()
            .map(|p| PathHealthStatus {
                id: p.id,
                kind: p.kind,
                health: p.watcher.health(),
                usable: p.usable() && !p.is_held(now) && (p.proven || conn.active == Some(p.id)),
                last_proof: p.proof_age(now),
                rtt: p.watcher.rtt(),
            })
            .collect(),
        switches: conn.history.iter().cloned().collect(),
        activity: conn.lazy.state(),
        activity_reason: conn.lazy.reason(),
    }
}
