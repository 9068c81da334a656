//! How packets sit in the fd: bare IP (Linux `IFF_NO_PI`, Android) or behind Apple utun's
//! 4-byte big-endian address-family header.

/// Darwin's `AF_INET`.
const AF_INET_DARWIN: u32 = 2;
/// Darwin's `AF_INET6` (Linux's is 10; utun uses the Darwin value on every Apple OS).
const AF_INET6_DARWIN: u32 = 30;
/// Length of utun's address-family header.
pub const UTUN_HEADER_LEN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Each read or write is one raw IP packet.
    #[default]
    RawIp,
    /// Each packet is preceded by a 4-byte big-endian address family (Apple utun).
    AppleUtun,
}

impl Framing {
    pub fn header_len(self) -> usize {
        match self {
            Framing::RawIp => 0,
            Framing::AppleUtun => UTUN_HEADER_LEN,
        }
    }

    /// The header to put before `packet`, chosen from its IP version. `None` for a packet that
    /// is neither IPv4 nor IPv6, which must not be written.
    pub fn header_for(self, packet: &[u8]) -> Option<[u8; UTUN_HEADER_LEN]> {
        let family = match packet.first()? >> 4 {
            4 => AF_INET_DARWIN,
            6 => AF_INET6_DARWIN,
            _ => return None,
        };
        Some(family.to_be_bytes())
    }

    /// The IP packet inside a frame read from the fd, checking that the header (if any) names the
    /// family the packet carries.
    pub fn payload(self, frame: &[u8]) -> Option<&[u8]> {
        match self {
            Framing::RawIp => Some(frame),
            Framing::AppleUtun => {
                let (header, packet) = frame.split_at_checked(UTUN_HEADER_LEN)?;
                let family = u32::from_be_bytes(header.try_into().ok()?);
                let version = packet.first()? >> 4;
                match (family, version) {
                    (AF_INET_DARWIN, 4) | (AF_INET6_DARWIN, 6) => Some(packet),
                    _ => None,
                }
            }
        }
    }
}

#[cfg(test)]
fn family_of(header: [u8; UTUN_HEADER_LEN]) -> Option<std::net::IpAddr> {
    match u32::from_be_bytes(header) {
        AF_INET_DARWIN => Some(std::net::IpAddr::from([0, 0, 0, 0])),
        AF_INET6_DARWIN => Some(std::net::IpAddr::from([0u16; 8])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ip_passes_frames_through() {
        let f = Framing::RawIp;
        assert_eq!(f.header_len(), 0);
        assert_eq!(f.payload(&[0x45, 1, 2]), Some(&[0x45, 1, 2][..]));
    }

    #[test]
    fn utun_header_round_trips_both_families() {
        let f = Framing::AppleUtun;
        let v4 = [0x45u8, 0, 0, 20];
        let v6 = [0x60u8, 0, 0, 0];
        let h4 = f.header_for(&v4).unwrap();
        let h6 = f.header_for(&v6).unwrap();
        assert_eq!(h4, [0, 0, 0, 2]);
        assert_eq!(h6, [0, 0, 0, 30]);
        assert!(family_of(h4).unwrap().is_ipv4());
        assert!(family_of(h6).unwrap().is_ipv6());
        let frame: Vec<u8> = h4.iter().chain(v4.iter()).copied().collect();
        assert_eq!(f.payload(&frame), Some(&v4[..]));
        let frame: Vec<u8> = h6.iter().chain(v6.iter()).copied().collect();
        assert_eq!(f.payload(&frame), Some(&v6[..]));
    }

    #[test]
    fn utun_rejects_short_or_mismatched_frames() {
        let f = Framing::AppleUtun;
        assert_eq!(f.payload(&[0, 0, 0]), None);
        assert_eq!(f.payload(&[0, 0, 0, 2]), None);
        assert_eq!(f.payload(&[0, 0, 0, 30, 0x45]), None);
        assert_eq!(f.payload(&[0, 0, 0, 7, 0x45]), None);
        assert_eq!(f.header_for(&[0x10]), None);
        assert_eq!(f.header_for(&[]), None);
    }
}
