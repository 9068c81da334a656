package io.peerlink

import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import java.util.Collections

class PeerlinkSessionTest {
    private val scope = CoroutineScope(SupervisorJob() + Dispatchers.Default)

    @Test
    fun `state and peer flows follow the engine, and set_tun swaps the tun in place`() = runBlocking {
        val t = TwoEngines()
        val session = PeerlinkSession(t.configA(t.portB), t.platformA, scope)
        val seen = Collections.synchronizedList(mutableListOf<Event>())
        val collector = scope.launch { session.events.collect { seen += it } }
        try {
            val pipe = PacketPipe()
            session.start(pipe.engineEnd)
            withTimeout(5_000) { session.state.first { it is TunnelState.Running } }
            val request = echoRequest(ADDRESS_A, ADDRESS_B, 1)
            assertArrayEquals(request, carry(pipe, t.pipeB, request))
            val peer = withTimeout(5_000) {
                session.peers.first { it[t.keysB.publicKey]?.handshakeCompleted == true }
            }.getValue(t.keysB.publicKey)
            assertEquals(PathKind.DIRECT, peer.path)
            val port = session.status()!!.listenPort

            // The platform rebuilt its interface: a new fd, the same engine, port and sessions.
            // The peers flow is updated before the event is emitted: wait for the event itself.
            withTimeout(5_000) { while (seen.none { it is Event.HandshakeCompleted }) kotlinx.coroutines.delay(10) }
            val handshakes = seen.count { it is Event.HandshakeCompleted }
            val replacement = PacketPipe()
            val oldTun = Proc.target(pipe.engineEnd)!!
            session.setTun(replacement.engineEnd)
            assertEquals(port, session.status()!!.listenPort, "peers keep the port they know")
            assertArrayEquals(request, carry(replacement, t.pipeB, request), "traffic after the swap")
            val reply = echoReply(ADDRESS_B, ADDRESS_A, 1)
            assertArrayEquals(reply, carry(t.pipeB, replacement, reply))
            withTimeout(5_000) { while (Event.TunReplaced !in seen) kotlinx.coroutines.delay(10) }
            assertEquals(handshakes, seen.count { it is Event.HandshakeCompleted }, "no new handshake: $seen")
            assertTrue(session.peers.value.getValue(t.keysB.publicKey).handshakeCompleted, "the session stays")
            assertTrue(seen.none { it is Event.Started && seen.indexOf(it) > 0 }, "not restarted: $seen")
            // The engine drops the old tun once its reader has moved; by what the fd points at,
            // not its number, which may be reused at once.
            withTimeout(5_000) { while (Proc.isHeld(oldTun)) kotlinx.coroutines.delay(10) }

            withTimeout(10_000) { session.stop() }
            assertEquals(TunnelState.Stopped, session.state.value)
            assertTrue(session.peers.value.isEmpty())
            withTimeout(5_000) { while (Event.Stopped !in seen) kotlinx.coroutines.delay(10) }
            pipe.close()
            replacement.close()
        } finally {
            collector.cancel()
            session.close()
            t.close()
        }
    }

    @Test
    fun `update_peers says when routes changed`() {
        val key = generateKeyPair().publicKey
        PeerlinkSession(noPeerConfig(), null, scope).use { session ->
            assertTrue(session.updatePeers(listOf(PeerConfig(key, listOf("10.8.0.0/24")))), "a new prefix")
            assertFalse(session.updatePeers(listOf(PeerConfig(key, listOf("10.8.0.0/24"), endpoint = "127.0.0.1:9"))), "only the endpoint")
            assertTrue(session.updatePeers(emptyList()), "prefix gone")
            val routes = session.interfaceSettings().routes.map { "${it.address}/${it.prefixLen}" }
            assertEquals(listOf("100.64.9.0/24"), routes)
        }
    }

    @Test
    fun `a failed start shows in the state flow`() {
        PeerlinkSession(noPeerConfig(), CountingPlatform(allow = false), scope).use { session ->
            PacketPipe().use { pipe ->
                runCatching { session.start(pipe.engineEnd) }
                val state = session.state.value
                assertTrue(state is TunnelState.Failed && state.error is PeerlinkException.Socket, "$state")
            }
        }
    }

    @Test
    fun `network changes reach the engine only when they change something`() = runBlocking {
        PeerlinkSession(noPeerConfig(), null, scope).use { session ->
            PacketPipe().use { pipe ->
                session.start(pipe.engineEnd)
                withTimeout(5_000) { session.state.first { it is TunnelState.Running } }
                session.networkAvailable(100)
                withTimeout(5_000) { session.state.first { it == TunnelState.Running(it.port(), online = true) } }
                session.networkLost(7) // never seen: nothing to say
                session.networkLost(100)
                withTimeout(5_000) { session.state.first { (it as? TunnelState.Running)?.online == false } }
                assertFalse(session.status()!!.networkOnline)
                withTimeout(10_000) { session.stop() }
            }
        }
    }

    private fun TunnelState.port() = (this as? TunnelState.Running)?.listenPort ?: -1

    @org.junit.jupiter.api.AfterEach
    fun cancelScope() = scope.cancel()
}

