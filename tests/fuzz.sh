#!/usr/bin/env bash
# Fuzzes every parser that reads outside bytes (fuzz/, cargo fuzz on the nightly toolchain):
# builds the targets once, replays each target's committed corpus (fuzz/corpus/TARGET), then
# fuzzes each for FUZZ_SECONDS (default 15) from that corpus. A crash, a failed assertion or a
# hang fails its target; the input is kept under fuzz/artifacts/TARGET/ and printed in base64.
# One line per target, "fuzz TARGET: passed|failed ...", then "fuzz: N passed, N failed".
#   FUZZ_SECONDS=300 bash tests/fuzz.sh signal_body   # one target, longer
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
source tests/lab/skip.sh

# Pinned: the cargo-fuzz this script was written against (0.13.1, built from crates.io).
CARGO_FUZZ_VERSION=0.13.1
seconds=${FUZZ_SECONDS:-15}
# libFuzzer's per-input limit: generous for the simulation's longest event sequences.
per_input_timeout=30
# No sanitizer: the targets are safe Rust whose findings are panics; the data plane's few
# unsafe calls (sockets, tun) take no fuzzed lengths. ASan would double the build time, and
# 16 codegen units (cargo fuzz forces 1 in release) cut the cold build for short CI runs.
# Debug assertions and overflow checks: in peerlink's code only (fuzz/Cargo.toml's profile).
build_flags=(--sanitizer none --release --codegen-units 16)

if ! cargo +nightly --version >/dev/null 2>&1; then
    skip_or_fail fuzz "no nightly toolchain (rustup toolchain install nightly)"
    exit $?
fi
if [[ $(cargo fuzz --version 2>/dev/null) != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    if ! cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" >/dev/null; then
        echo "fuzz: 0 passed, 1 failed (cargo-fuzz did not install)"
        exit 1
    fi
fi

mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
if (($#)); then
    targets=("$@")
fi
echo "building ${#targets[@]} fuzz targets"
if ! (cd fuzz && cargo +nightly fuzz build "${build_flags[@]}"); then
    echo "fuzz: 0 passed, 1 failed (the targets did not build)"
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
for target in "${targets[@]}"; do
    seeds=fuzz/corpus/$target
    artifacts=fuzz/artifacts/$target
    mkdir -p "$work/$target" "$artifacts"
    log=$work/$target.log
    # The replay first: every committed input (earlier findings among them) must pass.
    # New inputs go to the scratch corpus, the first directory, never to the committed one.
    if (cd fuzz && cargo +nightly fuzz run "${build_flags[@]}" "$target" "../$seeds" -- \
        -runs=0 -timeout=$per_input_timeout -artifact_prefix="../$artifacts/") >"$log" 2>&1 &&
        (cd fuzz && cargo +nightly fuzz run "${build_flags[@]}" "$target" "$work/$target" "../$seeds" -- \
            -max_total_time="$seconds" -timeout=$per_input_timeout -rss_limit_mb=2048 \
            -artifact_prefix="../$artifacts/" -print_final_stats=1) >>"$log" 2>&1; then
        runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
        corpus=$(find "$work/$target" -type f | wc -l)
        echo "fuzz $target: passed (${runs:-?} runs in ${seconds} s, $corpus new inputs)"
        passed=$((passed + 1))
    else
        echo "fuzz $target: failed"
        grep -A1 'panicked at' "$log" | head -2 | cut -c1-400 | sed 's/^/    /'
        grep -E 'ERROR: libFuzzer|Test unit written to' "$log" | head -3 | sed 's/^/    /'
        crash=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //')
        if [[ -n $crash && -f fuzz/$crash ]]; then
            echo "    input (base64): $(base64 -w0 "fuzz/$crash" | head -c 2000)"
        fi
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
((failed == 0))
