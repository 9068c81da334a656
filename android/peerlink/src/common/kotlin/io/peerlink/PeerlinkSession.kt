package io.peerlink

import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Job
import kotlinx.coroutines.channels.BufferOverflow
import kotlinx.coroutines.flow.MutableSharedFlow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.SharedFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asSharedFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch

/**
 * One engine and everything around it that does not depend on the platform: the event pump
 * (`nextEvent` in a loop → [events]), the tunnel and peer state reduced from it, route changes
 * after a peer update, network changes. Android's `PeerlinkTunnel` and the JVM tests use it;
 * it imports nothing from `android.*`.
 *
 * @param scope where the event pump runs; cancelling it stops the pump, not the engine.
 */
class PeerlinkSession(
    config: EngineConfig,
    platform: Platform?,
    private val scope: CoroutineScope,
) : AutoCloseable {
    /** Throws [PeerlinkException.Config] naming the field if [config] is refused. */
    val engine: Engine = Engine(config, platform)

    private val _state = MutableStateFlow<TunnelState>(TunnelState.Stopped)
    private val _peers = MutableStateFlow<Map<String, PeerState>>(emptyMap())
    private val _events = MutableSharedFlow<Event>(
        // Slow collectors get room for a burst; beyond that the pump waits, the engine's own
        // bounded queue fills and the app is told with `EventsLost`.
        extraBufferCapacity = EVENT_BUFFER,
        onBufferOverflow = BufferOverflow.SUSPEND,
    )
    private var pump: Job? = null
    private val network = NetworkTracker()

    val state: StateFlow<TunnelState> = _state.asStateFlow()

    /** Peers by public key, in configuration order. */
    val peers: StateFlow<Map<String, PeerState>> = _peers.asStateFlow()

    /** Every engine event, as it comes; a collector sees only events after it subscribed. */
    val events: SharedFlow<Event> = _events.asSharedFlow()

    /** What the platform's interface needs now (addresses, routes, MTU, DNS). */
    fun interfaceSettings(): InterfaceSettings = engine.interfaceSettings()

    /**
     * Starts the engine on [tunFd] and the event pump. Returns after a short synchronous setup
     * (socket, tun registration). The engine owns [tunFd] on Android, even on failure.
     */
    @Synchronized
    fun start(tunFd: Int) {
        _state.value = TunnelState.Starting
        try {
            engine.start(tunFd)
        } catch (e: PeerlinkException) {
            _state.value = TunnelState.Failed(e)
            throw e
        }
        pump?.cancel()
        pump = scope.launch { pumpEvents() }
    }

    /**
     * Replaces the peers. Returns true if the routes changed: the platform must then rebuild
     * its interface and hand the new fd to [setTun].
     */
    fun updatePeers(peers: List<PeerConfig>): Boolean {
        val before = engine.interfaceSettings()
        engine.updatePeers(peers)
        return engine.interfaceSettings() != before
    }

    /**
     * Swaps the tun after the platform rebuilt its interface, in place: peers keep their
     * sessions and paths, the UDP port stays (see `Engine.setTun`).
     */
    suspend fun setTun(tunFd: Int) {
        try {
            engine.setTun(tunFd)
        } catch (e: PeerlinkException) {
            _state.value = TunnelState.Failed(e)
            throw e
        }
    }

    /**
     * Android `NetworkCallback.onAvailable` (addresses unknown) and `onLinkPropertiesChanged`;
     * Apple: a satisfied path. Tells the engine only when something changed.
     */
    @Synchronized
    fun networkAvailable(network: Long, addresses: Set<String>? = null) {
        if (this.network.available(network, addresses)) engine.networkChanged(true)
    }

    /** Android `NetworkCallback.onLost`; Apple: an unsatisfied path. */
    @Synchronized
    fun networkLost(network: Long) {
        if (this.network.lost(network)) engine.networkChanged(this.network.online)
    }

    /** The networks known to be up, oldest first. */
    @get:Synchronized
    val networks: List<Long> get() = network.current

    /** A status snapshot, or null when the engine is not running. */
    fun status(): EngineStatus? = try {
        engine.status()
    } catch (e: PeerlinkException.NotStarted) {
        null
    }

    /**
     * Stops the engine (bounded: a few seconds at worst) and waits for the pump to deliver the
     * last events, `Stopped` included.
     */
    suspend fun stop() {
        if (_state.value !is TunnelState.Failed) _state.value = TunnelState.Stopping
        engine.stop()
        pump?.join()
        pump = null
        _state.update { if (it is TunnelState.Failed) it else TunnelState.Stopped }
    }

    /**
     * Frees the engine: its runtime's threads end, a running engine is torn down (prefer
     * [stop] first). The session is unusable afterwards.
     */
    override fun close() {
        pump?.cancel()
        engine.close()
    }

    private suspend fun pumpEvents() {
        while (true) {
            val event = engine.nextEvent() ?: break
            _state.update { it.reduce(event) }
            _peers.update { peers ->
                when (event) {
                    is Event.Started, is Event.PeersUpdated -> status()?.let { peers.peersFrom(it) } ?: peers
                    else -> peers.reduce(event)
                }
            }
            _events.emit(event)
        }
    }

    private companion object {
        /** A burst of state changes (a peer list of this size updating at once), not packets. */
        const val EVENT_BUFFER = 64
    }
}
