// A minimal packet tunnel extension using peerlink: the whole use of the SDK.
// Target: a Network Extension (packet tunnel provider) with the entitlements
//   com.apple.developer.networking.networkextension = [packet-tunnel-provider]
//   com.apple.security.application-groups = [group.your.app] (to share config with the app)
// and the Peerlink package as a dependency.
import NetworkExtension
import os
import Peerlink

final class PacketTunnelProvider: NEPacketTunnelProvider {
    private var tunnel: PeerlinkTunnel?
    private let log = Logger(subsystem: "your.app.tunnel", category: "peerlink")

    override func startTunnel(options: [String: NSObject]? = nil) async throws {
        initLogging(level: .info) // the engine's own lines: the unified log, subsystem "io.peerlink"
        let tunnel = try PeerlinkTunnel(provider: self, config: try loadConfig())
        self.tunnel = tunnel
        let log = self.log
        Task {
            for await update in tunnel.updates {
                // update.state is the tunnel as a UI shows it (the same model as on Android);
                // update.eventsLost counts events this reader was too slow for.
                switch update.event {
                case .signalStateChanged(.replaced):
                    log.warning("another device uses this key; signal delivers to it now")
                case let .relayStateChanged(.failed(detail, failures)):
                    log.error("relay failed \(failures)x: \(detail, privacy: .public)")
                case let .pathSwitched(peer, from, to, reason):
                    let name = { (kind: PathKind?) in kind.map { "\($0)" } ?? "none" }
                    log.info("\(peer.prefix(8), privacy: .public) \(name(from)) → \(name(to)): \(reason, privacy: .public)")
                default:
                    log.debug("\(String(describing: update.event), privacy: .public)")
                }
            }
        }
        try await tunnel.start()
    }

    override func stopTunnel(with reason: NEProviderStopReason) async {
        await tunnel?.stop()
        tunnel = nil
    }

    /// The app writes the configuration (its private key in the shared keychain group, not in
    /// the file) and starts the tunnel with NETunnelProviderManager; here it is read back.
    private func loadConfig() throws -> EngineConfig {
        let proto = protocolConfiguration as? NETunnelProviderProtocol
        guard let conf = proto?.providerConfiguration,
              let privateKey = conf["privateKey"] as? String,
              let address = conf["address"] as? String,
              let peerKey = conf["peerPublicKey"] as? String,
              let peerAllowed = conf["peerAllowedIps"] as? [String]
        else {
            throw NEVPNError(.configurationInvalid)
        }
        return EngineConfig(
            privateKey: privateKey,
            addresses: [address],
            peers: [PeerConfig(publicKey: peerKey, allowedIps: peerAllowed, endpoint: conf["peerEndpoint"] as? String)],
            // With a signal server, peers need no endpoint: they meet over ICE (or the relay).
            signal: (conf["signalUrl"] as? String).map { SignalConfig(url: $0) },
            ice: conf["signalUrl"] == nil ? nil : IceConfig(stun: conf["stunUrls"] as? [String] ?? [])
        )
    }
}
