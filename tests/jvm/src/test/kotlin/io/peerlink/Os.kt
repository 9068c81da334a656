package io.peerlink

import com.sun.jna.Library
import com.sun.jna.Memory
import com.sun.jna.Native
import java.io.File

/** The few libc calls the tests need to play the operating system's side of a tun. */
@Suppress("FunctionName")
interface LibC : Library {
    fun socketpair(domain: Int, type: Int, protocol: Int, sv: IntArray): Int
    fun read(fd: Int, buf: ByteArray, count: Long): Long
    fun write(fd: Int, buf: ByteArray, count: Long): Long
    fun close(fd: Int): Int
    fun poll(fds: Memory, nfds: Long, timeout: Int): Int
    fun getsockopt(fd: Int, level: Int, name: Int, value: IntArray, len: IntArray): Int

    companion object {
        val INSTANCE: LibC = Native.load("c", LibC::class.java)
    }
}

/** Linux constants (x86_64 and aarch64 agree on these). */
object Linux {
    const val AF_UNIX = 1
    const val SOCK_STREAM = 1
    const val SOCK_DGRAM = 2
    const val SOCK_SEQPACKET = 5
    const val SOL_SOCKET = 1
    const val SO_TYPE = 3
    const val POLLIN: Short = 1
}

/**
 * A `socketpair(AF_UNIX, SOCK_SEQPACKET)`: [engineEnd] goes to the engine as its tun fd, the
 * test reads and writes whole packets on [osEnd], as the kernel would.
 */
class PacketPipe : AutoCloseable {
    val engineEnd: Int
    val osEnd: Int

    init {
        val sv = IntArray(2)
        check(LibC.INSTANCE.socketpair(Linux.AF_UNIX, Linux.SOCK_SEQPACKET, 0, sv) == 0) { "socketpair failed" }
        engineEnd = sv[0]
        osEnd = sv[1]
    }

    fun send(packet: ByteArray) {
        check(LibC.INSTANCE.write(osEnd, packet, packet.size.toLong()) == packet.size.toLong()) { "write failed" }
    }

    /** The next packet the engine writes, or null after [timeoutMs]. */
    fun receive(timeoutMs: Int): ByteArray? {
        val pfd = Memory(8).apply { clear(); setInt(0, osEnd); setShort(4, Linux.POLLIN) }
        if (LibC.INSTANCE.poll(pfd, 1, timeoutMs) <= 0) return null
        val buf = ByteArray(65536)
        val n = LibC.INSTANCE.read(osEnd, buf, buf.size.toLong())
        return if (n > 0) buf.copyOf(n.toInt()) else null
    }

    /** Closes the test's end (the engine owns and closes the other). */
    override fun close() {
        LibC.INSTANCE.close(osEnd)
    }
}

object Proc {
    fun threadCount(): Int = File("/proc/self/task").list()?.size ?: -1
    fun fdCount(): Int = File("/proc/self/fd").list()?.size ?: -1

    /** Open socket fds of this process. */
    fun socketFds(): Set<Int> = File("/proc/self/fd").listFiles().orEmpty().mapNotNull { f ->
        val target = runCatching { java.nio.file.Files.readSymbolicLink(f.toPath()).toString() }.getOrNull()
        if (target?.startsWith("socket:") == true) f.name.toIntOrNull() else null
    }.toSet()

    /** What fd points at (`socket:[inode]`), to tell a closed fd from a reused number. */
    fun target(fd: Int): String? =
        runCatching { java.nio.file.Files.readSymbolicLink(File("/proc/self/fd/$fd").toPath()).toString() }.getOrNull()

    /** Whether anything in this process still holds what `target` named. */
    fun isHeld(target: String): Boolean = File("/proc/self/fd").listFiles().orEmpty().any { f ->
        runCatching { java.nio.file.Files.readSymbolicLink(f.toPath()).toString() }.getOrNull() == target
    }

    fun socketType(fd: Int): Int {
        val value = IntArray(1)
        val len = intArrayOf(4)
        return if (LibC.INSTANCE.getsockopt(fd, Linux.SOL_SOCKET, Linux.SO_TYPE, value, len) == 0) value[0] else -1
    }
}
