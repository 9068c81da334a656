#!/usr/bin/env bash
# Every peerlink test, on a fresh machine: installs what the suites need, then runs
#   1. formatting and clippy (-D warnings),
#   2. the cargo tests of the workspace (unit, in-process engines, real NetBird servers),
#   3. the lab suites in network namespaces (root only; they skip with a reason otherwise),
#   4. the JVM tests of the Kotlin layer and the Android classes compiled against android-all
#      (tests/jvm.sh --android-typecheck), when Java and Maven are present,
#   5. the mobile checks (tests/mobile-checks.sh): committed Swift bindings current, clippy for
#      aarch64-linux-android.
# Ends with one line "all: N passed, N failed, N skipped"; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log_dir=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-tests.XXXXXX")
passed=0 failed=0 skipped=0
failures=()

step() { printf '\n==> %s\n' "$*"; }

# record NAME STATUS: a whole step that has no counts of its own.
record() {
    if [[ $2 -eq 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}

# add_counts LOG NAME STATUS: add "N passed, N failed" lines (cargo's and the lab's) from LOG.
add_counts() {
    local log=$1 name=$2 status=$3 p f s
    p=$(grep -oE '(ok\.|FAILED\.) [0-9]+ passed' "$log" | awk '{s+=$2} END {print s+0}')
    f=$(grep -oE '[0-9]+ passed; [0-9]+ failed' "$log" | awk '{s+=$3} END {print s+0}')
    s=$(grep -cE '^skip(ping)?:' "$log")
    if [[ $p -eq 0 && $f -eq 0 ]]; then
        p=$(grep -oE '^[a-z_]+: [0-9]+ passed, [0-9]+ failed' "$log" | awk '{s+=$2} END {print s+0}')
        f=$(grep -oE '^[a-z_]+: [0-9]+ passed, [0-9]+ failed' "$log" | awk '{s+=$4} END {print s+0}')
    fi
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    if [[ $status -ne 0 ]]; then
        failures+=("$name")
        [[ $f -eq 0 ]] && failed=$((failed + 1))
    fi
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
if ((${#need[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "installing: ${need[*]}"
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
        record "apt-get install" $?
    else
        echo "skip: cannot install ${need[*]} (not root); suites that need them will skip"
        skipped=$((skipped + 1))
    fi
fi

step "Go lab tools (NetBird signal and relay v0.77.1, wireguard-go)"
if command -v go >/dev/null || [[ -x /usr/local/go/bin/go ]]; then
    PATH=$PATH:/usr/local/go/bin bash tests/lab/build-tools.sh
    record "build-tools" $?
else
    echo "skip: no Go toolchain; suites against NetBird's servers and wireguard-go will skip"
    skipped=$((skipped + 1))
fi

step "rustfmt"
cargo fmt --all -- --check
record "cargo fmt" $?

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
record "cargo clippy" $?

step "cargo test"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log_dir/cargo-test.log"
add_counts "$log_dir/cargo-test.log" "cargo test" "${PIPESTATUS[0]}"

step "lab suites (network namespaces)"
cargo build --release --locked -p peerlink-cli
record "release build" $?
for suite in tests/lab/netns_*.sh; do
    name=$(basename "$suite" .sh)
    step "lab: $name"
    timeout 600 bash "$suite" 2>&1 | tee "$log_dir/$name.log"
    add_counts "$log_dir/$name.log" "$name" "${PIPESTATUS[0]}"
done

if [[ -x tests/jvm.sh ]]; then
    step "JVM tests of the Kotlin layer, Android classes type-checked"
    bash tests/jvm.sh --android-typecheck 2>&1 | tee "$log_dir/jvm.log"
    status=${PIPESTATUS[0]}
    p=$(grep -oE 'Tests run: [0-9]+, Failures: [0-9]+, Errors: [0-9]+, Skipped: [0-9]+$' "$log_dir/jvm.log" | tail -n 1)
    if [[ -n $p ]]; then
        read -r run fails errs skips < <(echo "$p" | grep -oE '[0-9]+' | tr '\n' ' ')
        passed=$((passed + run - fails - errs - skips)) failed=$((failed + fails + errs)) skipped=$((skipped + skips))
        [[ $status -ne 0 ]] && failures+=("jvm")
    else
        record "jvm" "$status"
    fi
fi

step "mobile checks (Swift bindings current, aarch64-linux-android clippy)"
bash tests/mobile-checks.sh 2>&1 | tee "$log_dir/mobile-checks.log"
record "mobile-checks" "${PIPESTATUS[0]}"

echo
((${#failures[@]})) && echo "failed steps: ${failures[*]} (logs in $log_dir)"
echo "all: $passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 && ${#failures[@]} -eq 0 ]]
