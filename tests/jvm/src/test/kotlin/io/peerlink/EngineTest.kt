package io.peerlink

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

class EngineTest {
    @Test
    fun `two engines carry an ICMP echo both ways over loopback`() {
        TwoEngines().use { t ->
            t.a.start(t.pipeA.engineEnd)
            val request = echoRequest(ADDRESS_A, ADDRESS_B, 1)
            assertArrayEquals(request, carry(t.pipeA, t.pipeB, request), "A→B request")
            val reply = echoReply(ADDRESS_B, ADDRESS_A, 1)
            assertArrayEquals(reply, carry(t.pipeB, t.pipeA, reply), "B→A reply")
            val requestFromB = echoRequest(ADDRESS_B, ADDRESS_A, 2)
            assertArrayEquals(requestFromB, carry(t.pipeB, t.pipeA, requestFromB), "B→A request")

            // The tun write and the counter are two steps: wait for the count, bounded.
            val deadline = System.nanoTime() + 5_000_000_000L
            while (t.a.status().peers.single().counters.rxPackets < 2uL && System.nanoTime() < deadline) {
                Thread.sleep(5)
            }
            val a = t.a.status().peers.single()
            assertEquals(t.keysB.publicKey, a.publicKey)
            assertTrue(a.connected, "A sees B connected: $a")
            assertEquals(PathKind.DIRECT, a.activePath)
            assertEquals("127.0.0.1:${t.portB}", a.remote)
            assertEquals(1uL, a.counters.txPackets)
            assertEquals(2uL, a.counters.rxPackets)
            // No access policy without management: nothing is filtered.
            val c = a.counters
            assertEquals(listOf(0uL, 0uL, 0uL, 0uL), listOf(c.filterNoRule, c.filterDenied, c.filterMalformed, c.filterTableFull), "$c")
            val path = a.paths.single()
            assertEquals(PathKind.DIRECT, path.kind, "$a")
            assertTrue(path.active && path.usable, "the active path is usable: $path")
            assertTrue(path.health == null || path.health == PathHealth.Alive, "a path that answers is alive: $path")
            assertTrue((path.lastProofMsAgo ?: ULong.MAX_VALUE) < 5_000uL, "B's packets prove the path: $path")
            assertTrue(a.switches.all { it.reason.isNotEmpty() && it.msAgo < 60_000uL }, "${a.switches}")
        }
    }

    @Test
    fun `events arrive in order and the queue ends after stop`() = runBlocking {
        TwoEngines().use { t ->
            val started = System.nanoTime()
            t.a.start(t.pipeA.engineEnd)
            val first = t.a.nextEvent()
            val firstEventUs = (System.nanoTime() - started) / 1_000
            t.pipeA.send(echoRequest(ADDRESS_A, ADDRESS_B, 1))
            var handshakeMs: Long? = null
            var switched = false
            val events = listOf(first!!) + try {
                t.a.eventsUntil {
                    if (it is Event.HandshakeCompleted) handshakeMs = (System.nanoTime() - started) / 1_000_000
                    switched = switched || it is Event.PathSwitched
                    handshakeMs != null && switched
                }
            } catch (e: AssertionError) {
                throw AssertionError("${e.message}\nstatus: ${t.a.status()}", e)
            }
            println("figure: start → first event (Started) ${firstEventUs} µs; start → HandshakeCompleted ${handshakeMs} ms")

            val port = t.a.status().listenPort
            val pathChanged = Event.PathChanged(t.keysB.publicKey, PathKind.DIRECT, "127.0.0.1:${t.portB}")
            // The control plane's PathSwitched follows its PathChanged; on loopback the data
            // plane's HandshakeCompleted may come before or after it. One made during start
            // comes from the opening state (and may repeat as an event).
            assertEquals(
                listOf(
                    Event.Started(port),
                    Event.PeersUpdated(1u),
                    pathChanged,
                    Event.HandshakeCompleted(t.keysB.publicKey),
                ),
                events.filter { it !is Event.PathSwitched },
            )
            val switch = Event.PathSwitched(t.keysB.publicKey, null, PathKind.DIRECT, "first path")
            assertEquals(listOf(switch), events.filterIsInstance<Event.PathSwitched>().distinct(), "$events")
            assertTrue(events.indexOf(switch) > events.indexOf(pathChanged), "$events")
            t.a.networkChanged(false)
            assertEquals(Event.NetworkChanged(false), t.a.nextEvent())
            assertFalse(t.a.status().networkOnline)

            withTimeout(10_000) { t.a.stop() }
            assertEquals(Event.PathChanged(t.keysB.publicKey, null, null), t.a.nextEvent(), "stop detaches B's path")
            assertEquals(Event.Stopped, t.a.nextEvent())
            assertNull(t.a.nextEvent())
            assertNull(t.a.nextEvent(), "stays ended")
        }
    }

