package io.peerlink

import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import java.util.Collections

/** A Platform that protects every socket (or refuses, if told to) and remembers which. */
class CountingPlatform(private val allow: Boolean = true) : Platform {
    val fds: MutableList<Int> = Collections.synchronizedList(mutableListOf())
    val types: MutableList<Int> = Collections.synchronizedList(mutableListOf())

    override fun protectSocket(fd: Int): Boolean {
        fds += fd
        types += Proc.socketType(fd)
        return allow
    }
}

const val ADDRESS_A = "100.64.0.1"
const val ADDRESS_B = "100.64.0.2"

/**
 * Two engines on loopback: B starts first on a system-chosen port, A knows B's endpoint
 * (127.0.0.1:port) and initiates; B learns A's endpoint from A's handshake, as WireGuard roams.
 */
class TwoEngines : AutoCloseable {
    val keysA = generateKeyPair()
    val keysB = generateKeyPair()
    val platformA = CountingPlatform()
    val platformB = CountingPlatform()
    val pipeA = PacketPipe()
    val pipeB = PacketPipe()
    val b = Engine(configB(), platformB)
    val portB: Int
    val a: Engine

    init {
        b.start(pipeB.engineEnd)
        portB = b.status().listenPort.toInt()
        a = Engine(configA(portB), platformA)
    }

    fun configA(portB: Int) = EngineConfig(
        privateKey = keysA.privateKey,
        addresses = listOf("$ADDRESS_A/24"),
        peers = listOf(
            PeerConfig(
                publicKey = keysB.publicKey,
                allowedIps = listOf("$ADDRESS_B/32"),
                endpoint = "127.0.0.1:$portB",
            ),
        ),
    )

    fun configB() = EngineConfig(
        privateKey = keysB.privateKey,
        addresses = listOf("$ADDRESS_B/24"),
        peers = listOf(PeerConfig(publicKey = keysA.publicKey, allowedIps = listOf("$ADDRESS_A/32"))),
    )

    override fun close() {
        runBlocking { withTimeout(10_000) { a.stop(); b.stop() } }
        a.close()
        b.close()
        pipeA.close()
        pipeB.close()
    }
}

/** Sends [packet] into [from]'s tun and returns what comes out of [to]'s tun. */
fun carry(from: PacketPipe, to: PacketPipe, packet: ByteArray, timeoutMs: Int = 5_000): ByteArray? {
    from.send(packet)
    return to.receive(timeoutMs)
}

fun echoRequest(src: String, dst: String, seq: Int) =
    Packets.icmpEcho(src, dst, Packets.ICMP_ECHO_REQUEST, id = 0x5eed, seq = seq, payload = "peerlink $seq".toByteArray())

fun echoReply(src: String, dst: String, seq: Int) =
    Packets.icmpEcho(src, dst, Packets.ICMP_ECHO_REPLY, id = 0x5eed, seq = seq, payload = "peerlink $seq".toByteArray())

/** Events until [last] matches (inclusive), failing with what arrived after [timeoutMs]. */
suspend fun Engine.eventsUntil(timeoutMs: Long = 5_000, last: (Event) -> Boolean): List<Event> {
    val seen = mutableListOf<Event>()
    try {
        withTimeout(timeoutMs) {
            while (true) {
                val e = nextEvent() ?: error("the event queue ended; seen: $seen")
                seen += e
                if (last(e)) break
            }
        }
    } catch (e: kotlinx.coroutines.TimeoutCancellationException) {
        throw AssertionError("no matching event within $timeoutMs ms; seen: $seen", e)
    }
    return seen
}

fun noPeerConfig(listenPort: Int = 0) = EngineConfig(
    privateKey = generateKeyPair().privateKey,
    addresses = listOf("100.64.9.1/24"),
    listenPort = listenPort.toUShort(),
)
