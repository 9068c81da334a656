package io.peerlink.android

import android.net.ConnectivityManager
import android.net.LinkProperties
import android.net.Network
import android.net.NetworkCapabilities
import android.net.NetworkRequest
import android.net.VpnService
import android.os.ParcelFileDescriptor
import io.peerlink.EngineConfig
import io.peerlink.Event
import io.peerlink.InterfaceSettings
import io.peerlink.PeerConfig
import io.peerlink.PeerState
import io.peerlink.PeerlinkSession
import io.peerlink.Platform
import io.peerlink.TunnelState
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.util.concurrent.ConcurrentHashMap

/**
 * The peerlink engine inside a [VpnService]: builds the VPN interface from the engine's
 * settings, hands its fd to the engine, protects the engine's sockets, follows the device's
 * networks, and exposes the tunnel as flows. One per service; create it in the service,
 * [start] it, [stop] it in `onRevoke`/`onDestroy`.
 *
 * @param scope the service's scope: the event pump runs there.
 * @throws io.peerlink.PeerlinkException.Config if [config] is refused (the field is named).
 */
class PeerlinkTunnel(
    private val service: VpnService,
    config: EngineConfig,
    private val scope: CoroutineScope,
    private val options: Options = Options(),
) : AutoCloseable {
    class Options(
        /** Shown in the system's VPN dialog and settings. */
        val sessionName: String = "peerlink",
        /**
         * Route none of this app's own traffic through the tunnel. The engine protects its own
         * sockets (WireGuard and ICE share one); this is the fallback for the one it cannot
         * reach, a TURN relay candidate's (webrtc-ice opens it), when TURN is configured and
         * the routes could cover the TURN server. It also keeps the app's other traffic out of
         * the tunnel.
         */
        val excludeOwnApp: Boolean = false,
        /** Anything else for the builder: allowed/disallowed apps, metered, HTTP proxy. */
        val configure: (VpnService.Builder) -> Unit = {},
    )

    private val session = PeerlinkSession(config, ProtectingPlatform(service), scope)
    private val connectivity = service.getSystemService(ConnectivityManager::class.java)
    private val networks = ConcurrentHashMap<Long, Network>()
    private var callback: ConnectivityManager.NetworkCallback? = null
    private var rebuilds: Job? = null

    /**
     * The other end of the placeholder tun the engine starts on when management has not given
     * an address yet (Android's `establish()` needs one); closed once the real interface is in.
     */
    private var placeholder: ParcelFileDescriptor? = null

    val state: StateFlow<TunnelState> get() = session.state
    val peers: StateFlow<Map<String, PeerState>> get() = session.peers
    val events: Flow<Event> get() = session.events

    /** Events the app never saw (the engine's queue overflowed); 0 while the app keeps up. */
    val eventsLost: StateFlow<ULong> get() = session.eventsLost

    /** The engine itself, for `status()` and anything this class does not wrap. */
    val engine get() = session.engine

    /**
     * Establishes the VPN interface and starts the engine on it. The app must have been
     * prepared as the VPN (`VpnService.prepare` from an Activity) or be the always-on VPN.
     */
    suspend fun start() {
        followManagement()
        val settings = session.interfaceSettings()
        // With management, the address comes after login: start on a placeholder (a packet
        // socketpair stands in for a tun) and build the interface on the first InterfaceChanged.
        val fd = if (settings.addresses.isEmpty()) placeholderFd() else establish(settings)
        session.start(fd)
        registerNetworkCallback()
    }

    private fun placeholderFd(): Int {
        val pair = ParcelFileDescriptor.createReliableSocketPair()
        placeholder = pair[1]
        // The engine owns this end from here, as it owns an established interface's fd.
        return pair[0].detachFd()
    }

    /**
     * With a management server, the address and routes come from there: each
     * `InterfaceChanged` rebuilds the VPN interface and hands the new fd to the engine, which
     * keeps its peers and paths (the app writes nothing for it). Subscribed before `start`, so
     * the first one is not missed.
     */
    private fun followManagement() {
        if (rebuilds != null) return
        rebuilds = scope.launch(start = CoroutineStart.UNDISPATCHED) {
            session.events.filterIsInstance<Event.InterfaceChanged>().collect {
                session.setTun(establish(session.interfaceSettings()))
                placeholder?.close()
                placeholder = null
            }
        }
    }

    /** Replaces the peers; rebuilds the interface if their routes changed. */
    suspend fun updatePeers(peers: List<PeerConfig>) {
        if (session.updatePeers(peers)) {
            session.setTun(establish(session.interfaceSettings()))
        }
    }

    /** Stops the engine (bounded; it closes the tun fd) and stops following networks. */
    suspend fun stop() {
        unregisterNetworkCallback()
        rebuilds?.cancel()
        rebuilds = null
        session.stop()
        placeholder?.close()
        placeholder = null
    }

    /** Frees the engine. Call [stop] first; the tunnel is unusable afterwards. */
    override fun close() {
        unregisterNetworkCallback()
        session.close()
    }

    /** `Builder.establish()` can take a while (the system sets up routes): not on the main thread. */
    private suspend fun establish(settings: InterfaceSettings): Int = withContext(Dispatchers.IO) {
        val builder = service.Builder()
            .setSession(options.sessionName)
            .setMtu(settings.mtu.toInt())
        settings.addresses.forEach { builder.addAddress(it.address, it.prefixLen.toInt()) }
        settings.routes.forEach { builder.addRoute(it.address, it.prefixLen.toInt()) }
        settings.dnsServers.forEach { builder.addDnsServer(it) }
        if (options.excludeOwnApp) builder.addDisallowedApplication(service.packageName)
        options.configure(builder)
        val fd = builder.establish()
            ?: throw IllegalStateException(
                "VpnService.Builder.establish() returned null: this app is not the prepared VPN " +
                    "(call VpnService.prepare from an Activity first)",
            )
        // The engine owns the fd from here: it closes it when it stops or swaps the tun.
        fd.detachFd()
    }

    /** Every non-VPN network with internet; the engine hears when one comes, goes or moves. */
    private fun registerNetworkCallback() {
        if (callback != null) return
        val request = NetworkRequest.Builder()
            .addCapability(NetworkCapabilities.NET_CAPABILITY_INTERNET)
            .addCapability(NetworkCapabilities.NET_CAPABILITY_NOT_VPN)
            .build()
        val cb = object : ConnectivityManager.NetworkCallback() {
            override fun onAvailable(network: Network) {
                networks[network.networkHandle] = network
                session.networkAvailable(network.networkHandle)
                updateUnderlyingNetworks()
            }

            override fun onLinkPropertiesChanged(network: Network, properties: LinkProperties) {
                val addresses = properties.linkAddresses.map { it.toString() }.toSet()
                session.networkAvailable(network.networkHandle, addresses)
            }

            override fun onLost(network: Network) {
                networks.remove(network.networkHandle)
                session.networkLost(network.networkHandle)
                updateUnderlyingNetworks()
            }
        }
        connectivity.registerNetworkCallback(request, cb)
        callback = cb
    }

    private fun unregisterNetworkCallback() {
        val cb = callback ?: return
        callback = null
        runCatching { connectivity.unregisterNetworkCallback(cb) }
    }

    /** Lets the system attribute the tunnel's traffic (metered, bandwidth) to the real networks. */
    private fun updateUnderlyingNetworks() {
        val current = session.networks.mapNotNull { networks[it] }
        service.setUnderlyingNetworks(if (current.isEmpty()) null else current.toTypedArray())
    }
}

/** `VpnService.protect` for every socket the engine opens: its packets bypass the tunnel. */
private class ProtectingPlatform(private val service: VpnService) : Platform {
    override fun protectSocket(fd: Int): Boolean = service.protect(fd)
}
