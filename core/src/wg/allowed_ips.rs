//! Longest-prefix match from IP address to peer: WireGuard's cryptokey routing table.
//!
//! One hash map per prefix length, searched from the longest length present down. That is at
//! most 33 (IPv4) or 129 (IPv6) probes, in practice the handful of lengths a network uses, with
//! no allocation per lookup.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::net::IpNet;

#[derive(Debug, Clone)]
pub struct AllowedIps<T> {
    v4: Table<u32, T>,
    v6: Table<u128, T>,
}

#[derive(Debug, Clone)]
struct Table<K, T> {
    /// Prefix lengths present, longest first.
    lengths: Vec<u8>,
    maps: HashMap<(u8, K), T>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        Self {
            v4: Table {
                lengths: Vec::new(),
                maps: HashMap::new(),
            },
            v6: Table {
                lengths: Vec::new(),
                maps: HashMap::new(),
            },
        }
    }
}

impl<T> AllowedIps<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `net` (host bits ignored); returns the value it replaced for the same prefix.
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        let len = net.prefix_len();
        match net.network().addr() {
            IpAddr::V4(a) => self.v4.insert(len, u32::from(a), value),
            IpAddr::V6(a) => self.v6.insert(len, u128::from(a), value),
        }
    }

    /// The value of the longest prefix containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        match ip {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a), 32),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a), 128),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.maps.len() + self.v6.maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Copy + Eq + std::hash::Hash + Masked, T> Table<K, T> {
    fn insert(&mut self, len: u8, key: K, value: T) -> Option<T> {
        if let Err(pos) = self.lengths.binary_search_by(|l| len.cmp(l)) {
            self.lengths.insert(pos, len);
        }
        self.maps.insert((len, key), value)
    }

    fn lookup(&self, key: K, bits: u8) -> Option<&T> {
        self.lengths
            .iter()
            .find_map(|&len| self.maps.get(&(len, key.masked(len, bits))))
    }
}

trait Masked: Sized {
    fn masked(self, len: u8, bits: u8) -> Self;
}

impl Masked for u32 {
    fn masked(self, len: u8, bits: u8) -> Self {
        self & u32::MAX.checked_shl(u32::from(bits - len.min(bits))).unwrap_or(0)
    }
}

impl Masked for u128 {
    fn masked(self, len: u8, bits: u8) -> Self {
        self & u128::MAX
            .checked_shl(u32::from(bits - len.min(bits)))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, u32)]) -> AllowedIps<u32> {
        let mut t = AllowedIps::new();
        for (net, v) in entries {
            t.insert(net.parse().unwrap(), *v);
        }
        t
    }

    fn get(t: &AllowedIps<u32>, ip: &str) -> Option<u32> {
        t.lookup(ip.parse().unwrap()).copied()
    }

    #[test]
    fn longest_prefix_wins_v4() {
        let t = table(&[
            ("0.0.0.0/0", 1),
            ("10.0.0.0/8", 2),
            ("10.1.0.0/16", 3),
            ("10.1.2.3/32", 4),
        ]);
        assert_eq!(get(&t, "10.1.2.3"), Some(4));
        assert_eq!(get(&t, "10.1.2.4"), Some(3));
        assert_eq!(get(&t, "10.2.0.1"), Some(2));
        assert_eq!(get(&t, "192.168.1.1"), Some(1));
        assert_eq!(get(&t, "::1"), None);
    }

    #[test]
    fn longest_prefix_wins_v6() {
        let t = table(&[
            ("::/0", 1),
            ("fd00::/8", 2),
            ("fd00:1::/32", 3),
            ("fd00:1::5/128", 4),
        ]);
        assert_eq!(get(&t, "fd00:1::5"), Some(4));
        assert_eq!(get(&t, "fd00:1::6"), Some(3));
        assert_eq!(get(&t, "fdff::1"), Some(2));
        assert_eq!(get(&t, "2001:db8::1"), Some(1));
        assert_eq!(get(&t, "10.0.0.1"), None);
    }

    #[test]
    fn host_bits_are_ignored_on_insert() {
        let t = table(&[("10.0.0.77/24", 7)]);
        assert_eq!(get(&t, "10.0.0.1"), Some(7));
        assert_eq!(get(&t, "10.0.1.1"), None);
    }

    #[test]
    fn same_prefix_replaces() {
        let mut t = table(&[("10.0.0.0/24", 1)]);
        assert_eq!(t.insert("10.0.0.0/24".parse().unwrap(), 2), Some(1));
        assert_eq!(get(&t, "10.0.0.9"), Some(2));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn empty_table_matches_nothing() {
        let t = AllowedIps::<u32>::new();
        assert!(t.is_empty());
        assert_eq!(get(&t, "0.0.0.0"), None);
    }
}
