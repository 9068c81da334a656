// swift-tools-version:5.9
// The peerlink engine for a NEPacketTunnelProvider. Build the binary first, on a Mac:
//   ios/build-xcframework.sh
// It writes build/peerlinkFFI.xcframework (not committed): the Rust library (device +
// simulator) with uniffi's C header peerlinkFFI.h and its module map, i.e. the `peerlinkFFI`
// module. The Swift half of the bindings, Sources/Peerlink/Generated/Peerlink.swift, is
// committed and compiles in the Peerlink target (tests/mobile-checks.sh keeps it current).
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