    @Test
    fun `cancelling a waiting next_event loses nothing`() = runBlocking {
        Engine(noPeerConfig(), CountingPlatform()).use { engine ->
            PacketPipe().use { pipe ->
                engine.start(pipe.engineEnd)
                engine.eventsUntil { it is Event.PeersUpdated }
                val waiting = launch(Dispatchers.IO) { engine.nextEvent() }
                delay(100)
                withTimeout(2_000) { waiting.cancel(); waiting.join() }
                assertTrue(waiting.isCancelled)

                engine.networkChanged(false)
                assertEquals(Event.NetworkChanged(false), withTimeout(2_000) { engine.nextEvent() })
                withTimeout(10_000) { engine.stop() }
            }
        }
    }

    @Test
    fun `config errors are typed and name the field`() {
        fun field(block: () -> Unit) = assertThrows<PeerlinkException.Config>(block).field

        assertEquals("private_key", field { Engine(EngineConfig(privateKey = "not a key"), null) })
        val key = generateKeyPair().publicKey
        assertEquals(
            "peers[0].allowed_ips[1]",
            field {
                Engine(
                    noPeerConfig().copy(peers = listOf(PeerConfig(key, allowedIps = listOf("10.0.0.1/32", "10.0.0.0/33")))),
                    null,
                )
            },
        )
        assertEquals("dns_servers[0]", field { Engine(noPeerConfig().copy(dnsServers = listOf("dns.example")), null) })
        assertEquals("mtu", field { Engine(noPeerConfig().copy(mtu = 100u), null) })

        Engine(noPeerConfig(), null).use { engine ->
            assertEquals("peers[0].endpoint", field { engine.updatePeers(listOf(PeerConfig(key, endpoint = "nohost"))) })
            val e = assertThrows<PeerlinkException.Config> { engine.updatePeers(listOf(PeerConfig("@@"))) }
            assertTrue(e.detail.startsWith("peers[0].public_key"), e.detail)
            assertThrows<PeerlinkException.NotStarted> { engine.status() }
        }
    }

    @Test
    fun `a second start is refused and the fd it was given is closed`() = runBlocking {
        Engine(noPeerConfig(), null).use { engine ->
            val first = PacketPipe()
            val second = PacketPipe()
            val firstTun = Proc.target(first.engineEnd)!!
            val secondTun = Proc.target(second.engineEnd)!!
            engine.start(first.engineEnd)
            assertThrows<PeerlinkException.AlreadyStarted> { engine.start(second.engineEnd) }
            // By what the fd points at, not its number, which may be reused at once.
            assertFalse(Proc.isHeld(secondTun), "the engine owns the fd it is handed, even when refusing it")
            withTimeout(10_000) { engine.stop() }
            assertFalse(Proc.isHeld(firstTun), "stop closes the tun fd")
            first.close()
            second.close()
        }
    }

    @Test
    fun `protect_socket is called for every socket the engine opens`() = runBlocking {
        val platform = CountingPlatform()
        Engine(noPeerConfig(), platform).use { engine ->
            PacketPipe().use { pipe ->
                val before = Proc.socketFds() + setOf(pipe.engineEnd, pipe.osEnd)
                engine.start(pipe.engineEnd)
                val opened = Proc.socketFds() - before
                assertEquals(opened, platform.fds.toSet(), "sockets opened vs protected")
                assertEquals(1, platform.fds.size, "one WireGuard UDP socket today")
                assertEquals(listOf(Linux.SOCK_DGRAM), platform.types, "a UDP socket, protected before use")
                withTimeout(10_000) { engine.stop() }
            }
        }
    }

    @Test
    fun `a refused protect fails start with a socket error and leaks nothing`() {
        Engine(noPeerConfig(), CountingPlatform(allow = false)).use { engine ->
            PacketPipe().use { pipe ->
                val sockets = Proc.socketFds()
                val tun = Proc.target(pipe.engineEnd)!!
                val e = assertThrows<PeerlinkException.Socket> { engine.start(pipe.engineEnd) }
                assertTrue(e.detail.contains("protect"), e.detail)
                assertFalse(Proc.isHeld(tun), "the tun fd is closed")
                assertEquals(sockets - pipe.engineEnd, Proc.socketFds(), "no socket left open")
                assertThrows<PeerlinkException.NotStarted> { engine.status() }
            }
        }
    }

