#!/usr/bin/env bash
# Builds peerlink-ffi and generates its Kotlin and/or Swift bindings from the built library
# (uniffi library mode: the library's metadata is the interface; there is no UDL).
#
#   bindings/generate.sh [--release] [--features F] [--lib PATH] [--kotlin DIR] [--swift DIR]
#                        [--swift-source DIR]
#
# --swift         the Swift file, the C header peerlinkFFI.h and its module map.
# --swift-source  the Swift file only: the committed ios/Sources/Peerlink/Generated/ is made with
#                 --swift-source ios/Sources/Peerlink/Generated (header and module map belong to
#                 the XCFramework, which ios/build-xcframework.sh builds with --swift).
# --lib   generate from this already built library instead of the host build
#         (ios/build-xcframework.sh passes its iOS device library).
# The exported interface is the same on every platform, so the host build's Swift is the real
# one: ios/Sources/Peerlink/Generated/Peerlink.swift is committed and tests/mobile-checks.sh
# fails if it is stale. Nothing else generated is committed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

profile=debug
release_flag=()
features=""
lib=""
kotlin_out=""
swift_out=""
swift_source_out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release; release_flag=(--release) ;;
    --features) features=$2; shift ;;
    --lib) lib=$2; shift ;;
    --kotlin) kotlin_out=$2; shift ;;
    --swift) swift_out=$2; shift ;;
    --swift-source) swift_source_out=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$kotlin_out" ] && [ -z "$swift_out" ] && [ -z "$swift_source_out" ]; then
  echo "nothing to generate: give --kotlin DIR, --swift DIR and/or --swift-source DIR" >&2
  exit 2
fi

cd "$root"
# The generator first: building it rebuilds the library with other features, and the library
# we generate from must be the one built with the features asked for.
cargo build -p peerlink-ffi --features bindgen --bin uniffi-bindgen
bindgen=$CARGO_TARGET_DIR/debug/uniffi-bindgen
if [ -z "$lib" ]; then
  cargo build -p peerlink-ffi --lib "${release_flag[@]}" ${features:+--features "$features"}
  case "$(uname -s)" in
    Darwin) lib=$CARGO_TARGET_DIR/$profile/libpeerlink_ffi.dylib ;;
    *) lib=$CARGO_TARGET_DIR/$profile/libpeerlink_ffi.so ;;
  esac
fi

# --no-format: ktlint and swiftformat are not needed to use the output.
if [ -n "$kotlin_out" ]; then
  mkdir -p "$kotlin_out"
  "$bindgen" generate "$lib" --language kotlin --out-dir "$kotlin_out" --no-format
fi
if [ -n "$swift_out" ]; then
  mkdir -p "$swift_out"
  "$bindgen" generate "$lib" --language swift --out-dir "$swift_out" --no-format
fi
if [ -n "$swift_source_out" ]; then
  swift_tmp=$(mktemp -d)
  "$bindgen" generate "$lib" --language swift --out-dir "$swift_tmp" --no-format
  mkdir -p "$swift_source_out"
  cp "$swift_tmp"/*.swift "$swift_source_out/"
  rm -rf "$swift_tmp"
fi
