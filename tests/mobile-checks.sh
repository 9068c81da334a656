#!/usr/bin/env bash
# Mobile checks that need neither an Android SDK nor a Mac (run by tests/run.sh):
#   1. the committed Swift bindings (ios/Sources/Peerlink/Generated/) are exactly what
#      bindings/generate.sh makes from the current Rust API (the exported interface is the same
#      on every platform, so the host build's Swift is the real one); Kotlin is generated too,
#      into a temporary folder, to prove it generates;
#   2. clippy -D warnings (a type check and more) of the workspace but cli (a Linux binary) for
#      aarch64-linux-android, so Android-only code (cfg(target_os = "android")) is compiled. Installs what it needs:
#      the Rust target (rustup) and, as root, Debian's clang and arm64 libc headers, which let
#      the C parts of dependencies (ring) compile without the NDK (nothing is linked);
#   3. clippy -D warnings of peerlink-ffi (and core under it) for aarch64-apple-ios, so every
#      Apple-only cfg block (utun discovery, the AF header framing, the oslog writer) is compiled.
#      A type check, not a build: there is no Apple SDK here, so the C parts of ring and oslog go
#      through tests/mobile/stand-in-cc.sh, which writes empty objects. aarch64-apple-ios-sim is
#      checked too where rustup can install it (its rust-std is not served on every mirror).
# Ends with one line per check and exits non-zero if any failed.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
cd "$root"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-mobile.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
results=()
status=0
result() { # result NAME OK|FAILED DETAIL
    results+=("$1: $2${3:+ ($3)}")
    [[ $2 == ok || $2 == skipped ]] || status=1
}

# --- 1. generated bindings --------------------------------------------------------------------
swift_dir=ios/Sources/Peerlink/Generated
echo "==> bindings: generate Swift and Kotlin from the host debug build"
# Only the .swift file is committed (in the Swift target); the header and module map go into
# the XCFramework (ios/build-xcframework.sh).
if bindings/generate.sh --swift-source "$tmp/swift" --kotlin "$tmp/kotlin"; then
    if diff -ru "$swift_dir" "$tmp/swift"; then
        result swift ok "$swift_dir is current"
    else
        stale="generated Swift is stale: run bindings/generate.sh --swift-source $swift_dir and commit"
        echo "$stale" >&2
        result swift FAILED "$stale"
    fi
    if [[ -n $(find "$tmp/kotlin" -name '*.kt' -size +1k) ]]; then
        result kotlin ok "generated"
    else
        result kotlin FAILED "no Kotlin generated"
    fi
else
    result swift FAILED "bindings/generate.sh failed"
    result kotlin FAILED "bindings/generate.sh failed"
fi

# --- 2. Android type check ---------------------------------------------------------------------
target=aarch64-linux-android
echo "==> $target: cargo clippy --workspace"
android_ok=1
if ! rustup target add "$target"; then
    android_ok=0
    result android FAILED "rustup target add $target failed"
fi
sysroot=/usr/aarch64-linux-gnu/include
need=()
command -v clang >/dev/null || need+=(clang)
[[ -f $sysroot/stdlib.h ]] || need+=(libc6-dev-arm64-cross)
if ((android_ok && ${#need[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "installing: ${need[*]}"
        if ! { apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }; then
            android_ok=0
            result android FAILED "apt-get install ${need[*]} failed"
        fi
    else
        android_ok=0
        result android FAILED "needs ${need[*]} (not root: install them)"
    fi
fi
if ((android_ok)); then
    # No NDK here: clang compiles the C of dependencies for Android against glibc's arm64 headers
    # instead of bionic's (-nostdlibinc keeps clang's own stdint.h/stddef.h, drops the host's
    # /usr/include). Good enough to type-check; nothing is linked, nothing should run.
    export CC_aarch64_linux_android=clang
    export AR_aarch64_linux_android=${AR_aarch64_linux_android:-llvm-ar}
    command -v llvm-ar >/dev/null || AR_aarch64_linux_android=ar
    export CFLAGS_aarch64_linux_android="--target=aarch64-linux-android24 -nostdlibinc -isystem $sysroot"
    # Not cli: it is a Linux binary on core's Linux tun (peerlink_core::tun::linux exists for
    # target_os = "linux" only; Android's target_os is "android") and never ships on Android.
    what="cargo clippy --workspace --exclude peerlink-cli --target $target -D warnings"
    if cargo clippy --workspace --exclude peerlink-cli --target "$target" --locked -- -D warnings; then
        result android ok "$what"
    else
        result android FAILED "$what"
    fi
fi

# --- 3. iOS type check ---------------------------------------------------------------------------
# No SDK and no Apple clang here: the stand-in compiler answers cc's probes and writes empty
# objects, and SDKROOT names an empty folder so cc does not look for xcrun. Type check only.
ios_sdk=$tmp/iPhoneOS.sdk
mkdir -p "$ios_sdk"
for target in aarch64-apple-ios aarch64-apple-ios-sim; do
    echo "==> $target: cargo clippy -p peerlink-ffi"
    if ! rustup target add "$target"; then
        if [[ $target == aarch64-apple-ios-sim ]]; then
            # Not a missing tool to install: the simulator's rust-std is not served here (404).
            echo "SKIP: mobile-checks::$target: rustup cannot install its rust-std here"
            result "$target" skipped "rustup cannot install its rust-std here"
        else
            result "$target" FAILED "rustup target add $target failed"
        fi
        continue
    fi
    env_target=${target//-/_}
    what="cargo clippy -p peerlink-ffi --target $target -D warnings (type check, stand-in C compiler)"
    if env "CC_$env_target=$root/tests/mobile/stand-in-cc.sh" "AR_$env_target=ar" SDKROOT="$ios_sdk" \
        cargo clippy -p peerlink-ffi --target "$target" --locked -- -D warnings; then
        result "$target" ok "$what"
    else
        result "$target" FAILED "$what"
    fi
done

echo
printf 'mobile-checks: %s\n' "${results[@]}"
exit "$status"
