package io.peerlink.android

import android.net.LinkAddress
import android.net.Network
import android.net.RouteInfo
import android.net.VpnService
import android.os.ParcelFileDescriptor
import io.peerlink.PacketPipe
import org.robolectric.annotation.Implementation
import org.robolectric.annotation.Implements
import org.robolectric.annotation.RealObject
import org.robolectric.shadow.api.Shadow
import org.robolectric.shadows.ShadowParcelFileDescriptor
import org.robolectric.shadows.ShadowVpnService
import org.robolectric.util.ReflectionHelpers
import java.net.InetAddress
import java.util.Collections

/*
 * The three places where Android's VPN reaches the kernel, which the JVM does not have:
 * `Builder.establish()` (a tun interface), `VpnService.protect(fd)` (a routing mark) and
 * `setUnderlyingNetworks`. Everything else (the builder's validation of addresses and routes,
 * ConnectivityManager's callbacks, the service lifecycle) is the Android 14 framework as
 * Robolectric runs it. The "tun" is a socketpair, as everywhere in peerlink's tests: the
 * engine gets one end through `detachFd()`, the test plays the kernel on the other.
 */

/** What one `establish()` was given, and the kernel's end of the tun it returned. */
class Established(
    val session: String?,
    val mtu: Int,
    val addresses: List<String>,
    val routes: List<String>,
    val dnsServers: List<String>,
    val disallowedApps: List<String>,
    val pipe: PacketPipe,
)

/** Per service instance: what the shadows saw. */
class VpnRecord {
    val established: MutableList<Established> = Collections.synchronizedList(mutableListOf())
    val protectedFds: MutableList<Int> = Collections.synchronizedList(mutableListOf())
    val underlying: MutableList<List<Network>?> = Collections.synchronizedList(mutableListOf())
}

object Vpn {
    private val records = Collections.synchronizedMap(java.util.IdentityHashMap<VpnService, VpnRecord>())

    fun of(service: VpnService): VpnRecord = synchronized(records) { records.getOrPut(service) { VpnRecord() } }

    fun reset() = records.clear()
}

@Implements(VpnService::class)
class ShadowPeerlinkVpnService : ShadowVpnService() {
    @RealObject
    private lateinit var real: VpnService

    /** The kernel would mark the socket to bypass the VPN; here it is recorded. */
    @Implementation
    protected fun protect(fd: Int): Boolean {
        Vpn.of(real).protectedFds += fd
        return true
    }

    @Implementation
    protected fun setUnderlyingNetworks(networks: Array<Network>?): Boolean {
        Vpn.of(real).underlying += networks?.toList()
        return true
    }
}

@Implements(VpnService.Builder::class)
class ShadowVpnBuilder {
    @RealObject
    private lateinit var real: VpnService.Builder

    /*
     * The String overloads parse with Android's `InetAddress.parseNumericAddress`, which the
     * JVM lacks: parsed here (numeric literals only, no lookup), then the real InetAddress
     * overloads validate and collect as on a device.
     */
    @Implementation
    protected fun addAddress(address: String, prefixLength: Int): VpnService.Builder =
        real.addAddress(numeric(address), prefixLength)

    @Implementation
    protected fun addRoute(address: String, prefixLength: Int): VpnService.Builder =
        real.addRoute(numeric(address), prefixLength)

    @Implementation
    protected fun addDnsServer(address: String): VpnService.Builder = real.addDnsServer(numeric(address))

    /**
     * The real one asks the system's package service through a binder; the app's own
     * PackageManager (Robolectric's) answers the same question: is the package installed?
     */
    @Implementation
    protected fun verifyApp(packageName: String) {
        val service: VpnService = ReflectionHelpers.getField(real, "this$0")
        service.packageManager.getApplicationInfo(packageName, 0)
    }

    private fun numeric(address: String): InetAddress {
        require(address.isNotEmpty() && (address.contains(':') || address.all { it.isDigit() || it == '.' })) {
            "not a numeric address: $address"
        }
        return InetAddress.getByName(address)
    }

    /**
     * Reads back what the real builder collected (its private config, as the system service
     * would), and returns a descriptor for a new socketpair "tun".
     */
    @Implementation
    protected fun establish(): ParcelFileDescriptor {
        val config: Any = ReflectionHelpers.getField(real, "mConfig")
        val addresses: List<LinkAddress> = ReflectionHelpers.getField(real, "mAddresses")
        val routes: List<RouteInfo> = ReflectionHelpers.getField(real, "mRoutes")
        val service: VpnService = ReflectionHelpers.getField(real, "this$0")
        val pipe = PacketPipe()
        Vpn.of(service).established += Established(
            session = ReflectionHelpers.getField(config, "session"),
            mtu = ReflectionHelpers.getField(config, "mtu"),
            addresses = addresses.map { it.toString() },
            routes = routes.map { it.destination.toString() },
            dnsServers = ReflectionHelpers.getField<List<String>?>(config, "dnsServers").orEmpty(),
            disallowedApps = ReflectionHelpers.getField<List<String>?>(config, "disallowedApplications").orEmpty(),
            pipe = pipe,
        )
        return ShadowTunDescriptor.of(pipe.engineEnd)
    }
}

/** A ParcelFileDescriptor over a raw fd: `detachFd()` hands it over, `close()` closes it. */
@Implements(ParcelFileDescriptor::class)
class ShadowTunDescriptor : ShadowParcelFileDescriptor() {
    private var fd = -1

    /** The wrapping constructor's body is skipped: [of] sets the fd. */
    @Implementation
    override fun __constructor__(wrapped: ParcelFileDescriptor?) {}

    @Implementation
    protected fun detachFd(): Int {
        check(fd >= 0) { "already detached or closed" }
        return fd.also { fd = -1 }
    }

    @Implementation
    override fun getFd(): Int = fd

    @Implementation
    override fun close() {
        if (fd >= 0) io.peerlink.LibC.INSTANCE.close(fd)
        fd = -1
    }

    companion object {
        fun of(fd: Int): ParcelFileDescriptor {
            val pfd = ReflectionHelpers.callConstructor(
                ParcelFileDescriptor::class.java,
                ReflectionHelpers.ClassParameter.from(ParcelFileDescriptor::class.java, null),
            )
            Shadow.extract<ShadowTunDescriptor>(pfd).fd = fd
            return pfd
        }
    }
}
