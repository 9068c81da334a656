import Foundation
import Network
import NetworkExtension

/// The peerlink engine inside a `NEPacketTunnelProvider`: applies the tunnel's network settings
/// from the engine's configuration, finds the utun fd, starts the engine on it, follows the
/// device's network with `NWPathMonitor`, and delivers the engine's events as an `AsyncStream`.
/// One per tunnel start; `stop()` ends it.
///
/// With a signal server configured, `events` also carries `.signalStateChanged`,
/// `.relayStateChanged` and `.iceStateChanged(peer:state:)`; `engine.status()` has the current
/// `signal` and `relay` state (nil when not configured). `.pathSwitched(peer:from:to:reason:)`
/// says why a peer's traffic moved to another path; `engine.status()` has each path's `health`,
/// `usable`, `lastProofMsAgo` and `rttMs`, and each peer's recent `switches`.
///
/// With a management server configured (`EngineConfig.management`), the address, routes and
/// MTU come from there: on each `.interfaceChanged` the tunnel re-applies its network settings
/// (the utun and its fd stay, so the engine keeps its peers and paths); the app writes nothing
/// for it. `.managementStateChanged(state:)` and `engine.status().management` say how it goes.
public final class PeerlinkTunnel: @unchecked Sendable {
    public enum Failure: Error {
        /// The provider was released before the tunnel started.
        case providerGone
        /// No utun descriptor was found after the network settings were applied.
        case noUtunFd
    }

    /// The engine itself, for `status()` and anything this class does not wrap.
    public let engine: Engine
    /// Every engine event, in order; finishes after `stop()`.
    public let events: AsyncStream<Event>

    private weak var provider: NEPacketTunnelProvider?
    private let continuation: AsyncStream<Event>.Continuation
    private let monitor = NWPathMonitor()
    private let monitorQueue = DispatchQueue(label: "io.peerlink.path-monitor")
    private var pump: Task<Void, Never>?
    /// The last path the engine heard about; touched only on `monitorQueue`.
    private var lastPath: PathKey?

    /// Throws `PeerlinkError.Config(field:detail:)` if the configuration is refused.
    public init(provider: NEPacketTunnelProvider, config: EngineConfig) throws {
        self.provider = provider
        // Apple needs no socket protection: the extension's own traffic bypasses its tunnel.
        engine = try Engine(config: config, platform: nil)
        // Events are state changes, not packets: the newest 256 are plenty for a slow reader.
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(256))
        self.events = stream
        self.continuation = continuation
    }

    /// Applies the network settings, then starts the engine on the extension's utun.
    public func start() async throws {
        guard let provider else { throw Failure.providerGone }
        let settings = try Self.networkSettings(engine.interfaceSettings())
        try await provider.setTunnelNetworkSettings(settings)
        guard let fd = findUtunFd() else { throw Failure.noUtunFd }
        // The utun belongs to the extension (the engine borrows it on Apple platforms).
        try engine.start(tunFd: fd)
        startEventPump()
        startPathMonitor()
    }

    /// Replaces the peers; re-applies the network settings if their routes changed. The utun
    /// and its fd stay the same when settings are re-applied, so the engine keeps running.
    public func updatePeers(_ peers: [PeerConfig]) async throws {
        let before = try engine.interfaceSettings()
        try engine.updatePeers(peers: peers)
        let after = try engine.interfaceSettings()
        guard after != before, let provider else { return }
        try await provider.setTunnelNetworkSettings(Self.networkSettings(after))
    }

    /// Stops following the network, stops the engine (bounded: a few seconds at worst) and
    /// finishes `events` once the engine's last event is delivered.
    public func stop() async {
        monitor.cancel()
        do {
            try await engine.stop()
        } catch {
            NSLog("peerlink: stop failed: \(error)")
        }
        await pump?.value
        continuation.finish()
    }

    private func startEventPump() {
        let engine = self.engine
        let continuation = self.continuation
        pump = Task.detached { [weak self] in
            // nil once the engine has stopped and every event before that was read.
            while let event = await engine.nextEvent() {
                if case .interfaceChanged = event {
                    await self?.applyManagedSettings()
                }
                continuation.yield(event)
            }
        }
    }

    /// Management changed the interface: re-apply the settings on the same utun.
    private func applyManagedSettings() async {
        guard let provider else { return }
        do {
            let settings = try Self.networkSettings(engine.interfaceSettings())
            try await provider.setTunnelNetworkSettings(settings)
        } catch {
            NSLog("peerlink: applying management's interface settings failed: \(error)")
        }
    }

    /// Tells the engine when the path's status or interfaces change (Wi-Fi to cellular, say):
    /// online, it reconnects signal and relay and restarts ICE, so flag-only updates (expensive,
    /// constrained) are not passed on.
    private func startPathMonitor() {
        let engine = self.engine
        monitor.pathUpdateHandler = { [weak self] path in
            guard let self else { return }
            let key = PathKey(path)
            guard key != self.lastPath else { return }
            self.lastPath = key
            engine.networkChanged(online: key.satisfied)
        }
        monitor.start(queue: monitorQueue)
    }

    private struct PathKey: Equatable {
        let satisfied: Bool
        let interfaces: [String]

        init(_ path: NWPath) {
            satisfied = path.status == .satisfied
            interfaces = path.availableInterfaces.map(\.name)
        }
    }

    /// The extension's interface from the engine's settings: addresses, routes, MTU, DNS.
    static func networkSettings(_ s: InterfaceSettings) -> NEPacketTunnelNetworkSettings {
        // A multi-peer tunnel has no single remote; wireguard-apple uses the same placeholder.
        let settings = NEPacketTunnelNetworkSettings(tunnelRemoteAddress: "127.0.0.1")
        settings.mtu = NSNumber(value: s.mtu)

        let addresses4 = s.addresses.filter { !$0.isIpv6 }
        if !addresses4.isEmpty {
            let ipv4 = NEIPv4Settings(
                addresses: addresses4.map(\.address),
                subnetMasks: addresses4.map { ipv4Mask($0.prefixLen) }
            )
            ipv4.includedRoutes = s.routes.filter { !$0.isIpv6 }.map {
                NEIPv4Route(destinationAddress: $0.address, subnetMask: ipv4Mask($0.prefixLen))
            }
            settings.ipv4Settings = ipv4
        }

        let addresses6 = s.addresses.filter(\.isIpv6)
        if !addresses6.isEmpty {
            let ipv6 = NEIPv6Settings(
                addresses: addresses6.map(\.address),
                networkPrefixLengths: addresses6.map { NSNumber(value: $0.prefixLen) }
            )
            ipv6.includedRoutes = s.routes.filter(\.isIpv6).map {
                NEIPv6Route(destinationAddress: $0.address, networkPrefixLength: NSNumber(value: $0.prefixLen))
            }
            settings.ipv6Settings = ipv6
        }

        if !s.dnsServers.isEmpty {
            settings.dnsSettings = NEDNSSettings(servers: s.dnsServers)
        }
        return settings
    }

    /// 24 → "255.255.255.0". NEIPv4Settings wants masks, not prefix lengths.
    static func ipv4Mask(_ prefixLen: UInt8) -> String {
        let len = UInt32(min(prefixLen, 32))
        let bits: UInt32 = len == 0 ? 0 : UInt32.max << (32 - len)
        return [24, 16, 8, 0].map { String((bits >> $0) & 0xff) }.joined(separator: ".")
    }
}
