#!/usr/bin/env bash
# Every peerlink test, on a fresh machine: installs what the suites need, then runs
#   1. formatting and clippy (-D warnings),
#   2. the cargo tests of the workspace (unit, in-process engines, real NetBird servers),
#   3. the lab suites in network namespaces (root only; they skip with a reason otherwise),
#   4. the JVM tests of the Kotlin layer, the Android classes under Robolectric, and the sample compiled against android-all
#      (tests/jvm.sh --android-typecheck), when Java and Maven are present,
#   5. the fuzz targets (tests/fuzz.sh): each corpus replayed, then 10 s of fuzzing per target,
#   6. the mobile checks (tests/mobile-checks.sh): committed Swift bindings current, clippy for
#      aarch64-linux-android and aarch64-apple-ios (a type check: no Apple SDK here).
# Ends with one line "all: N passed, N failed, N skipped (skipped: NAME, ...)" naming every test
# or suite that could not run here; exits non-zero if anything failed. With CI=true a missing lab
# tool (or root) is a failure, not a skip.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log_dir=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-tests.XXXXXX")
source tests/lab/skip.sh
# Each step runs with PEERLINK_SKIP_LOG=$log_dir/STEP.skips: every test of it that cannot run
# appends "SKIP: NAME: REASON" there, and tally counts and names them.
source tests/tally.sh

step() { printf '\n==> %s\n' "$*"; }

# run_skip NAME REASON: a step of this script cannot run (a failure in CI, see skip_or_fail).
run_skip() {
    local log=$log_dir/$1.log
    PEERLINK_SKIP_LOG=$log_dir/$1.skips skip_or_fail "$1" "$2" | tee "$log"
    tally "$log" "$1" "${PIPESTATUS[0]}" "$log_dir/$1.skips"
}

step "packages"
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v ping >/dev/null || need+=(iputils-ping)
command -v wg >/dev/null || need+=(wireguard-tools)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v openssl >/dev/null || need+=(openssl)
command -v turnserver >/dev/null || need+=(coturn)
command -v ss >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v conntrack >/dev/null || need+=(conntrack)
command -v jq >/dev/null || need+=(jq)
command -v gcc >/dev/null || need+=(gcc)
command -v python3 >/dev/null || need+=(python3) # tests/lab/flood.py, fwprobe.py
if ((${#need[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "installing: ${need[*]}"
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
        record "apt-get install" $?
    else
        run_skip packages "cannot install ${need[*]} (not root); suites that need them will skip"
    fi
fi

step "Go lab tools (NetBird signal, relay, combined server and client v0.77.1, wireguard-go)"
if command -v go >/dev/null || [[ -x /usr/local/go/bin/go ]]; then
    PATH=$PATH:/usr/local/go/bin bash tests/lab/build-tools.sh
    record "build-tools" $?
else
    run_skip build-tools "no Go toolchain; suites against NetBird's servers and wireguard-go will skip"
fi

step "rustfmt"
cargo fmt --all -- --check
record "cargo fmt" $?

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
record "cargo clippy" $?

step "test counting (tests/tally.sh)"
bash tests/tally_test.sh
record "tally_test" $?

step "benchmark figures: medians, ratios, the README table (tests/bench/figures_test.py)"
python3 tests/bench/figures_test.py
record "figures_test" $?

step "cargo test"
PEERLINK_SKIP_LOG=$log_dir/cargo-test.skips cargo test --workspace --locked --no-fail-fast 2>&1 |
    tee "$log_dir/cargo-test.log"
tally "$log_dir/cargo-test.log" "cargo test" "${PIPESTATUS[0]}" "$log_dir/cargo-test.skips"
[[ -s $log_dir/cargo-test.skips ]] && cat "$log_dir/cargo-test.skips"

step "lab suites (network namespaces)"
cargo build --release --locked -p peerlink-cli
record "release build" $?
for suite in tests/lab/netns_*.sh; do
    name=$(basename "$suite" .sh)
    step "lab: $name"
    PEERLINK_SKIP_LOG=$log_dir/$name.skips timeout 600 bash "$suite" 2>&1 | tee "$log_dir/$name.log"
    tally "$log_dir/$name.log" "$name" "${PIPESTATUS[0]}" "$log_dir/$name.skips"
done

if [[ -x tests/jvm.sh ]]; then
    step "JVM tests of the Kotlin layer, Android classes under Robolectric, the sample type-checked"
    PEERLINK_SKIP_LOG=$log_dir/jvm.skips bash tests/jvm.sh --android-typecheck 2>&1 | tee "$log_dir/jvm.log"
    tally "$log_dir/jvm.log" "jvm" "${PIPESTATUS[0]}" "$log_dir/jvm.skips"
fi

# Fuzzing (tests/fuzz.sh): every target's committed corpus replayed, then 10 s of fuzzing each
# (the nightly build of core is most of the step's cost; longer runs are for a developer).
step "fuzzing (cargo fuzz, nightly: corpus replay and 10 s per target)"
PEERLINK_SKIP_LOG=$log_dir/fuzz.skips FUZZ_SECONDS=10 bash tests/fuzz.sh 2>&1 | tee "$log_dir/fuzz.log"
tally "$log_dir/fuzz.log" "fuzz" "${PIPESTATUS[0]}" "$log_dir/fuzz.skips"

step "mobile checks (Swift bindings current, aarch64-linux-android and aarch64-apple-ios clippy)"
bash tests/mobile-checks.sh 2>&1 | tee "$log_dir/mobile-checks.log"
record "mobile-checks" "${PIPESTATUS[0]}"
# A check that could not run here (the iOS simulator's rust-std is not served) is a skip.
mapfile -t mobile_skips < <(skip_names_in <"$log_dir/mobile-checks.log")
skipped=$((skipped + ${#mobile_skips[@]}))
skip_names+=("${mobile_skips[@]}")

echo
((${#failures[@]})) && echo "failed steps: ${failures[*]} (logs in $log_dir)"
summary
[[ $failed -eq 0 && ${#failures[@]} -eq 0 ]]
