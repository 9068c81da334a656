//! The few STUN facts the engine's shared socket needs (RFC 8489): recognising a STUN message
//! among WireGuard datagrams, and our own Binding request and its answer, which give the
//! server-reflexive address that webrtc-ice does not gather on a muxed socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// RFC 8489 section 5: the magic cookie, bytes 4..8 of every STUN message.
pub const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// RFC 8489 section 5: the fixed header.
pub const HEADER_LEN: usize = 20;
/// RFC 8489 section 6.3.1: Binding request (method 0x001, class request).
const BINDING_REQUEST: u16 = 0x0001;
/// RFC 8489 section 6.3.1: Binding success response.
const BINDING_SUCCESS: u16 = 0x0101;
/// RFC 8489 section 14.2: XOR-MAPPED-ADDRESS.
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// RFC 8489 section 14.1: MAPPED-ADDRESS, which old servers send instead.
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
/// RFC 8489 section 14.1: address family codes.
const FAMILY_V4: u8 = 0x01;
const FAMILY_V6: u8 = 0x02;

/// A STUN transaction id (RFC 8489 section 5: 96 bits).
pub type TransactionId = [u8; 12];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("not a STUN message")]
    NotStun,
    #[error("a STUN message, but not a Binding success response (type {0:#06x})")]
    NotBindingSuccess(u16),
    #[error("a truncated attribute")]
    Truncated,
    #[error("no (XOR-)MAPPED-ADDRESS attribute")]
    NoAddress,
    #[error("an address attribute of unknown family {0}")]
    BadFamily(u8),
}

/// Whether `d` is a STUN message: the first two bits zero, the magic cookie, and a length
/// field that accounts for the rest of the datagram in 4-byte words (RFC 8489 section 5).
pub fn is_stun(d: &[u8]) -> bool {
    let (Some(&first), Some(cookie), Some(len)) = (d.first(), d.get(4..8), u16_at(d, 2)) else {
        return false;
    };
    let body = usize::from(len);
    first & 0xC0 == 0 && cookie == MAGIC_COOKIE && body % 4 == 0 && d.len() == HEADER_LEN + body
}

/// The transaction id of a STUN message whose class is a response (success or error), which
/// is how answers to our own requests are told from the ICE agents' traffic.
pub fn response_transaction(d: &[u8]) -> Option<TransactionId> {
    if !is_stun(d) {
        return None;
    }
    let kind = u16_at(d, 0)?;
    // The class bits are 0x0100 (C1) and 0x0010 (C0): responses have C1 set.
    if kind & 0x0100 == 0 {
        return None;
    }
    d.get(8..20)?.try_into().ok()
}

