package io.peerlink

/**
 * Which non-VPN networks with internet the platform reports, and whether a report changes the
 * picture the engine must hear about. Android's `NetworkCallback` feeds it network handles and
 * link addresses; Apple's `NWPathMonitor` reports one path, which is one "network" here.
 *
 * Not thread-safe on its own: the owner calls it under a lock.
 */
class NetworkTracker {
    /** Each known network's link addresses (empty until the platform told us). */
    private val networks = LinkedHashMap<Long, Set<String>>()

    val online: Boolean get() = networks.isNotEmpty()

    /** The networks in the order they appeared (Android: for `setUnderlyingNetworks`). */
    val current: List<Long> get() = networks.keys.toList()

    /**
     * A network is up, with [addresses] if known (Android's `onLinkPropertiesChanged`). News
     * for the engine if the network is new or its addresses changed (a DHCP renewal, a new
     * IPv6 prefix): its sockets may have to move.
     */
    fun available(network: Long, addresses: Set<String>? = null): Boolean {
        val known = networks[network]
        return when {
            known == null -> {
                networks[network] = addresses.orEmpty()
                true
            }
            addresses == null || addresses == known -> false
            else -> {
                networks[network] = addresses
                // Learning the first addresses of a network just announced is not a change.
                known.isNotEmpty()
            }
        }
    }

    /** A network went away; news only if it was one we knew. */
    fun lost(network: Long): Boolean = networks.remove(network) != null
}
