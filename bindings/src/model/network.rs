//! Which of the platform's network reports the engine must hear about. Android's
//! `NetworkCallback` reports networks by handle, with their link addresses; Apple's
//! `NWPathMonitor` reports one path, which is one network here (its interfaces' names stand
//! for addresses). Pure: [`TunnelModel`](super::TunnelModel) owns one under its lock.

/// The non-VPN networks with internet the platform reported, oldest first, each with its
/// addresses (empty until the platform told us).
#[derive(Debug, Default)]
pub(crate) struct NetworkTracker {
    networks: Vec<(u64, Vec<String>)>,
}

impl NetworkTracker {
    pub fn online(&self) -> bool {
        !self.networks.is_empty()
    }

    /// The networks in the order they appeared (Android: for `setUnderlyingNetworks`).
    pub fn current(&self) -> Vec<u64> {
        self.networks.iter().map(|(n, _)| *n).collect()
    }

    /// A network is up, with `addresses` if known. News for the engine if the network is new
    /// or its addresses changed (a DHCP renewal, a new IPv6 prefix, Wi-Fi to cellular on
    /// Apple's one path): its sockets may have to move. The order of `addresses` does not
    /// matter.
    pub fn available(&mut self, network: u64, addresses: Option<Vec<String>>) -> bool {
        let addresses = addresses.map(|mut a| {
            a.sort_unstable();
            a.dedup();
            a
        });
        let Some((_, known)) = self.networks.iter_mut().find(|(n, _)| *n == network) else {
            self.networks.push((network, addresses.unwrap_or_default()));
            return true;
        };
        let Some(addresses) = addresses else {
            return false;
        };
        if addresses == *known {
            return false;
        }
        // Learning the first addresses of a network just announced is not a change.
        let news = !known.is_empty();
        *known = addresses;
        news
    }

    /// A network went away; news only if it was one we knew.
    pub fn lost(&mut self, network: u64) -> bool {
        let before = self.networks.len();
        self.networks.retain(|(n, _)| *n != network);
        self.networks.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(a: &[&str]) -> Option<Vec<String>> {
        Some(a.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn new_networks_address_changes_and_losses_are_news_once() {
        let mut n = NetworkTracker::default();
        assert!(!n.online());
        assert!(n.available(1, None), "a new network");
        assert!(
            !n.available(1, addrs(&["192.0.2.7"])),
            "its first addresses are not a change"
        );
        assert!(!n.available(1, addrs(&["192.0.2.7"])), "nor the same ones again");
        assert!(!n.available(1, None), "nor a report without addresses");
        assert!(
            n.available(1, addrs(&["192.0.2.8"])),
            "new addresses on the same network"
        );
        assert!(n.available(2, addrs(&["198.51.100.1"])));
        assert_eq!(n.current(), vec![1, 2]);
        assert!(n.lost(1));
        assert!(!n.lost(1), "already gone");
        assert!(n.online());
        assert!(n.lost(2));
        assert!(!n.online());
    }

    #[test]
    fn the_order_of_addresses_is_no_change() {
        let mut n = NetworkTracker::default();
        assert!(n.available(0, addrs(&["en0", "pdp_ip0"])));
        assert!(!n.available(0, addrs(&["pdp_ip0", "en0"])));
        assert!(
            n.available(0, addrs(&["pdp_ip0"])),
            "Wi-Fi gone from Apple's one path"
        );
    }
}
