package io.peerlink

/** Hand-built IPv4 ICMP echo packets, checksums included. */
object Packets {
    const val ICMP_ECHO_REQUEST = 8
    const val ICMP_ECHO_REPLY = 0

    fun icmpEcho(src: String, dst: String, type: Int, id: Int, seq: Int, payload: ByteArray): ByteArray {
        val icmp = ByteArray(8 + payload.size)
        icmp[0] = type.toByte()
        icmp[4] = (id shr 8).toByte(); icmp[5] = id.toByte()
        icmp[6] = (seq shr 8).toByte(); icmp[7] = seq.toByte()
        payload.copyInto(icmp, 8)
        checksum(icmp).let { icmp[2] = (it shr 8).toByte(); icmp[3] = it.toByte() }

        val total = 20 + icmp.size
        val ip = ByteArray(total)
        ip[0] = 0x45 // version 4, 5 words of header
        ip[2] = (total shr 8).toByte(); ip[3] = total.toByte()
        ip[8] = 64 // TTL
        ip[9] = 1 // ICMP
        address(src).copyInto(ip, 12)
        address(dst).copyInto(ip, 16)
        checksum(ip.copyOf(20)).let { ip[10] = (it shr 8).toByte(); ip[11] = it.toByte() }
        icmp.copyInto(ip, 20)
        return ip
    }

    /** RFC 1071 Internet checksum. */
    fun checksum(data: ByteArray): Int {
        var sum = 0L
        var i = 0
        while (i + 1 < data.size) {
            sum += ((data[i].toInt() and 0xff) shl 8) or (data[i + 1].toInt() and 0xff)
            i += 2
        }
        if (i < data.size) sum += (data[i].toInt() and 0xff) shl 8
        while (sum shr 16 != 0L) sum = (sum and 0xffff) + (sum shr 16)
        return (sum.inv() and 0xffff).toInt()
    }

    private fun address(text: String): ByteArray = text.split('.').map { it.toInt().toByte() }.toByteArray()
}
