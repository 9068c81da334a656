#!/usr/bin/env bash
# macOS with Xcode only. Builds the Rust library for iOS devices (arm64) and the simulator
# (arm64 + x86_64) as static libraries, packs them into build/peerlinkFFI.xcframework with the
# uniffi C header and module map, and checks that the Swift bindings generated from it are the
# committed Sources/Peerlink/Generated/Peerlink.swift (the interface is the same on every
# platform; tests/mobile-checks.sh checks the same file against the Linux build).
set -euo pipefail

if [ "$(uname -s)" != Darwin ]; then
  echo "build-xcframework.sh needs macOS with Xcode (xcodebuild, lipo, the iOS SDKs)" >&2
  exit 1
fi

ios=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$ios")
out=$ios/build
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
# The oldest iOS the package supports (Package.swift: .iOS(.v15)).
export IPHONEOS_DEPLOYMENT_TARGET=15.0
# A Network Extension may only use extension-safe API. This reaches the linker only where rustc
# links (the crate's cdylib, built alongside); the static library's final link is the
# extension's own, where Xcode passes the same flag.
export RUSTFLAGS="-C link-arg=-Wl,-application_extension"

device=aarch64-apple-ios
simulators=(aarch64-apple-ios-sim x86_64-apple-ios)
rustup target add "$device" "${simulators[@]}"
for target in "$device" "${simulators[@]}"; do
  cargo build --manifest-path "$root/Cargo.toml" -p peerlink-ffi --lib --release --target "$target"
done
lib() { echo "$CARGO_TARGET_DIR/$1/release/libpeerlink_ffi.a"; }

rm -rf "$out"
mkdir -p "$out/headers" "$out/simulator"

# Bindings from the device library: the header and module map go into the XCFramework.
"$root/bindings/generate.sh" --lib "$(lib "$device")" --swift "$out/swift"
cp "$out/swift/peerlinkFFI.h" "$out/headers/"
# An xcframework's headers folder must name its module map module.modulemap.
cp "$out/swift/peerlinkFFI.modulemap" "$out/headers/module.modulemap"

# One simulator slice holds both architectures.
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output "$out/simulator/libpeerlink_ffi.a"

xcodebuild -create-xcframework \
  -library "$(lib "$device")" -headers "$out/headers" \
  -library "$out/simulator/libpeerlink_ffi.a" -headers "$out/headers" \
  -output "$out/peerlinkFFI.xcframework"

# The header above and the committed Swift must describe the same library.
if ! diff -u "$ios/Sources/Peerlink/Generated/Peerlink.swift" "$out/swift/Peerlink.swift"; then
  echo "the Swift generated from the iOS library differs from the committed" \
    "Sources/Peerlink/Generated/Peerlink.swift: stale (bindings/generate.sh --swift-source" \
    "ios/Sources/Peerlink/Generated, commit) or the exported API differs between platforms" >&2
  exit 1
fi
echo "built $out/peerlinkFFI.xcframework; Sources/Peerlink/Generated/Peerlink.swift is current"
