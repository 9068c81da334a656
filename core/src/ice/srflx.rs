//! The server-reflexive candidate of the shared socket, which webrtc-ice does not gather on a
//! muxed socket: asked from each STUN server by [`IceSocket::mapped`] and written in pion's
//! marshal form for signal. The agent need not know it: RFC 8445 section 6.1.2.4 prunes a
//! srflx local candidate in favour of its base, the host candidate on the same socket, so the
//! remote's checks to it arrive and are answered there.

use std::net::{IpAddr, SocketAddr};

use webrtc_ice::url::{SchemeType, Url};

use super::socket::IceSocket;

/// RFC 8445 section 5.1.2.2: the type preference of server-reflexive candidates (pion's too).
const SRFLX_TYPE_PREFERENCE: u32 = 100;
/// RFC 8445 section 5.1.2.1: the local preference of a host with one address (pion's default).
const LOCAL_PREFERENCE: u32 = 65535;
/// ICE component 1 (RTP), the only one NetBird uses.
const COMPONENT: u32 = 1;

/// The srflx candidates of `socket` for the STUN URLs in `stun_urls`, one per distinct mapped
/// address that is not one of this host's own (then the host candidate says it already).
pub(crate) async fn candidates(socket: &IceSocket, stun_urls: &[String]) -> Vec<String> {
    let base = socket.udp().local_addr().ok();
    let mut found: Vec<SocketAddr> = Vec::new();
    for raw in stun_urls {
        let Some(server) = resolve(raw, socket.is_v4()).await else {
            continue;
        };
        let Some(mapped) = socket.mapped(server).await else {
            continue;
        };
        if found.contains(&mapped) || is_own_address(mapped.ip()) {
            continue;
        }
        found.push(mapped);
    }
    found
        .into_iter()
        .map(|mapped| marshal(mapped, base.unwrap_or(mapped)))
        .collect()
}

/// pion's marshal form, as NetBird sends it: `foundation component network priority address
/// port typ srflx raddr … rport …`.
pub(crate) fn marshal(mapped: SocketAddr, base: SocketAddr) -> String {
    let priority = (1 << 24) * SRFLX_TYPE_PREFERENCE + (1 << 8) * LOCAL_PREFERENCE + (256 - COMPONENT);
    format!(
        "{foundation} {COMPONENT} udp {priority} {ip} {port} typ srflx raddr {raddr} rport {rport}",
        foundation = foundation(mapped),
        ip = mapped.ip(),
        port = mapped.port(),
        raddr = base.ip(),
        rport = base.port(),
    )
}

/// A foundation that is the same for the same address (RFC 8445 section 5.1.1.3 wants equal
/// foundations for candidates of the same type, base and server).
fn foundation(mapped: SocketAddr) -> u32 {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in mapped.ip().to_string().bytes().chain(*b"srflx") {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// A STUN URL's server address, of the socket's family.
async fn resolve(raw: &str, v4_only: bool) -> Option<SocketAddr> {
    let url = Url::parse_url(raw).ok()?;
    if url.scheme != SchemeType::Stun {
        return None;
    }
    let found = tokio::net::lookup_host((url.host.as_str(), url.port)).await;
    let addrs = match found {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(url = %raw, error = %e, "STUN server not resolved");
            return None;
        }
    };
    let mut addrs = addrs;
    addrs.find(|a| !v4_only || a.is_ipv4())
}

/// Whether `ip` is one of this host's own addresses (no NAT between us and the server).
fn is_own_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ice::RemoteCandidates;
    use webrtc_ice::candidate::Candidate;

    #[test]
    fn our_srflx_candidate_reads_back_as_one() {
        let c = marshal(
            "198.51.100.7:40000".parse().unwrap(),
            "0.0.0.0:51820".parse().unwrap(),
        );
        assert!(c.contains(" typ srflx raddr 0.0.0.0 rport 51820"), "{c}");
        let parsed = webrtc_ice::candidate::candidate_base::unmarshal_candidate(&c).expect("pion parses it");
        assert_eq!(parsed.address(), "198.51.100.7");
        assert_eq!(parsed.port(), 40000);
        assert_eq!(parsed.priority(), 1_694_498_815, "pion's srflx priority");
        let mut remote = RemoteCandidates::new("ufrag", false);
        assert!(remote.admit(None, &c).is_ok(), "our own checks accept it");
    }

    #[test]
    fn loopback_is_our_own_and_a_documentation_address_is_not() {
        assert!(is_own_address("127.0.0.1".parse().unwrap()));
        assert!(!is_own_address("198.51.100.7".parse().unwrap()));
    }
}
