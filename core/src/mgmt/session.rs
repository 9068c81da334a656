//! One task that keeps this peer logged in and its Sync stream open: server key, login, stream,
//! and on any failure a backoff before the next attempt, waiting while the platform says it is
//! offline. What the stream brings goes to the engine unchanged; applying it is not done here.

use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};

use super::client::Client;
use super::proto::{Flags, LoginRequest, PeerKeys, PeerSystemMeta, SyncRequest, SyncResponse};
use super::{ManagementConfig, ManagementError, ManagementState, CLIENT_NAME, NETBIRD_PROTOCOL_VERSION};
use crate::backoff::Exponential;
use crate::keys::PrivateKey;

/// Updates queued for the engine. The stream sends one per change in the network; the engine
/// applies each in microseconds, so a handful is plenty and back-pressure slows the stream.
pub const UPDATE_CAPACITY: usize = 8;
/// NetBird's management backoff (`nbgrpc.Backoff`): 800 ms, ×1.7, up to 10 s. Its jitter of
/// 1.0 can draw a zero wait; half of it keeps some spread without a hot loop.
const RETRY: Exponential = Exponential {
    initial: Duration::from_millis(800),
    multiplier: 1.7,
    jitter: 0.5,
    max: Duration::from_secs(10),
};

/// What the session runs with.
pub struct SessionContext {
    pub private_key: PrivateKey,
    pub config: ManagementConfig,
    /// Every update, in order, as it arrived.
    pub updates: mpsc::Sender<SyncResponse>,
    pub state: watch::Sender<ManagementState>,
    pub online: watch::Receiver<bool>,
    pub shutdown: watch::Receiver<bool>,
}

/// Runs until shutdown (or until the engine drops the update receiver).
pub async fn run_session(mut cx: SessionContext) {
    let client = match Client::new(
        &cx.config.url,
        cx.config.ca_pem.as_deref(),
        cx.config.sockets.clone(),
        cx.private_key.clone(),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "management not started");
            cx.state.send_replace(ManagementState::Failed(e));
            return;
        }
    };
    let meta = meta(&cx.config.hostname);
    let mut attempt = 0u32;
    // The setup key registers the peer; once a login has succeeded, later logins of this run
    // go without it, as NetBird's client does, so that a peer deleted in management stays
    // deleted (its login is refused) instead of registering itself again.
    let mut registered = false;
    loop {
        if !wait_online(&mut cx).await {
            return;
        }
        cx.state.send_replace(ManagementState::Connecting);
        let mut shutdown = cx.shutdown.clone();
        let result = tokio::select! {
            r = session(&client, &cx, &meta, &mut attempt, &mut registered) => r,
            _ = shutdown.changed() => return,
        };
        let error = match result {
            Ok(()) => ManagementError::Unreachable {
                message: "the server closed the sync stream".into(),
            },
            Err(e) => e,
        };
        if cx.updates.is_closed() {
            return;
        }
        if !error.is_transient() {
            tracing::warn!(error = %error, "management login refused; waiting for a network change");
            cx.state.send_replace(ManagementState::Failed(error));
            if !wait_network_change(&mut cx).await {
                return;
            }
            attempt = 0;
            continue;
        }
        let wait = RETRY.delay(attempt, rand::thread_rng().gen());
        tracing::info!(error = %error, attempt, wait_ms = wait.as_millis() as u64, "management session ended; retrying");
        cx.state
            .send_replace(ManagementState::Retrying { error, attempt });
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cx.shutdown.changed() => return,
            // The network came back: try now.
            Ok(()) = cx.online.changed() => attempt = 0,
        }
    }
}

