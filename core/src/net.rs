//! IP prefixes and the few IP header fields the data plane reads.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP prefix such as `10.0.0.0/24` or `fd00::/64`. Host bits are kept as written (interface
/// addresses need them) and masked off where a prefix is used for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    #[error("`{0}` is not an IP address or prefix such as 10.0.0.0/24")]
    Syntax(String),
    #[error("prefix length {len} is longer than {max} bits in `{text}`")]
    Length { text: String, len: u8, max: u8 },
}

impl IpNet {
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, IpNetError> {
        let max = max_len(addr);
        if len > max {
            return Err(IpNetError::Length {
                text: format!("{addr}/{len}"),
                len,
                max,
            });
        }
        Ok(Self { addr, len })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The prefix with its host bits cleared.
    pub fn network(&self) -> IpNet {
        Self {
            addr: mask(self.addr, self.len),
            len: self.len,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.len) == mask(self.addr, self.len)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    /// Accepts `addr/len`, or a bare address as a host prefix (/32 or /128).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let syntax = || IpNetError::Syntax(text.to_owned());
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => {
                let addr: IpAddr = a.parse().map_err(|_| syntax())?;
                let len: u8 = l.parse().map_err(|_| syntax())?;
                (addr, len)
            }
            None => {
                let addr: IpAddr = text.parse().map_err(|_| syntax())?;
                (addr, max_len(addr))
            }
        };
        Self::new(addr, len)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

pub(crate) fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// Source and destination of an IP packet, or `None` when the bytes are not a plausible IPv4 or
/// IPv6 header.
pub(crate) fn packet_addrs(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match packet.first()? >> 4 {
        4 => {
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some((IpAddr::from(src), IpAddr::from(dst)))
        }
        6 => {
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some((IpAddr::from(src), IpAddr::from(dst)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixes_and_hosts() {
        let n: IpNet = "10.1.2.3/8".parse().unwrap();
        assert_eq!(n.network().to_string(), "10.0.0.0/8");
        assert_eq!("fd00::1".parse::<IpNet>().unwrap().prefix_len(), 128);
        assert_eq!(
            "0.0.0.0/0".parse::<IpNet>().unwrap().network().to_string(),
            "0.0.0.0/0"
        );
    }

    #[test]
    fn refuses_malformed_prefixes() {
        assert!(matches!(
            "10.0.0.0/33".parse::<IpNet>(),
            Err(IpNetError::Length { .. })
        ));
        assert!(matches!("10.0.0/8".parse::<IpNet>(), Err(IpNetError::Syntax(_))));
        assert!(matches!(
            "fd00::/129".parse::<IpNet>(),
            Err(IpNetError::Length { .. })
        ));
        assert!(matches!("".parse::<IpNet>(), Err(IpNetError::Syntax(_))));
    }

    #[test]
    fn contains_respects_family() {
        let n: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(n.contains("1.2.3.4".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
    }

    #[test]
    fn packet_addrs_reads_v4_and_v6_and_rejects_garbage() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[10, 0, 0, 1]);
        v4[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let (s, d) = packet_addrs(&v4).unwrap();
        assert_eq!(
            (s.to_string(), d.to_string()),
            ("10.0.0.1".into(), "10.0.0.2".into())
        );
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 1;
        assert_eq!(packet_addrs(&v6).unwrap().1.to_string(), "::1");
        assert_eq!(packet_addrs(&v4[..19]), None);
        assert_eq!(packet_addrs(&[0x70; 40]), None);
        assert_eq!(packet_addrs(&[]), None);
    }
}
