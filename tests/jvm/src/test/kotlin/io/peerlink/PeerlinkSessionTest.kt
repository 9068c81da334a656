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
            assertEquals(0UL, session.eventsLost.value, "a collecting app loses nothing")
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
                withTimeout(5_000) { session.state.first { (it as? TunnelState.Running)?.online == true } }
                session.networkLost(7) // never seen: nothing to say
                session.networkLost(100)
                withTimeout(5_000) { session.state.first { (it as? TunnelState.Running)?.online == false } }
                assertFalse(session.status()!!.networkOnline)
                withTimeout(10_000) { session.stop() }
            }
        }
    }

    @Test
    fun `a collector that falls behind is told how many events it lost`() = runBlocking {
        PeerlinkSession(noPeerConfig(), null, scope).use { session ->
            PacketPipe().use { pipe ->
                val gate = kotlinx.coroutines.CompletableDeferred<Unit>()
                val seen = Collections.synchronizedList(mutableListOf<Event>())
                val collector = scope.launch(start = kotlinx.coroutines.CoroutineStart.UNDISPATCHED) {
                    session.events.collect { gate.await(); seen += it }
                }
                session.start(pipe.engineEnd)
                // Far more changes than the session's buffer and the engine's queue hold, while
                // the collector is stuck: the pump waits, the engine's queue overflows.
                repeat(CHANGES / 2) {
                    session.networkAvailable(1)
                    session.networkLost(1)
                }
                gate.complete(Unit)
                withTimeout(10_000) { session.stop() }
                val lost = session.eventsLost.value
                fun reported() = synchronized(seen) { seen.filterIsInstance<Event.EventsLost>().sumOf { it.missed } }
                fun delivered() = synchronized(seen) { seen.count { it is Event.NetworkChanged } }
                // The pump has ended; the collector may still be reading what it buffered.
                kotlinx.coroutines.withTimeoutOrNull(5_000) {
                    while (reported() != lost || delivered().toULong() + lost < CHANGES.toULong()) kotlinx.coroutines.delay(10)
                }
                collector.cancel()
                val reported = reported()
                val delivered = delivered()
                assertTrue(lost > 0UL, "nothing counted as lost: ${seen.size} events seen")
                assertEquals(lost, reported, "the counter and the EventsLost events agree")
                assertTrue(delivered.toULong() + lost >= CHANGES.toULong(), "$delivered delivered + $lost lost < $CHANGES")
            }
        }
    }

    private companion object {
        /** Well past the session's 64-event buffer plus the engine's 256-event queue. */
        const val CHANGES = 1000
    }

    @org.junit.jupiter.api.AfterEach
    fun cancelScope() = scope.cancel()
}