    @Test
    fun `start and stop 100 times leave no threads or fds behind`() = runBlocking {
        val config = noPeerConfig().copy(
            peers = listOf(PeerConfig(generateKeyPair().publicKey, listOf("100.64.9.2/32"), endpoint = "127.0.0.1:9")),
        )
        fun cycle(engine: Engine) = PacketPipe().use { pipe ->
            engine.start(pipe.engineEnd)
            runBlocking { withTimeout(10_000) { engine.stop() } }
        }
        Engine(config, CountingPlatform()).use { cycle(it) } // warm-up: JNA, class loading
        System.gc()
        val threads = Proc.threadCount()
        val fds = Proc.fdCount()

        Engine(config, CountingPlatform()).use { engine -> repeat(100) { cycle(engine) } }
        repeat(20) { Engine(config, CountingPlatform()).use { cycle(it) } }

        delay(200)
        val threadsAfter = Proc.threadCount()
        val fdsAfter = Proc.fdCount()
        println("figure: threads $threads → $threadsAfter, fds $fds → $fdsAfter after 120 start/stop cycles on 21 engines")
        assertTrue(threadsAfter <= threads + 2, "threads $threads → $threadsAfter")
        assertTrue(fdsAfter <= fds + 2, "fds $fds → $fdsAfter")
    }

    @Test
    fun `an engine runs on two runtime threads`() = runBlocking {
        val before = Proc.threadCount()
        Engine(noPeerConfig(), null).use { engine ->
            PacketPipe().use { pipe ->
                engine.start(pipe.engineEnd)
                val running = Proc.threadCount()
                withTimeout(10_000) { engine.stop() }
                assertTrue(running - before in 1..3, "threads while running: $before → $running")
            }
        }
    }

    @Test
    fun `a panic inside the engine becomes an exception`() = runBlocking {
        Engine(noPeerConfig(), null).use { engine ->
            val e = assertThrows<PeerlinkException.Internal> { engine.debugPanic() }
            assertTrue(e.detail.contains("debug_panic"), e.detail)
            val e2 = assertThrows<PeerlinkException.Internal> { runBlocking { engine.debugPanicInRuntime() } }
            assertTrue(e2.detail.contains("debug_panic_in_runtime"), e2.detail)

            PacketPipe().use { pipe ->
                engine.start(pipe.engineEnd)
                assertEquals(0, engine.status().peers.size, "still usable after both panics")
                withTimeout(10_000) { engine.stop() }
            }
        }
    }

    @Test
    fun `figure - JNA overhead of status()`() {
        TwoEngines().use { t ->
            t.a.start(t.pipeA.engineEnd)
            carry(t.pipeA, t.pipeB, echoRequest(ADDRESS_A, ADDRESS_B, 1))
            fun medianNs(n: Int, call: () -> Unit): Long {
                repeat(20_000) { call() } // JIT warm-up
                val samples = LongArray(n) {
                    val s = System.nanoTime()
                    call()
                    System.nanoTime() - s
                }
                samples.sort()
                return samples[n / 2]
            }
            val status = medianNs(20_000) { t.a.status() }
            val publicKey = medianNs(20_000) { t.a.publicKey() }
            println("figure: status() median ${status / 1000.0} µs (1 peer, 1 path); publicKey() median ${publicKey / 1000.0} µs")
            assertTrue(status < 5_000_000, "status() took $status ns")
        }
    }

    @Test
    fun `next_event before the first start returns null at once`() = runBlocking {
        Engine(noPeerConfig(), null).use { engine ->
            assertNull(withTimeout(1_000) { engine.nextEvent() })
            // And a stop before any start is harmless.
            withTimeout(1_000) { engine.stop() }
        }
    }

    @Test
    fun `concurrent callers share the event queue without losing events`() = runBlocking {
        Engine(noPeerConfig(), null).use { engine ->
            PacketPipe().use { pipe ->
                engine.start(pipe.engineEnd)
                engine.eventsUntil { it is Event.PeersUpdated }
                val a = async(Dispatchers.IO) { engine.nextEvent() }
                val b = async(Dispatchers.IO) { engine.nextEvent() }
                delay(50)
                engine.networkChanged(false)
                engine.networkChanged(true)
                val got = withTimeout(2_000) { setOf(a.await(), b.await()) }
                assertEquals(setOf<Event?>(Event.NetworkChanged(false), Event.NetworkChanged(true)), got)
                withTimeout(10_000) { engine.stop() }
            }
        }
    }
}
