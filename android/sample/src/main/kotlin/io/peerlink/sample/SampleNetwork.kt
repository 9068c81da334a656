package io.peerlink.sample

/**
 * Fill in before running the sample: this device's key (`wg genkey`), the peer's public key
 * and where it listens. Never ship a private key in an app: this is a sample.
 */
object SampleNetwork {
    const val PRIVATE_KEY = "REPLACE_WITH_BASE64_PRIVATE_KEY"
    const val PEER_PUBLIC_KEY = "REPLACE_WITH_PEER_BASE64_PUBLIC_KEY"
    /** TEST-NET-1 placeholder (RFC 5737). */
    const val PEER_ENDPOINT = "192.0.2.1:51820"
}
