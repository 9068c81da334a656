package io.peerlink.sample

import android.app.Notification
import android.app.NotificationChannel
import android.app.NotificationManager
import android.content.Intent
import android.content.pm.ServiceInfo
import android.net.VpnService
import android.os.Build
import android.util.Log
import io.peerlink.EngineConfig
import io.peerlink.LogLevel
import io.peerlink.PeerConfig
import io.peerlink.PeerlinkException
import io.peerlink.SignalState
import io.peerlink.TunnelState
import io.peerlink.android.PeerlinkTunnel
import io.peerlink.initLogging
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch
import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock

/** The whole use of the SDK: start on command, follow the state, stop on revoke or destroy. */
class SampleVpnService : VpnService() {
    private val scope = CoroutineScope(SupervisorJob() + Dispatchers.Default)
    /** start and stop run as coroutines; this keeps them from overlapping. */
    private val lifecycle = Mutex()
    private var tunnel: PeerlinkTunnel? = null

    override fun onCreate() {
        super.onCreate()
        initLogging(LogLevel.INFO) // logcat, tag "peerlink"
    }

    override fun onStartCommand(intent: Intent?, flags: Int, startId: Int): Int {
        if (intent?.action == ACTION_STOP) {
            scope.launch { stopTunnel(); stopSelf() }
            return START_NOT_STICKY
        }
        goForeground("Connecting…")
        scope.launch { startTunnel() }
        // Restarted by the system (or always-on VPN) with a null intent: start again.
        return START_STICKY
    }

    /** The user revoked the VPN or another VPN app took over. */
    override fun onRevoke() {
        scope.launch { stopTunnel(); stopSelf() }
    }

    override fun onDestroy() {
        scope.launch { stopTunnel() }.invokeOnCompletion { scope.cancel() }
        super.onDestroy()
    }

    private suspend fun startTunnel() = lifecycle.withLock {
        if (tunnel != null) return@withLock
        val t = try {
            PeerlinkTunnel(this, sampleConfig(), scope)
        } catch (e: PeerlinkException.Config) {
            Log.e(TAG, "configuration refused at ${e.field}: ${e.detail}")
            stopSelf()
            return@withLock
        }
        tunnel = t
        scope.launch { t.state.collect { goForeground(describe(it)) } }
        scope.launch { t.events.collect { Log.i(TAG, "event: $it") } }
        try {
            t.start()
        } catch (e: PeerlinkException) {
            Log.e(TAG, "start failed", e)
        } catch (e: IllegalStateException) {
            Log.e(TAG, "no VPN permission", e)
        }
    }

    private suspend fun stopTunnel() = lifecycle.withLock {
        val t = tunnel ?: return@withLock
        tunnel = null
        t.stop()
        t.close()
    }

    private fun goForeground(text: String) {
        val manager = getSystemService(NotificationManager::class.java)
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.O) {
            manager.createNotificationChannel(
                NotificationChannel(CHANNEL, "VPN", NotificationManager.IMPORTANCE_LOW),
            )
        }
        val notification = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.O) {
            Notification.Builder(this, CHANNEL)
        } else {
            @Suppress("DEPRECATION")
            Notification.Builder(this)
        }.setContentTitle("peerlink").setContentText(text).setSmallIcon(android.R.drawable.ic_lock_lock).build()
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.UPSIDE_DOWN_CAKE) {
            startForeground(NOTIFICATION_ID, notification, ServiceInfo.FOREGROUND_SERVICE_TYPE_SYSTEM_EXEMPTED)
        } else {
            startForeground(NOTIFICATION_ID, notification)
        }
    }

    private fun describe(state: TunnelState): String = when (state) {
        TunnelState.Stopped -> "Stopped"
        TunnelState.Starting -> "Connecting…"
        is TunnelState.Running -> when {
            !state.online -> "Waiting for a network"
            // Peers without a fixed endpoint are reached through signal: say when it is away.
            state.signal is SignalState.Reconnecting -> "Connected (signal server unreachable, retrying)"
            state.signal is SignalState.Replaced -> "Connected (this key is in use on another device)"
            else -> "Connected"
        }
        TunnelState.Stopping -> "Disconnecting…"
        is TunnelState.Failed -> "Failed: ${state.error.message}"
    }

    /**
     * A fixed two-node network for the sample. A real app keeps the private key in its own
     * encrypted storage (or the Android Keystore) and gets peers from its control plane.
     */
    private fun sampleConfig() = EngineConfig(
        privateKey = SampleNetwork.PRIVATE_KEY,
        addresses = listOf("100.64.0.1/16"),
        dnsServers = emptyList(),
        peers = listOf(
            PeerConfig(
                publicKey = SampleNetwork.PEER_PUBLIC_KEY,
                allowedIps = listOf("100.64.0.2/32"),
                endpoint = SampleNetwork.PEER_ENDPOINT,
                persistentKeepalive = 25u,
            ),
        ),
    )

    companion object {
        const val ACTION_STOP = "io.peerlink.sample.STOP"
        private const val TAG = "PeerlinkSample"
        private const val CHANNEL = "vpn"
        private const val NOTIFICATION_ID = 1
    }
}
