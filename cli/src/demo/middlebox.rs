//! An in-process UDP middlebox on loopback, standing between the two engines' ICE agents the way
//! a firewall stands between two hosts: NetBird issue 4769's fault on demand. It passes STUN
//! always (so ICE connects and its consent checks keep succeeding) and, while the fault is on,
//! drops WireGuard.
//!
//! How ICE comes to pair through it: the hub's filter ([`Middlebox::hub_filter`]) rewrites every
//! candidate on its way through signal so that its address is a proxy socket of the middlebox
//! standing in for the real one. A datagram arriving at the proxy of `real` from `source` leaves
//! from the proxy of `source` towards `real`, so each agent sees only the other's proxies: the
//! pair it checks, selects and keeps alive runs through the middlebox both ways, with no
//! peer-reflexive shortcut around it. The engines' own sockets (the direct path) are not proxied.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use peerlink_core::signal::{HubFilter, SignalMessage};
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

/// Proxy sockets at most: each side gathers one host candidate per loopback address (127.0.0.1,
/// ::1) per ICE session, and a session follows each verdict, so a demo run needs about a dozen;
/// 64 bounds the sockets and tasks whatever a run does. Beyond it candidates are dropped.
const MAX_PROXIES: usize = 64;
/// Largest datagram forwarded: a WireGuard packet at the engine's MTU is well under this.
const DATAGRAM_BUFFER: usize = 65_536;
/// STUN's magic cookie (RFC 5389), at bytes 4..8 of every STUN message.
const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// What crossed the middlebox, since it started. Monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MiddleboxCounters {
    pub stun: u64,
    pub wireguard_passed: u64,
    pub wireguard_dropped: u64,
    pub other: u64,
}

/// The middlebox. Dropping it stops its forwarding tasks.
pub struct Middlebox {
    inner: Arc<Inner>,
}

impl Middlebox {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner::default()),
        }
    }

    /// On: WireGuard datagrams are dropped, STUN still passes. Off: everything passes.
    pub fn set_fault(&self, on: bool) {
        self.inner.fault.store(on, Ordering::SeqCst);
    }

    pub fn counters(&self) -> MiddleboxCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.inner.counters;
        MiddleboxCounters {
            stun: get(&c.stun),
            wireguard_passed: get(&c.wireguard_passed),
            wireguard_dropped: get(&c.wireguard_dropped),
            other: get(&c.other),
        }
    }

    /// The signal hub's filter that points every candidate at a proxy of this middlebox. A
    /// candidate it cannot proxy is dropped, so that ICE never pairs around the middlebox.
    pub fn hub_filter(&self) -> HubFilter {
        let inner = self.inner.clone();
        Arc::new(move |_from, _to, msg| match msg {
            SignalMessage::Candidate(candidate) => {
                let rewritten = Inner::rewrite(&inner, &candidate);
                if rewritten.is_none() {
                    tracing::debug!(%candidate, "candidate not proxied; dropped");
                }
                rewritten.map(SignalMessage::Candidate)
            }
            m @ SignalMessage::Offer(_) => Some(m),
            m @ SignalMessage::Answer(_) => Some(m),
            m @ SignalMessage::Mode { .. } => Some(m),
            m @ SignalMessage::GoIdle => Some(m),
            m @ SignalMessage::Heartbeat => Some(m),
        })
    }
}

impl Drop for Middlebox {
    fn drop(&mut self) {
        let proxies = std::mem::take(&mut *self.inner.proxies.lock().unwrap_or_else(PoisonError::into_inner));
        for proxy in proxies.into_values() {
            proxy.task.abort();
        }
    }
}

/// What a datagram is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// A STUN message: the top two bits of the first byte zero, the magic cookie at 4..8.
    Stun,
    /// A WireGuard message: type 1..=4 followed by three reserved zero bytes.
    WireGuard,
    Other,
}

pub fn classify(datagram: &[u8]) -> Datagram {
    match (datagram.first(), datagram.get(1..4), datagram.get(4..8)) {
        (Some(first), _, Some(cookie)) if first & 0xC0 == 0 && cookie == STUN_MAGIC_COOKIE => Datagram::Stun,
        (Some(1..=4), Some([0, 0, 0]), _) => Datagram::WireGuard,
        _ => Datagram::Other,
    }
}

#[derive(Default)]
struct Inner {
    fault: AtomicBool,
    /// Real address → the proxy standing in for it.
    proxies: Mutex<HashMap<SocketAddr, Proxy>>,
    counters: Cells,
}

#[derive(Default)]
struct Cells {
    stun: AtomicU64,
    wireguard_passed: AtomicU64,
    wireguard_dropped: AtomicU64,
    other: AtomicU64,
}

struct Proxy {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    task: AbortHandle,
}

impl Inner {
    /// `candidate` (pion's marshal form, with or without `candidate:`) with its address and
    /// port replaced by the proxy's. Fields 4 and 5 are the address and the port.
    fn rewrite(this: &Arc<Self>, candidate: &str) -> Option<String> {
        let (prefix, body) = match candidate.strip_prefix("candidate:") {
            Some(body) => ("candidate:", body),
            None => ("", candidate),
        };
        let mut fields: Vec<String> = body.split_whitespace().map(str::to_owned).collect();
        let ip: IpAddr = fields.get(4)?.parse().ok()?;
        let port: u16 = fields.get(5)?.parse().ok()?;
        let (proxy, _) = Self::proxy_for(this, SocketAddr::new(ip, port))?;
        *fields.get_mut(4)? = proxy.ip().to_string();
        *fields.get_mut(5)? = proxy.port().to_string();
        Some(format!("{prefix}{}", fields.join(" ")))
    }

