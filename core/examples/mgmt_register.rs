//! Registers N fresh WireGuard keys with a NetBird management server using a setup key, as N
//! peers that never come online: a network of many peers for the memory figure of
//! tests/lab/netns_management.sh (`MEMORY_PEERS=N`).
//!
//!     mgmt_register URL SETUP_KEY N

use peerlink_core::mgmt::{register, ManagementConfig};
use peerlink_core::PrivateKey;

/// Logins in flight at once: the server handles them one account lock at a time anyway.
const PARALLEL: usize = 8;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(setup_key), Some(count)) = (
        args.first(),
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: mgmt_register URL SETUP_KEY N");
        return std::process::ExitCode::FAILURE;
    };
    let mut registered = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        if tasks.len() >= PARALLEL {
            registered += usize::from(matches!(tasks.join_next().await, Some(Ok(true))));
        }
        let config = ManagementConfig {
            url: url.clone(),
            setup_key: setup_key.clone(),
            hostname: format!("offline-{n}"),
            ca_pem: None,
            sockets: Default::default(),
        };
        tasks.spawn(async move {
            match register(&config, &PrivateKey::generate()).await {
                Ok(_) => true,
                Err(e) => {
                    eprintln!("peer {n}: {e}");
                    false
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        registered += usize::from(matches!(done, Ok(true)));
    }
    println!("registered {registered} of {count}");
    if registered == count {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
