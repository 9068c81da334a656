package io.peerlink

/**
 * Which non-VPN networks with internet the platform reports, and whether that changed the
 * picture the engine must hear about. Android's `NetworkCallback` feeds it network handles;
 * Apple's `NWPathMonitor` reports a single path, which is one "network" here.
 *
 * Not thread-safe on its own: the owner calls it from one thread (Android delivers network
 * callbacks on one thread per callback) or under a lock.
 */
class NetworkTracker {
    private val networks = LinkedHashSet<Long>()

    val online: Boolean get() = networks.isNotEmpty()

    /** The networks in the order they appeared (Android: for `setUnderlyingNetworks`). */
    val current: List<Long> get() = networks.toList()

    /**
     * A network appeared or changed (new addresses, e.g. after a DHCP renewal). Always
     * something to tell the engine: even the same network may now have a new address.
     */
    fun available(network: Long): Boolean {
        networks.add(network)
        return true
    }

    /** A network went away; worth telling the engine only if it was one we knew. */
    fun lost(network: Long): Boolean = networks.remove(network)
}