    /// The proxy standing in for `real`, made on first use. Must be called inside a tokio
    /// runtime.
    fn proxy_for(this: &Arc<Self>, real: SocketAddr) -> Option<(SocketAddr, Arc<UdpSocket>)> {
        let mut proxies = this.proxies.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = proxies.get(&real) {
            return Some((p.local, p.socket.clone()));
        }
        if proxies.len() >= MAX_PROXIES {
            return None;
        }
        let bound = std::net::UdpSocket::bind(SocketAddr::new(real.ip(), 0))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(UdpSocket::from_std);
        let socket = match bound {
            Ok(s) => Arc::new(s),
            Err(error) => {
                tracing::debug!(%real, %error, "no proxy socket");
                return None;
            }
        };
        let local = socket.local_addr().ok()?;
        let task = tokio::spawn(forward(this.clone(), socket.clone(), real)).abort_handle();
        proxies.insert(
            real,
            Proxy {
                socket: socket.clone(),
                local,
                task,
            },
        );
        Some((local, socket))
    }

    /// Whether a datagram of this kind passes now; counts it either way.
    fn passes(&self, kind: Datagram) -> bool {
        let c = &self.counters;
        let (cell, pass) = match kind {
            Datagram::Stun => (&c.stun, true),
            Datagram::WireGuard if self.fault.load(Ordering::SeqCst) => (&c.wireguard_dropped, false),
            Datagram::WireGuard => (&c.wireguard_passed, true),
            Datagram::Other => (&c.other, true),
        };
        cell.fetch_add(1, Ordering::Relaxed);
        pass
    }
}

/// Whatever reaches `socket` (the proxy of `real`) goes on to `real`, from the proxy of its
/// source.
async fn forward(inner: Arc<Inner>, socket: Arc<UdpSocket>, real: SocketAddr) {
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    loop {
        let (datagram, source) = match socket.recv_from(&mut buf).await {
            Ok((n, source)) => (buf.get(..n).unwrap_or_default(), source),
            // ICMP port unreachable from an agent that closed, reported on the next receive.
            Err(_) => continue,
        };
        if !inner.passes(classify(datagram)) {
            continue;
        }
        let Some((_, out)) = Inner::proxy_for(&inner, source) else {
            continue;
        };
        if let Err(error) = out.send_to(datagram, real).await {
            tracing::trace!(%real, %error, "middlebox send failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDSHAKE_INITIATION: [u8; 8] = [1, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
    const STUN_BINDING_REQUEST: [u8; 8] = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];

    #[test]
    fn stun_and_wireguard_are_told_apart_by_their_first_bytes() {
        assert_eq!(classify(&STUN_BINDING_REQUEST), Datagram::Stun);
        assert_eq!(classify(&HANDSHAKE_INITIATION), Datagram::WireGuard);
        assert_eq!(classify(&[4, 0, 0, 0, 1, 2, 3, 4, 5]), Datagram::WireGuard);
        assert_eq!(classify(&[5, 0, 0, 0, 1, 2, 3, 4]), Datagram::Other);
        assert_eq!(classify(&[1, 0, 1, 0, 1, 2, 3, 4]), Datagram::Other);
        assert_eq!(classify(&[]), Datagram::Other);
    }

    #[tokio::test]
    async fn with_the_fault_on_wireguard_is_dropped_and_stun_passes_through_the_proxies() {
        let middlebox = Middlebox::new();
        let alice = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let bob = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let candidate = format!(
            "1 1 udp 2130706431 127.0.0.1 {} typ host",
            bob.local_addr().unwrap().port()
        );
        let filter = middlebox.hub_filter();
        let Some(SignalMessage::Candidate(seen_by_alice)) = filter(
            peerlink_core::PrivateKey::generate().public_key(),
            peerlink_core::PrivateKey::generate().public_key(),
            SignalMessage::Candidate(candidate.clone()),
        ) else {
            panic!("the candidate was not rewritten");
        };
        let port: u16 = seen_by_alice.split_whitespace().nth(5).unwrap().parse().unwrap();
        assert_ne!(seen_by_alice, candidate);

        middlebox.set_fault(true);
        alice
            .send_to(&HANDSHAKE_INITIATION, ("127.0.0.1", port))
            .await
            .unwrap();
        alice
            .send_to(&STUN_BINDING_REQUEST, ("127.0.0.1", port))
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), bob.recv_from(&mut buf)).await;

        let Ok(Ok((n, from))) = got else {
            panic!(
                "nothing reached bob: {got:?}; counters {:?}",
                middlebox.counters()
            );
        };
        assert_eq!(buf.get(..n), Some(&STUN_BINDING_REQUEST[..]));
        assert_ne!(
            from,
            alice.local_addr().unwrap(),
            "bob must see alice's proxy, not alice"
        );
        let c = middlebox.counters();
        assert_eq!((c.stun, c.wireguard_dropped, c.wireguard_passed), (1, 1, 0));
    }
}
