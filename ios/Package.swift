// swift-tools-version:5.9
// The peerlink engine for a NEPacketTunnelProvider. Build the binary first, on a Mac:
//   ios/build-xcframework.sh
// It writes build/peerlinkFFI.xcframework (the Rust library: device + simulator) and
// Sources/Peerlink/Generated/Peerlink.swift (its uniffi bindings); neither is committed.
import PackageDescription

let package = Package(
    name: "Peerlink",
    platforms: [.iOS(.v15)],
    products: [
        .library(name: "Peerlink", targets: ["Peerlink"]),
    ],
    targets: [
        .binaryTarget(name: "peerlinkFFI", path: "build/peerlinkFFI.xcframework"),
        .target(
            name: "Peerlink",
            dependencies: ["peerlinkFFI"],
            path: "Sources/Peerlink"
        ),
    ],
    // Swift 5 language mode: uniffi 0.32's generated code is not checked against Swift 6's
    // strict concurrency (DESIGN §12).
    swiftLanguageVersions: [.v5]
)