/// Login, then the stream until it ends. `attempt` is reset once an update arrives;
/// `registered` is set by the first successful login.
async fn session(
    client: &Client,
    cx: &SessionContext,
    meta: &PeerSystemMeta,
    attempt: &mut u32,
    registered: &mut bool,
) -> Result<(), ManagementError> {
    let channel = client.channel();
    let login = LoginRequest {
        setup_key: if *registered {
            String::new()
        } else {
            cx.config.setup_key.clone()
        },
        meta: Some(meta.clone()),
        peer_keys: Some(PeerKeys {
            ssh_pub_key: Vec::new(),
            wg_pub_key: cx.private_key.public_key().to_base64().into_bytes(),
        }),
    };
    // A log figure only: the wall of a login, not a deadline.
    let started = std::time::Instant::now();
    client.login(&channel, &login).await?;
    *registered = true;
    tracing::info!(url = %cx.config.url, ms = started.elapsed().as_millis() as u64, "logged in to management");
    let mut stream = client
        .sync(
            &channel,
            &SyncRequest {
                meta: Some(meta.clone()),
            },
        )
        .await?;
    while let Some(update) = stream.next().await? {
        let serial = update.network_map.as_ref().map(|m| m.serial);
        tracing::debug!(?serial, "management update");
        *attempt = 0;
        if cx.updates.send(update).await.is_err() {
            return Ok(());
        }
        cx.state.send_if_modified(|s| {
            let next = ManagementState::Connected {
                serial: serial.or(match s {
                    ManagementState::Connected { serial } => *serial,
                    _ => None,
                }),
            };
            let changed = *s != next;
            *s = next;
            changed
        });
    }
    Ok(())
}

/// Logs `private_key` in once (registering it with the setup key if the server does not know
/// it) and returns the overlay address management gave it, without syncing: for an app that
/// checks a setup key before starting, and for tests that fill a network with peers.
pub async fn register(
    config: &ManagementConfig,
    private_key: &PrivateKey,
) -> Result<String, ManagementError> {
    let client = Client::new(
        &config.url,
        config.ca_pem.as_deref(),
        config.sockets.clone(),
        private_key.clone(),
    )?;
    let login = LoginRequest {
        setup_key: config.setup_key.clone(),
        meta: Some(meta(&config.hostname)),
        peer_keys: Some(PeerKeys {
            ssh_pub_key: Vec::new(),
            wg_pub_key: private_key.public_key().to_base64().into_bytes(),
        }),
    };
    let response = client.login(&client.channel(), &login).await?;
    Ok(response.peer_config.map(|p| p.address).unwrap_or_default())
}

/// What the server records about this peer: the device's name, NetBird's protocol version,
/// and peerlink in the UI version field its dashboard shows.
fn meta(hostname: &str) -> PeerSystemMeta {
    PeerSystemMeta {
        hostname: hostname.to_owned(),
        go_os: std::env::consts::OS.to_owned(),
        kernel: std::env::consts::OS.to_owned(),
        platform: std::env::consts::ARCH.to_owned(),
        os: std::env::consts::OS.to_owned(),
        netbird_version: NETBIRD_PROTOCOL_VERSION.to_owned(),
        ui_version: CLIENT_NAME.to_owned(),
        os_version: String::new(),
        flags: Some(Flags {
            disable_dns: true,
            disable_firewall: false,
            lazy_connection_enabled: false,
        }),
        sync_message_version: 0,
    }
}

/// Waits until the platform says a network is up; false on shutdown.
async fn wait_online(cx: &mut SessionContext) -> bool {
    loop {
        if *cx.online.borrow_and_update() {
            return true;
        }
        cx.state.send_replace(ManagementState::Offline);
        tokio::select! {
            r = cx.online.changed() => if r.is_err() { return false },
            _ = cx.shutdown.changed() => return false,
        }
    }
}

/// Waits for the platform's next network report; false on shutdown.
async fn wait_network_change(cx: &mut SessionContext) -> bool {
    tokio::select! {
        r = cx.online.changed() => r.is_ok(),
        _ = cx.shutdown.changed() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use semver_check::parses_as_semver;

    #[test]
    fn the_protocol_version_parses_as_semver_and_names_peerlink_elsewhere() {
        assert!(
            parses_as_semver(NETBIRD_PROTOCOL_VERSION),
            "{NETBIRD_PROTOCOL_VERSION}"
        );
        let meta = meta("phone");
        assert_eq!(meta.hostname, "phone");
        assert!(meta.ui_version.starts_with("peerlink/"));
        assert_eq!(meta.sync_message_version, 0);
    }

    mod semver_check {
        /// `MAJOR.MINOR.PATCH` with numeric parts, as Go's semver (and NetBird's version checks) read it.
        pub fn parses_as_semver(v: &str) -> bool {
            let parts: Vec<&str> = v.split('.').collect();
            parts.len() == 3
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.bytes().all(|b| b.is_ascii_digit())
                        && (p.len() == 1 || !p.starts_with('0'))
                })
        }
    }
}
