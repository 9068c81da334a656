package io.peerlink

/**
 * The tunnel as a UI shows it, reduced from the engine's events by [reduce]. Pure: no
 * Android, no coroutines, so that it is tested on a plain JVM.
 */
sealed interface TunnelState {
    /** Not started, or stopped cleanly. */
    data object Stopped : TunnelState

    /** `start` was called; the engine has not reported `Started` yet. */
    data object Starting : TunnelState

    /**
     * The engine runs. [signal], [relay] and [management] are null when the configuration names
     * no such server; otherwise they follow the engine's `SignalStateChanged`,
     * `RelayStateChanged` and `ManagementStateChanged`.
     */
    data class Running(
        val listenPort: Int,
        val online: Boolean = true,
        val signal: SignalState? = null,
        val relay: RelayState? = null,
        val management: ManagementState? = null,
    ) : TunnelState

    /** `stop` was called; the engine has not reported `Stopped` yet. */
    data object Stopping : TunnelState

    /** Start, a tun swap or the engine itself failed; `stop` or a new `start` leaves it. */
    data class Failed(val error: PeerlinkException) : TunnelState
}

/** One peer as a UI shows it. */
data class PeerState(
    val publicKey: String,
    val path: PathKind? = null,
    val remote: String? = null,
    /** A handshake completed since the engine started (status gives the exact age). */
    val handshakeCompleted: Boolean = false,
    /** The peer's ICE agent, when ICE is configured and has started for this peer. */
    val ice: IceState? = null,
    /**
     * Why the peer's traffic last moved to another path, e.g. "no answer to 3 probes in 1.5 s"
     * (from `PathSwitched`, or the newest of the status' `switches`); null before any switch.
     * Each path's health is in `status()`: it changes without events.
     */
    val switchReason: String? = null,
)

/** The tunnel state after [event]. */
fun TunnelState.reduce(event: Event): TunnelState = when (event) {
    is Event.Started -> TunnelState.Running(event.listenPort.toInt())
    is Event.NetworkChanged -> when (this) {
        is TunnelState.Running -> copy(online = event.online)
        else -> this
    }
    is Event.SignalStateChanged -> when (this) {
        is TunnelState.Running -> copy(signal = event.state)
        else -> this
    }
    is Event.RelayStateChanged -> when (this) {
        is TunnelState.Running -> copy(relay = event.state)
        else -> this
    }
    is Event.ManagementStateChanged -> when (this) {
        is TunnelState.Running -> copy(management = event.state)
        else -> this
    }
    is Event.Stopped -> when (this) {
        // A failure stays visible until the app acts on it.
        is TunnelState.Failed -> this
        else -> TunnelState.Stopped
    }
    is Event.HandshakeCompleted,
    is Event.PathChanged,
    is Event.PathSwitched,
    is Event.PeersUpdated,
    is Event.IceStateChanged,
    is Event.TunReplaced,
    is Event.EventsLost,
    // The platform layer rebuilds the interface (PeerlinkTunnel); nothing to show here.
    is Event.InterfaceChanged,
    is Event.DnsChanged,
    -> this
}

/**
 * The peers after [event], keyed by public key in configuration order. `PeersUpdated` carries
 * only a count: the session replaces the list from `status()` then (see [peersFrom]).
 */
fun Map<String, PeerState>.reduce(event: Event): Map<String, PeerState> = when (event) {
    is Event.PathChanged -> update(event.peer) { it.copy(path = event.kind, remote = event.remote) }
    // The path itself follows PathChanged, which says where it leads.
    is Event.PathSwitched -> update(event.peer) { it.copy(switchReason = event.reason) }
    is Event.HandshakeCompleted -> update(event.peer) { it.copy(handshakeCompleted = true) }
    is Event.IceStateChanged -> update(event.peer) { it.copy(ice = event.state) }
    is Event.Stopped -> emptyMap()
    is Event.Started,
    is Event.PeersUpdated,
    is Event.NetworkChanged,
    is Event.SignalStateChanged,
    is Event.RelayStateChanged,
    // Swapped in place: sessions and paths stay.
    is Event.TunReplaced,
    is Event.EventsLost,
    // The interface and the server state: nothing per peer (PeersUpdated follows a new map).
    is Event.InterfaceChanged,
    is Event.DnsChanged,
    is Event.ManagementStateChanged,
    -> this
}

/** The peer list of a status snapshot, keeping what events taught us about known peers. */
fun Map<String, PeerState>.peersFrom(status: EngineStatus): Map<String, PeerState> =
    status.peers.associate { p ->
        val known = this[p.publicKey]
        p.publicKey to PeerState(
            publicKey = p.publicKey,
            path = p.activePath,
            remote = p.remote,
            handshakeCompleted = p.connected || (known?.handshakeCompleted ?: false),
            ice = known?.ice,
            switchReason = p.switches.lastOrNull()?.reason ?: known?.switchReason,
        )
    }

private inline fun Map<String, PeerState>.update(
    key: String,
    change: (PeerState) -> PeerState,
): Map<String, PeerState> = this + (key to change(this[key] ?: PeerState(key)))