/// A Binding request with no attributes: all a STUN server needs to answer with the address it
/// saw (RFC 8489 section 6.1; coturn and NetBird's STUN answer it).
pub fn binding_request(transaction: &TransactionId) -> [u8; HEADER_LEN] {
    let mut m = [0u8; HEADER_LEN];
    m[..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // Length 0: bytes 2..4 stay zero.
    m[4..8].copy_from_slice(&MAGIC_COOKIE);
    m[8..].copy_from_slice(transaction);
    m
}

/// The mapped address in a Binding success response: XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS
/// from a server that predates it.
pub fn mapped_address(d: &[u8]) -> Result<SocketAddr, StunError> {
    if !is_stun(d) {
        return Err(StunError::NotStun);
    }
    let kind = u16_at(d, 0).ok_or(StunError::NotStun)?;
    if kind != BINDING_SUCCESS {
        return Err(StunError::NotBindingSuccess(kind));
    }
    let mut plain = None;
    let mut rest = d.get(HEADER_LEN..).unwrap_or_default();
    while !rest.is_empty() {
        let (Some(attr), Some(len)) = (u16_at(rest, 0), u16_at(rest, 2)) else {
            return Err(StunError::Truncated);
        };
        let len = usize::from(len);
        let value = rest.get(4..4 + len).ok_or(StunError::Truncated)?;
        match attr {
            ATTR_XOR_MAPPED_ADDRESS => return address(value, Some(d)),
            ATTR_MAPPED_ADDRESS => plain = Some(address(value, None)?),
            _ => {}
        }
        // Attributes are padded to 4 bytes (RFC 8489 section 14).
        let padded = (4 + len).div_ceil(4) * 4;
        rest = rest.get(padded..).unwrap_or_default();
    }
    plain.ok_or(StunError::NoAddress)
}

/// An address attribute's value; with `xor_with` (the whole message) it is XOR-ed with the
/// cookie and transaction id (RFC 8489 section 14.2).
fn address(value: &[u8], xor_with: Option<&[u8]>) -> Result<SocketAddr, StunError> {
    let (Some(&family), Some(port)) = (value.get(1), u16_at(value, 2)) else {
        return Err(StunError::Truncated);
    };
    // The cookie and the transaction id: the XOR key (only the first two bytes for the port).
    let key: [u8; 16] = match xor_with {
        Some(m) => m
            .get(4..20)
            .and_then(|k| k.try_into().ok())
            .ok_or(StunError::Truncated)?,
        None => [0; 16],
    };
    let [k0, k1, ..] = key;
    let port = port ^ u16::from_be_bytes([k0, k1]);
    let ip = match family {
        FAMILY_V4 => {
            let mut ip: [u8; 4] = value
                .get(4..8)
                .and_then(|b| b.try_into().ok())
                .ok_or(StunError::Truncated)?;
            ip.iter_mut().zip(key).for_each(|(b, k)| *b ^= k);
            IpAddr::V4(Ipv4Addr::from(ip))
        }
        FAMILY_V6 => {
            let mut ip: [u8; 16] = value
                .get(4..20)
                .and_then(|b| b.try_into().ok())
                .ok_or(StunError::Truncated)?;
            ip.iter_mut().zip(key).for_each(|(b, k)| *b ^= k);
            IpAddr::V6(Ipv6Addr::from(ip))
        }
        other => return Err(StunError::BadFamily(other)),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The big-endian u16 at `at`, if `d` is long enough.
fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    let bytes: [u8; 2] = d.get(at..at + 2)?.try_into().ok()?;
    Some(u16::from_be_bytes(bytes))
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A Binding success response carrying `addr` in XOR-MAPPED-ADDRESS, as a server writes it.
    pub(crate) fn success(transaction: &TransactionId, addr: SocketAddr) -> Vec<u8> {
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&MAGIC_COOKIE);
        key[4..].copy_from_slice(transaction);
        let (family, ip): (u8, Vec<u8>) = match addr.ip() {
            IpAddr::V4(v4) => (FAMILY_V4, v4.octets().to_vec()),
            IpAddr::V6(v6) => (FAMILY_V6, v6.octets().to_vec()),
        };
        let port = addr.port() ^ u16::from_be_bytes([key[0], key[1]]);
        let mut value = vec![0, family];
        value.extend_from_slice(&port.to_be_bytes());
        value.extend(ip.iter().zip(key.iter()).map(|(b, k)| b ^ k));
        let mut m = BINDING_SUCCESS.to_be_bytes().to_vec();
        // A SOFTWARE attribute first (padded), as coturn sends, then the address.
        let software = b"test";
        let body_len = 4 + software.len() + 4 + value.len();
        m.extend_from_slice(&(body_len as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(transaction);
        m.extend_from_slice(&0x8022u16.to_be_bytes());
        m.extend_from_slice(&(software.len() as u16).to_be_bytes());
        m.extend_from_slice(software);
        m.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
        m.extend_from_slice(&(value.len() as u16).to_be_bytes());
        m.extend_from_slice(&value);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::success;
    use super::*;

    #[test]
    fn a_binding_request_is_stun_and_not_a_response() {
        let r = binding_request(&[7; 12]);
        assert!(is_stun(&r));
        assert_eq!(response_transaction(&r), None);
    }

    #[test]
    fn the_mapped_address_is_read_back_for_v4_and_v6() {
        for addr in ["198.51.100.7:40000", "[2001:db8::5]:3478"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let m = success(&[9; 12], addr);
            assert!(is_stun(&m));
            assert_eq!(response_transaction(&m), Some([9; 12]));
            assert_eq!(mapped_address(&m), Ok(addr));
        }
    }

    #[test]
    fn truncated_and_hostile_input_is_refused_without_panic() {
        let m = success(&[1; 12], "192.0.2.1:1".parse().unwrap());
        for cut in 0..m.len() {
            let d = &m[..cut];
            assert!(mapped_address(d).is_err(), "cut at {cut}");
        }
        // A length field that promises more than the datagram holds.
        let mut lying = m.clone();
        lying[3] = lying[3].wrapping_add(4);
        assert!(!is_stun(&lying));
        // An attribute whose own length runs past the end.
        let mut long_attr = m.clone();
        let last_attr_len = long_attr.len() - 8 - 2;
        long_attr[last_attr_len] = 0xff;
        assert!(mapped_address(&long_attr).is_err());
        // A response with no address.
        let mut empty = BINDING_SUCCESS.to_be_bytes().to_vec();
        empty.extend_from_slice(&[0, 0]);
        empty.extend_from_slice(&MAGIC_COOKIE);
        empty.extend_from_slice(&[0; 12]);
        assert_eq!(mapped_address(&empty), Err(StunError::NoAddress));
    }

    #[test]
    fn wireguard_messages_are_not_stun_even_with_the_cookie_inside() {
        // A data message whose receiver index happens to be the cookie.
        let mut data = vec![4u8, 0, 0, 0];
        data.extend_from_slice(&MAGIC_COOKIE);
        data.resize(32, 0);
        assert!(!is_stun(&data));
        for (kind, len) in [(1u8, 148usize), (2, 92), (3, 64), (4, 32)] {
            let mut m = vec![0u8; len];
            m[0] = kind;
            assert!(!is_stun(&m), "type {kind}");
        }
    }
}
