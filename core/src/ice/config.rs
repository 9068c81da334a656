//! What an ICE worker is configured with: servers, NetBird's timings, network types and which
//! interfaces may give candidates. Everything has NetBird's value as its default, except the
//! srflx and prflx acceptance waits, shortened so a connect is not mostly waiting.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// NetBird's `iceKeepAliveDefault`: a consent check on the selected pair every 4 s.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(4);
/// NetBird's `iceDisconnectedTimeoutDefault`: 6 s without an answer marks the pair disconnected.
pub const DISCONNECTED_TIMEOUT: Duration = Duration::from_secs(6);
/// NetBird's `iceFailedTimeoutDefault`: 6 s more and the agent fails (so checking gives up
/// after disconnected + failed = 12 s).
pub const FAILED_TIMEOUT: Duration = Duration::from_secs(6);
/// NetBird's `iceRelayAcceptanceMinWaitDefault`: a relay pair is nominated only after 2 s, to
/// leave direct pairs time to win.
pub const RELAY_ACCEPTANCE_WAIT: Duration = Duration::from_secs(2);
/// One webrtc-ice check interval (200 ms) plus a LAN round trip: an earlier-signalled host pair wins.
pub const SRFLX_ACCEPTANCE_WAIT: Duration = Duration::from_millis(250);
/// Half a check interval: a prflx is the remote's socket as we see it, as good as what it stands for.
pub const PRFLX_ACCEPTANCE_WAIT: Duration = Duration::from_millis(100);
/// Zero, as in pion and NetBird: no pair beats a host pair, so it is nominated at once.
pub const HOST_ACCEPTANCE_WAIT: Duration = Duration::ZERO;
// The better pair keeps its head start: host, then prflx, then srflx, and relay well after.
const _: () = assert!(
    HOST_ACCEPTANCE_WAIT.as_millis() <= PRFLX_ACCEPTANCE_WAIT.as_millis()
        && PRFLX_ACCEPTANCE_WAIT.as_millis() <= SRFLX_ACCEPTANCE_WAIT.as_millis()
        && SRFLX_ACCEPTANCE_WAIT.as_millis() * 4 <= RELAY_ACCEPTANCE_WAIT.as_millis()
);
/// DESIGN 12: `Agent::close()` can deadlock in webrtc-ice 0.17; waiting longer than a couple of
/// its 200 ms check intervals plus socket teardown means it will not return.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a close waits for gathering to finish first (webrtc-ice cannot cancel it, and a
/// candidate gathered after close leaks its socket). webrtc-ice's own STUN gather timeout is
/// 5 s; TURN allocations take about one RTT per exchange, so 5 s bounds both in practice.
pub const GATHER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// NetBird's interface deny list (client/internal/stdnet/filter.go), matched as name prefixes:
/// loopback, its own and other VPNs' tunnels, container bridges and veths.
pub const NETBIRD_EXCLUDED_INTERFACE_PREFIXES: [&str; 13] = [
    "lo",
    "wt",
    "utun",
    "tun0",
    "zt",
    "ZeroTier",
    "wg",
    "ts",
    "Tailscale",
    "tailscale",
    "docker",
    "veth",
    "br-",
];

/// An ICE worker's configuration. Cheap to clone; servers and credentials can change between
/// sessions (a new worker or a restart picks up the new value).
#[derive(Clone)]
pub struct IceConfig {
    /// STUN servers, as `stun:host:port` (RFC 7064). Never a public default: empty means host
    /// candidates only (plus relay ones when TURN is on).
    pub stun_urls: Vec<String>,
    /// TURN servers (UDP only: webrtc-ice 0.17 has no TURN over TCP/TLS).
    pub turn_servers: Vec<TurnServer>,
    /// Gather relay candidates in every session, even when the caller did not ask for them.
    pub force_turn: bool,
    pub keepalive_interval: Duration,
    pub disconnected_timeout: Duration,
    pub failed_timeout: Duration,
    pub host_acceptance_wait: Duration,
    pub srflx_acceptance_wait: Duration,
    pub prflx_acceptance_wait: Duration,
    pub relay_acceptance_wait: Duration,
    /// Gather and accept IPv6 UDP candidates too (NetBird does).
    pub udp6: bool,
    pub interfaces: InterfaceFilter,
    /// Bound on `Agent::close` (see [`CLOSE_TIMEOUT`]).
    pub close_timeout: Duration,
    /// Bound on waiting for gathering to end before closing (see [`GATHER_DRAIN_TIMEOUT`]).
    pub gather_drain_timeout: Duration,
    /// The engine's own UDP socket, shared with WireGuard (DESIGN 2): host candidates carry its
    /// port, our own STUN Binding on it gives the srflx candidate, and a P2P pair's WireGuard
    /// goes straight out of it. `None` (a worker on its own, in tests): the agent opens
    /// sockets of its own.
    pub socket: Option<super::socket::IceSocket>,
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            stun_urls: Vec::new(),
            turn_servers: Vec::new(),
            force_turn: false,
            keepalive_interval: KEEPALIVE_INTERVAL,
            disconnected_timeout: DISCONNECTED_TIMEOUT,
            failed_timeout: FAILED_TIMEOUT,
            host_acceptance_wait: HOST_ACCEPTANCE_WAIT,
            srflx_acceptance_wait: SRFLX_ACCEPTANCE_WAIT,
            prflx_acceptance_wait: PRFLX_ACCEPTANCE_WAIT,
            relay_acceptance_wait: RELAY_ACCEPTANCE_WAIT,
            udp6: true,
            interfaces: InterfaceFilter::default(),
            close_timeout: CLOSE_TIMEOUT,
            gather_drain_timeout: GATHER_DRAIN_TIMEOUT,
            socket: None,
        }
    }
}

