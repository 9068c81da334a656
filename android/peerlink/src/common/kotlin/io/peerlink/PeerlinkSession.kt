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
import kotlinx.coroutines.launch

/**
 * One engine and its [TunnelModel] (the state model shared with Swift, in Rust) as flows: the
 * pump (`nextUpdate` in a loop → [state], [peers], [events]) and the calls that drive the
 * model. Decides nothing itself. Android's `PeerlinkTunnel` and the JVM tests use it; it
 * imports nothing from `android.*`.
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
    val model: TunnelModel = TunnelModel(engine)

    private val _state = MutableStateFlow(model.state())
    private val _peers = MutableStateFlow<Map<String, PeerState>>(emptyMap())
    private val _eventsLost = MutableStateFlow(0UL)
    private val _events = MutableSharedFlow<Event>(
        // Slow collectors get room for a burst; beyond that the pump waits, the engine's own
        // bounded queue fills and the model counts what it loses (`eventsLost`, `EventsLost`).
        extraBufferCapacity = EVENT_BUFFER,
        onBufferOverflow = BufferOverflow.SUSPEND,
    )
    private var pump: Job? = null

    val state: StateFlow<TunnelState> = _state.asStateFlow()

    /** Peers by public key, in configuration order. */
    val peers: StateFlow<Map<String, PeerState>> = _peers.asStateFlow()

    /** Events that never reached the app (the engine's queue overflowed); 0 normally. */
    val eventsLost: StateFlow<ULong> = _eventsLost.asStateFlow()

    /** Every engine event, as it comes; a collector sees only events after it subscribed. */
    val events: SharedFlow<Event> = _events.asSharedFlow()

    /** What the platform's interface needs now (addresses, routes, MTU, DNS). */
    fun interfaceSettings(): InterfaceSettings = model.interfaceSettings()

    /**
     * Starts the engine on [tunFd] and the event pump. Returns after a short synchronous setup
     * (socket, tun registration). The engine owns [tunFd] on Android, even on failure.
     */
    @Synchronized
    fun start(tunFd: Int) {
        try {
            model.start(tunFd)
        } finally {
            _state.value = model.state()
        }
        pump?.cancel()
        pump = scope.launch { pumpUpdates() }
    }

    /**
     * Replaces the peers. Returns true if the routes changed: the platform must then rebuild
     * its interface and hand the new fd to [setTun].
     */
    fun updatePeers(peers: List<PeerConfig>): Boolean = model.updatePeers(peers)

    /**
     * Swaps the tun after the platform rebuilt its interface, in place: peers keep their
     * sessions and paths, the UDP port stays (see `Engine.setTun`).
     */
    suspend fun setTun(tunFd: Int) {
        try {
            model.setTun(tunFd)
        } finally {
            _state.value = model.state()
        }
    }

    /**
     * Android `NetworkCallback.onAvailable` (addresses unknown) and `onLinkPropertiesChanged`.
     * The model tells the engine only when something changed.
     */
    fun networkAvailable(network: Long, addresses: Set<String>? = null) =
        model.networkAvailable(network.toULong(), addresses?.toList())

    /** Android `NetworkCallback.onLost`. */
    fun networkLost(network: Long) = model.networkLost(network.toULong())

    /** The networks known to be up, oldest first. */
    val networks: List<Long> get() = model.networks().map { it.toLong() }

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
        try {
            model.stop()
            pump?.join()
            pump = null
        } finally {
            _state.value = model.state()
        }
    }

    /**
     * Frees the engine: its runtime's threads end, a running engine is torn down (prefer
     * [stop] first). The session is unusable afterwards.
     */
    override fun close() {
        pump?.cancel()
        model.close()
        engine.close()
    }

    private suspend fun pumpUpdates() {
        while (true) {
            val update = model.nextUpdate() ?: break
            _state.value = update.state
            _peers.value = update.peers.associateBy { it.publicKey }
            _eventsLost.value = update.eventsLost
            _events.emit(update.event)
        }
        _state.value = model.state()
    }

    private companion object {
        /** A burst of state changes (a peer list of this size updating at once), not packets. */
        const val EVENT_BUFFER = 64
    }
}