class ReducerTest {
    private val key = "peer-key"

    @Test
    fun `the tunnel state follows started, network and stopped`() {
        var s: TunnelState = TunnelState.Starting
        s = s.reduce(Event.Started(51820u))
        assertEquals(TunnelState.Running(51820), s)
        s = s.reduce(Event.NetworkChanged(false))
        assertEquals(TunnelState.Running(51820, online = false), s)
        s = s.reduce(Event.HandshakeCompleted(key))
        assertEquals(TunnelState.Running(51820, online = false), s)
        assertEquals(TunnelState.Stopped, s.reduce(Event.Stopped))
        val failed = TunnelState.Failed(PeerlinkException.NotStarted())
        assertEquals(failed, failed.reduce(Event.Stopped), "a failure stays until the app acts")
    }

    @Test
    fun `the running state follows signal and relay`() {
        var s: TunnelState = TunnelState.Running(51820)
        s = s.reduce(Event.SignalStateChanged(SignalState.Connecting))
        s = s.reduce(Event.RelayStateChanged(RelayState.Connected("rels://relay:443", "rels://relay:443")))
        s = s.reduce(Event.SignalStateChanged(SignalState.Reconnecting(1u, "transport: refused")))
        assertEquals(
            TunnelState.Running(
                51820,
                signal = SignalState.Reconnecting(1u, "transport: refused"),
                relay = RelayState.Connected("rels://relay:443", "rels://relay:443"),
            ),
            s,
        )
        assertEquals(TunnelState.Starting, TunnelState.Starting.reduce(Event.SignalStateChanged(SignalState.Connected)))
    }

    @Test
    fun `the running state follows management, and its interface events leave peers alone`() {
        var s: TunnelState = TunnelState.Running(51820)
        s = s.reduce(Event.ManagementStateChanged(ManagementState.Connecting))
        s = s.reduce(Event.ManagementStateChanged(ManagementState.InvalidSetupKey("the setup key was refused")))
        assertEquals(
            TunnelState.Running(51820, management = ManagementState.InvalidSetupKey("the setup key was refused")),
            s,
        )
        val interfaceChanged = Event.InterfaceChanged(
            ManagedInterface(listOf("100.64.0.5/16"), 1280u, listOf("192.168.50.0/24"), "phone.netbird.selfhosted"),
        )
        assertEquals(s, s.reduce(interfaceChanged))
        val peers = mapOf(key to PeerState(key, path = PathKind.RELAY))
        assertEquals(peers, peers.reduce(interfaceChanged))
    }

    @Test
    fun `peers learn paths, handshakes and ICE state, and keep sessions on a tun swap`() {
        var p = emptyMap<String, PeerState>()
        p = p.reduce(Event.PathChanged(key, PathKind.RELAY, "rels://relay"))
        p = p.reduce(Event.HandshakeCompleted(key))
        assertEquals(PeerState(key, PathKind.RELAY, "rels://relay", handshakeCompleted = true), p[key])
        p = p.reduce(Event.IceStateChanged(key, IceState.CHECKING))
        p = p.reduce(Event.PathChanged(key, null, null))
        assertEquals(PeerState(key, null, null, handshakeCompleted = true, ice = IceState.CHECKING), p[key])
        assertEquals(p, p.reduce(Event.TunReplaced), "swapped in place: sessions stay")
        assertTrue(p.reduce(Event.Stopped).isEmpty())
    }

    @Test
    fun `a path switch gives its reason and leaves the path to PathChanged`() {
        val stale = "no answer to 3 probes in 1.5 s"
        var p = mapOf(key to PeerState(key, PathKind.ICE_P2P, "192.0.2.7:51820", handshakeCompleted = true))
        p = p.reduce(Event.PathSwitched(key, PathKind.ICE_P2P, PathKind.RELAY, stale))
        assertEquals(PeerState(key, PathKind.ICE_P2P, "192.0.2.7:51820", true, switchReason = stale), p[key])
        p = p.reduce(Event.PathChanged(key, PathKind.RELAY, "rels://relay"))
        assertEquals(PeerState(key, PathKind.RELAY, "rels://relay", true, switchReason = stale), p[key])
        val running = TunnelState.Running(51820)
        assertEquals(running, running.reduce(Event.PathSwitched(key, PathKind.RELAY, null, "relay lost")))
    }

    @Test
    fun `the network tracker reports new networks, address changes and losses once`() {
        val n = NetworkTracker()
        assertFalse(n.online)
        assertTrue(n.available(1), "a new network")
        assertFalse(n.available(1, setOf("192.0.2.7")), "its first addresses are not a change")
        assertFalse(n.available(1, setOf("192.0.2.7")), "nor the same ones again")
        assertTrue(n.available(1, setOf("192.0.2.8")), "new addresses on the same network")
        assertTrue(n.available(2, setOf("198.51.100.1")))
        assertEquals(listOf(1L, 2L), n.current)
        assertTrue(n.lost(1))
        assertFalse(n.lost(1), "already gone")
        assertTrue(n.online)
        assertTrue(n.lost(2))
        assertFalse(n.online)
    }
}
