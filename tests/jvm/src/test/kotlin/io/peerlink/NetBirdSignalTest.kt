package io.peerlink

import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import kotlinx.coroutines.withTimeoutOrNull
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.Test
import java.io.File
import java.net.InetSocketAddress
import java.net.ServerSocket
import java.net.Socket
import java.util.Collections

/**
 * Two engines that know only each other's keys meet through NetBird's own signal server
 * (`nb-signal`, built by tests/lab/build-tools.sh) and connect over ICE on loopback: no
 * endpoints anywhere. Skipped, with the reason printed, when the binary is missing or port
 * 10000 (which nb-signal always binds) is taken.
 */
class NetBirdSignalTest {
    @Test
    fun `engines without endpoints meet through nb-signal and carry ICMP over ICE`() = runBlocking {
        val server = NbSignal.startOrSkip()
        val scope = CoroutineScope(SupervisorJob() + Dispatchers.IO)
        val keysA = generateKeyPair()
        val keysB = generateKeyPair()
        val platformA = CountingPlatform()
        val a = Engine(iceConfig(keysA, ADDRESS_A, keysB.publicKey, ADDRESS_B, server.url), platformA)
        val b = Engine(iceConfig(keysB, ADDRESS_B, keysA.publicKey, ADDRESS_A, server.url), CountingPlatform())
        val pipeA = PacketPipe()
        val pipeB = PacketPipe()
        val eventsA = Collections.synchronizedList(mutableListOf<Event>())
        val eventsB = Collections.synchronizedList(mutableListOf<Event>())
        fun diagnosis() = "A: ${runCatching { a.status() }.getOrNull()}\nA events: $eventsA\n" +
            "B: ${runCatching { b.status() }.getOrNull()}\nB events: $eventsB\nnb-signal log:\n${server.logTail()}"
        try {
            a.start(pipeA.engineEnd)
            b.start(pipeB.engineEnd)
            scope.launch { while (true) eventsA += a.nextEvent() ?: break }
            scope.launch { while (true) eventsB += b.nextEvent() ?: break }

            val started = System.nanoTime()
            for (engine in listOf(a, b)) {
                withTimeoutOrNull(WAIT_MS) {
                    while (engine.status().peers.single().activePath != PathKind.ICE_P2P) delay(50)
                } ?: throw AssertionError("no ICE path within $WAIT_MS ms\n${diagnosis()}")
            }
            println("figure: start → ICE P2P path on both engines through nb-signal ${(System.nanoTime() - started) / 1_000_000} ms")

            val request = echoRequest(ADDRESS_A, ADDRESS_B, 1)
            assertArrayEquals(request, carry(pipeA, pipeB, request), "A→B request\n${diagnosis()}")
            val reply = echoReply(ADDRESS_B, ADDRESS_A, 1)
            assertArrayEquals(reply, carry(pipeB, pipeA, reply), "B→A reply\n${diagnosis()}")
            val requestFromB = echoRequest(ADDRESS_B, ADDRESS_A, 2)
            assertArrayEquals(requestFromB, carry(pipeB, pipeA, requestFromB), "B→A request\n${diagnosis()}")
            val replyFromA = echoReply(ADDRESS_A, ADDRESS_B, 2)
            assertArrayEquals(replyFromA, carry(pipeA, pipeB, replyFromA), "A→B reply\n${diagnosis()}")

            for ((events, peer) in listOf(eventsA to keysB.publicKey, eventsB to keysA.publicKey)) {
                withTimeoutOrNull(5_000) {
                    while (!events.containsAll(expected(peer))) delay(20)
                } ?: throw AssertionError("missing ${expected(peer) - events.toSet()}\n${diagnosis()}")
            }
            assertTrue(
                eventsA.any { it is Event.PathChanged && it.peer == keysB.publicKey && it.kind == PathKind.ICE_P2P },
                "A announced the ICE path\n${diagnosis()}",
            )
            val status = a.status()
            assertTrue(status.signal == SignalState.Connected && status.relay == null, "$status")
            assertTrue(Linux.SOCK_STREAM in platformA.types, "signal's TCP connection is protected: ${platformA.types}")
        } finally {
            withTimeout(10_000) { a.stop(); b.stop() }
            scope.cancel()
            a.close()
            b.close()
            pipeA.close()
            pipeB.close()
            server.close()
        }
    }

