import Foundation
import Network
import NetworkExtension
import os

/// The peerlink engine inside a `NEPacketTunnelProvider`: applies the tunnel's network settings
/// from the engine's configuration, finds the utun fd, starts the engine on it, follows the
/// device's network with `NWPathMonitor`, and delivers the engine's events with the tunnel's
/// state as an `AsyncStream` of `TunnelUpdate`s. One per tunnel start; `stop()` ends it.
///
/// The state (`TunnelState`, each `PeerState`) and which path changes the engine hears about are
/// decided in Rust by `TunnelModel`, the same model Android's `PeerlinkSession` pumps. An actor:
/// its only mutable state (the pump task, the provider) is isolated; `engine`, `model` and
/// `updates` are thread-safe and readable from anywhere.
///
/// With a signal server configured, updates also carry `.signalStateChanged`,
/// `.relayStateChanged` and `.iceStateChanged(peer:state:)` events; `engine.status()` has each
/// path's `health`, `usable`, `lastProofMsAgo` and `rttMs`, and each peer's recent `switches`.
///
/// With a management server configured (`EngineConfig.management`), the address, routes and
/// MTU come from there: on each `.interfaceChanged` the tunnel re-applies its network settings
/// (the utun and its fd stay, so the engine keeps its peers and paths); the app writes nothing
/// for it. `.managementStateChanged(state:)` and `engine.status().management` say how it goes.
public actor PeerlinkTunnel {
    public enum Failure: Error {
        /// The provider was released before the tunnel started.
        case providerGone
        /// No utun descriptor was found after the network settings were applied.
        case noUtunFd
    }

    /// The engine itself, for `status()` and anything this class does not wrap.
    public nonisolated let engine: Engine
    /// The tunnel's state model: `state()`, `peers()`, `eventsLost()` at any time.
    public nonisolated let model: TunnelModel
    /// Every engine event with the state after it, in order; finishes after `stop()`. A reader
    /// that falls more than `bufferedUpdates` behind loses the oldest; each loss is counted in
    /// the next update's `eventsLost` (and `model.eventsLost()`), never silently.
    public nonisolated let updates: AsyncStream<TunnelUpdate>

    /// Updates are state changes, not packets: this many cover a burst of a large peer list.
    public static let bufferedUpdates = 256
    /// `NWPathMonitor` reports one path: it is the model's one network.
    private static let pathNetwork: UInt64 = 0
    private static let log = Logger(subsystem: "io.peerlink", category: "tunnel")

    private weak var provider: NEPacketTunnelProvider?
    private let continuation: AsyncStream<TunnelUpdate>.Continuation
    private let monitor = NWPathMonitor()
    private let monitorQueue = DispatchQueue(label: "io.peerlink.path-monitor")
    private var pump: Task<Void, Never>?

    /// Throws `PeerlinkError.Config(field:detail:)` if the configuration is refused.
    public init(provider: NEPacketTunnelProvider, config: EngineConfig) throws {
        self.provider = provider
        // Apple needs no socket protection: the extension's own traffic bypasses its tunnel.
        let engine = try Engine(config: config, platform: nil)
        self.engine = engine
        model = TunnelModel(engine: engine)
        let (stream, continuation) = AsyncStream.makeStream(
            of: TunnelUpdate.self, bufferingPolicy: .bufferingNewest(Self.bufferedUpdates))
        updates = stream
        self.continuation = continuation
    }

    /// Applies the network settings, then starts the engine on the extension's utun.
    public func start() async throws {
        guard let provider else { throw Failure.providerGone }
        let settings = try Self.networkSettings(model.interfaceSettings())
        try await provider.setTunnelNetworkSettings(settings)
        guard let fd = findUtunFd() else {
            Self.log.error("no utun descriptor after applying the network settings")
            throw Failure.noUtunFd
        }
        // The utun belongs to the extension (the engine borrows it on Apple platforms).
        try model.start(tunFd: fd)
        Self.log.info("engine started on utun fd \(fd, privacy: .public)")
        startPump()
        startPathMonitor()
    }

    /// Replaces the peers; re-applies the network settings if their routes changed. The utun
    /// and its fd stay the same when settings are re-applied, so the engine keeps running.
    public func updatePeers(_ peers: [PeerConfig]) async throws {
        guard try model.updatePeers(peers: peers), let provider else { return }
        try await provider.setTunnelNetworkSettings(Self.networkSettings(model.interfaceSettings()))
    }

    /// Stops following the network, stops the engine (bounded: a few seconds at worst) and
    /// finishes `updates` once the engine's last event is delivered.
    public func stop() async {
        monitor.cancel()
        do {
            try await model.stop()
        } catch {
            Self.log.error("stop failed: \(String(describing: error), privacy: .public)")
        }
        await pump?.value
        pump = nil
        continuation.finish()
    }

    private func startPump() {
        let model = self.model
        let continuation = self.continuation
        pump = Task.detached { [weak self] in
            // nil once the engine has stopped and every event before that was read.
            while let update = await model.nextUpdate() {
                if case .interfaceChanged = update.event {
                    await self?.applyManagedSettings()
                }
                if case .dropped = continuation.yield(update) {
                    model.eventsDropped(count: 1)
                }
            }
        }
    }

    /// Management changed the interface: re-apply the settings on the same utun.
    private func applyManagedSettings() async {
        guard let provider else { return }
        do {
            let settings = try Self.networkSettings(model.interfaceSettings())
            try await provider.setTunnelNetworkSettings(settings)
        } catch {
            Self.log.error(
                "applying management's interface settings failed: \(String(describing: error), privacy: .public)")
        }
    }

    /// The model tells the engine when the path's status or interfaces change (Wi-Fi to
    /// cellular, say); flag-only updates (expensive, constrained) are not news. The handler
    /// holds only the model, which is thread-safe: nothing here is shared unsynchronised.
    private func startPathMonitor() {
        let model = self.model
        monitor.pathUpdateHandler = { path in
            if path.status == .satisfied {
                model.networkAvailable(
                    network: Self.pathNetwork, addresses: path.availableInterfaces.map(\.name))
            } else {
                model.networkLost(network: Self.pathNetwork)
            }
        }
        monitor.start(queue: monitorQueue)
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
