//! How packets sit in the fd: bare IP (Linux `IFF_NO_PI`, Android), behind Apple utun's
//! 4-byte big-endian address-family header, or behind Linux's `virtio_net_hdr` when the tun
//! offloads segmentation to us (see `offload`).

use super::offload::{self, OffloadError, VNET_HDR_LEN};

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
    /// Each frame is preceded by a `virtio_net_hdr` (Linux `IFF_VNET_HDR`); a frame read may be
    /// a TCP super-packet that stands for many packets.
    LinuxVnet,
}

/// A frame read from the fd that carries no packet we can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame's header does not match its packet")]
    Framing,
    #[error(transparent)]
    Offload(#[from] OffloadError),
}

impl Framing {
    pub fn header_len(self) -> usize {
        match self {
            Framing::RawIp => 0,
            Framing::AppleUtun => UTUN_HEADER_LEN,
            Framing::LinuxVnet => VNET_HDR_LEN,
        }
    }

    /// Hands each IP packet a frame read from the fd stands for to `each`, in order; `scratch`
    /// holds the segments an offloading tun's super-packet is cut into (at least an MTU).
    /// Returns how many packets `each` saw; on an error it saw none.
    pub fn split(
        self,
        frame: &mut [u8],
        scratch: &mut [u8],
        mut each: impl FnMut(&[u8]),
    ) -> Result<usize, FrameError> {
        match self {
            Framing::RawIp | Framing::AppleUtun => {
                let packet = self.payload(frame).ok_or(FrameError::Framing)?;
                each(packet);
                Ok(1)
            }
            Framing::LinuxVnet => Ok(offload::split(frame, scratch, each)?),
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
    /// An offloading tun's frame qualifies only if it is one packet, complete as it is.
    pub fn payload(self, frame: &[u8]) -> Option<&[u8]> {
        match self {
            Framing::RawIp => Some(frame),
            Framing::LinuxVnet => {
                let plain = offload::VnetHdr::parse(frame)? == offload::VnetHdr::default();
                plain.then(|| frame.get(VNET_HDR_LEN..)).flatten()
            }
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