    /** What each engine must have said about [peer] by the time traffic crossed. */
    private fun expected(peer: String) = listOf(
        Event.SignalStateChanged(SignalState.Connected),
        Event.IceStateChanged(peer, IceState.CONNECTED),
    )

    private fun iceConfig(own: KeyPair, address: String, peer: String, peerAddress: String, signalUrl: String) =
        EngineConfig(
            privateKey = own.privateKey,
            addresses = listOf("$address/24"),
            peers = listOf(PeerConfig(publicKey = peer, allowedIps = listOf("$peerAddress/32"))),
            signal = SignalConfig(url = signalUrl),
            // Loopback only: the test's two engines are on this host, and nothing else is gathered.
            ice = IceConfig(interfaces = listOf("lo")),
        )

    private companion object {
        /** Generous for loopback (it takes well under a second); a timeout is a failure. */
        const val WAIT_MS = 20_000L
    }
}

/** One nb-signal process on :10000 (it binds that port whatever `--port` says). */
class NbSignal private constructor(private val process: Process, private val log: File) : AutoCloseable {
    val url = "http://127.0.0.1:$PORT"

    fun logTail(lines: Int = 30): String =
        runCatching { log.readLines().takeLast(lines).joinToString("\n") }.getOrDefault("(no log)")

    override fun close() {
        process.destroy()
        if (!process.waitFor(5, java.util.concurrent.TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
        log.delete()
    }

    companion object {
        const val PORT = 10000

        /** Starts the server, or skips the calling test saying why. */
        fun startOrSkip(): NbSignal {
            val bin = binary()
            requireTool(bin != null) { "nb-signal not found (run tests/lab/build-tools.sh, or set PEERLINK_NB_SIGNAL)" }
            skipUnless(portFree()) { "port $PORT is in use (nb-signal always binds it)" }
            val log = File.createTempFile("peerlink-nb-signal-", ".log")
            val process = ProcessBuilder(bin!!.path, "run", "--port", "$PORT", "--metrics-port", "0", "--log-file", "console")
                .redirectErrorStream(true)
                .redirectOutput(log)
                .start()
            val server = NbSignal(process, log)
            val deadline = System.nanoTime() + 15_000_000_000L
            while (!listening()) {
                if (!process.isAlive || System.nanoTime() > deadline) {
                    server.close()
                    throw AssertionError("nb-signal did not start listening on :$PORT\n${server.logTail()}")
                }
                Thread.sleep(50)
            }
            return server
        }

        /** A missing lab tool skips the test, but fails it in CI (CI=true), as everywhere in peerlink. */
        private fun requireTool(found: Boolean, reason: () -> String) {
            if (!found && System.getenv("CI") in setOf("true", "1")) {
                throw AssertionError("${reason()} (in CI a missing lab tool is a failure)")
            }
            skipUnless(found, reason)
        }

        /** Skipped tests are named with their reason by tests/jvm.sh, from surefire's reports. */
        private fun skipUnless(condition: Boolean, reason: () -> String) {
            if (!condition) println("skipping: ${reason()}")
            assumeTrue(condition, reason)
        }

        /** `$PEERLINK_NB_SIGNAL`, else `${PEERLINK_CACHE:-~/.cache/peerlink}/bin/nb-signal`. */
        private fun binary(): File? {
            System.getenv("PEERLINK_NB_SIGNAL")?.let { return File(it).takeIf(File::canExecute) }
            val cache = System.getenv("PEERLINK_CACHE") ?: "${System.getProperty("user.home")}/.cache/peerlink"
            return File(cache, "bin/nb-signal").takeIf(File::canExecute)
        }

        private fun portFree(): Boolean = runCatching { ServerSocket(PORT).close() }.isSuccess

        private fun listening(): Boolean = runCatching {
            Socket().use { it.connect(InetSocketAddress("127.0.0.1", PORT), 200) }
        }.isSuccess
    }
}