impl fmt::Debug for IceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceConfig")
            .field("stun_urls", &self.stun_urls)
            .field("turn_servers", &self.turn_servers)
            .field("force_turn", &self.force_turn)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("disconnected_timeout", &self.disconnected_timeout)
            .field("failed_timeout", &self.failed_timeout)
            .field("udp6", &self.udp6)
            .field("interfaces", &self.interfaces)
            .field("shared_socket", &self.socket.is_some())
            .finish_non_exhaustive()
    }
}

/// A TURN server and its long-term credentials. `Debug` never shows the credential.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// `turn:host:port` or `turn:host:port?transport=udp`.
    pub url: String,
    pub username: String,
    pub credential: String,
}

impl fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnServer")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("credential", &"..")
            .finish()
    }
}

/// Which interfaces and addresses may give host candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceFilter {
    /// Interfaces whose name starts with one of these are never used.
    pub excluded_prefixes: Vec<String>,
    /// Interfaces with exactly these names are never used: the engine's own tun goes here.
    pub excluded_names: Vec<String>,
    /// When not empty, only interfaces with exactly these names are used (tests: `lo`).
    pub only_names: Vec<String>,
    /// Use loopback addresses (only tests want that: set it and drop "lo" from the prefixes).
    pub include_loopback: bool,
}

impl Default for InterfaceFilter {
    /// NetBird's deny list.
    fn default() -> Self {
        Self {
            excluded_prefixes: NETBIRD_EXCLUDED_INTERFACE_PREFIXES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            excluded_names: Vec::new(),
            only_names: Vec::new(),
            include_loopback: false,
        }
    }
}

impl InterfaceFilter {
    /// The loopback interface only, for in-process tests.
    pub fn loopback_only() -> Self {
        Self {
            excluded_prefixes: Vec::new(),
            excluded_names: Vec::new(),
            only_names: vec!["lo".to_owned()],
            include_loopback: true,
        }
    }

    /// Every interface but our own tun (the lab's peers sit on veth pairs, which NetBird's
    /// list would exclude); loopback stays out.
    pub fn any_but_loopback() -> Self {
        Self {
            excluded_prefixes: vec!["lo".to_owned()],
            excluded_names: Vec::new(),
            only_names: Vec::new(),
            include_loopback: false,
        }
    }

    /// Leaves our own tun out by name.
    pub fn excluding(mut self, name: impl Into<String>) -> Self {
        self.excluded_names.push(name.into());
        self
    }

    pub fn allows_interface(&self, name: &str) -> bool {
        (self.only_names.is_empty() || self.only_names.iter().any(|n| n == name))
            && !self.excluded_names.iter().any(|n| n == name)
            && !self
                .excluded_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }

    /// IPv6 link-local addresses need a scope id that candidates cannot carry, so webrtc-ice
    /// fails to bind them and logs a warning per agent: leave them out.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => (v6.segments().first().copied().unwrap_or(0) & 0xffc0) != 0xfe80,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_is_netbirds_deny_list() {
        let f = InterfaceFilter::default();
        for name in [
            "lo",
            "wt0",
            "utun3",
            "tun0",
            "wg0",
            "tailscale0",
            "docker0",
            "veth12",
            "br-abc",
        ] {
            assert!(!f.allows_interface(name), "{name}");
        }
        for name in ["eth0", "wlan0", "rmnet_data0", "en0"] {
            assert!(f.allows_interface(name), "{name}");
        }
    }

    #[test]
    fn own_tun_is_left_out_by_name() {
        let f = InterfaceFilter::any_but_loopback().excluding("pl-a");
        assert!(!f.allows_interface("pl-a"));
        assert!(f.allows_interface("pl-ab"));
        assert!(f.allows_interface("veth1"));
        assert!(!f.allows_interface("lo"));
    }

    #[test]
    fn loopback_only_allows_lo_alone() {
        let f = InterfaceFilter::loopback_only();
        assert!(f.allows_interface("lo"));
        assert!(!f.allows_interface("eth0"));
    }

    #[test]
    fn link_local_v6_is_left_out() {
        let f = InterfaceFilter::default();
        assert!(!f.allows_ip("fe80::1".parse().unwrap()));
        assert!(f.allows_ip("fd00::1".parse().unwrap()));
        assert!(f.allows_ip("10.0.0.1".parse().unwrap()));
    }
}
