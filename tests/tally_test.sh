#!/usr/bin/env bash
# tests/tally.sh on sample logs: skipped cargo tests leave passed for skipped, lab and jvm skips
# are counted once per name, failures count, and the closing line names every skip.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/lab/skip.sh
source tests/tally.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-tally.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
bad=0

# expect WHAT WANT GOT
expect() {
    if [[ $2 == "$3" ]]; then
        echo "ok - $1"
    else
        printf 'not ok - %s\n    want: %s\n    got:  %s\n' "$1" "$2" "$3"
        bad=1
    fi
}

# Two test binaries: 5 + 3 reported ok, of which two returned early after skipping (their lines
# are in the skip file only, as libtest captured their output); one failed.
cat >"$tmp/cargo.log" <<'LOG'
running 5 tests
test relay_netbird::burst ... ok
test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s
running 4 tests
test signal_netbird::x ... FAILED
test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 2.00s
LOG
cat >"$tmp/cargo.skips" <<'LOG'
SKIP: relay_netbird::two_clients_exchange: nb-relay not built (run tests/lab/build-tools.sh or set PEERLINK_NB_RELAY)
SKIP: signal_netbird::interop: nb-signal-peer not built: see tests/lab/build-tools.sh
LOG
tally "$tmp/cargo.log" "cargo test" 101 "$tmp/cargo.skips"
expect "cargo: skipped tests are not passes" "6 1 2" "$passed $failed $skipped"
expect "cargo: a failing run names its step" "cargo test" "${failures[*]}"

# A lab suite that skipped as a whole: printed and appended (counted once), no counts.
echo "SKIP: netns_ice: coturn missing (apt-get install -y coturn)" | tee "$tmp/ice.log" >"$tmp/ice.skips"
tally "$tmp/ice.log" netns_ice 0 "$tmp/ice.skips"
expect "lab: a skipped suite is one skip, not a pass" "6 1 3" "$passed $failed $skipped"

# A lab suite that ran, with no skip file.
printf 'ok - a\nnot ok - b\nnetns_wireguard: 4 passed, 1 failed\n' >"$tmp/wg.log"
tally "$tmp/wg.log" netns_wireguard 1
expect "lab: its own counts" "10 2 3" "$passed $failed $skipped"

# jvm: its summary excludes skipped tests already; the skip is named in the log.
printf 'SKIP: jvm::io.peerlink.NetBirdSignalTest.offer: nb-signal not found\njvm: 7 passed, 0 failed, 1 skipped\n' >"$tmp/jvm.log"
tally "$tmp/jvm.log" jvm 0 "$tmp/none.skips"
expect "jvm: skipped tests are not passes" "17 2 4" "$passed $failed $skipped"

# In CI a missing tool fails the step.
CI=true PEERLINK_SKIP_LOG=$tmp/ci.skips skip_or_fail build-tools "no Go toolchain" >"$tmp/ci.log"
ci_status=$?
expect "CI: skip_or_fail fails" "1 FAIL: build-tools: no Go toolchain (in CI a missing lab tool is a failure)" \
    "$ci_status $(cat "$tmp/ci.log")"
expect "CI: nothing recorded as skipped" "no" "$([[ -e $tmp/ci.skips ]] && echo yes || echo no)"
tally "$tmp/ci.log" build-tools "$ci_status" "$tmp/ci.skips"
expect "CI: counted as a failure" "17 3 4" "$passed $failed $skipped"

# Outside CI it records the skip and succeeds.
CI= PEERLINK_SKIP_LOG=$tmp/local.skips skip_or_fail packages "not root" >/dev/null
expect "local: skip_or_fail records" "0 SKIP: packages: not root" "$? $(cat "$tmp/local.skips")"

expect "the closing line names every skip" \
    "all: 17 passed, 3 failed, 4 skipped (skipped: relay_netbird::two_clients_exchange, signal_netbird::interop, netns_ice, jvm::io.peerlink.NetBirdSignalTest.offer)" \
    "$(summary)"

exit "$bad"
