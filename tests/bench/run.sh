#!/usr/bin/env bash
# Every figure of DESIGN §9 that can be measured here, one line each (issue 14):
#
#   NAME VALUE UNIT anchor=LABEL:VALUE ratio=X runs=N [anchor2=… ratio2=…] [min=… max=…] [KEY=…]
#
# VALUE is the median of N runs; the anchor (wireguard-go, boringtun-cli, where there is one) is
# measured in the same runs and the ratio is the median of the per-run ratios (anchor=- ratio=-
# where there is none). The machine is shared with other builds, so absolute figures are noisy:
# compare the ratios. Runs the scripts beside this one and collects their `sample` lines
# (tests/bench/figures.py):
#   build       release cdylib stripped (cargo build --release -p peerlink-ffi, then strip)
#   memory      tests/bench/memory.sh: one engine, 100 peers on direct paths (in-process)
#   start       tests/bench/start.sh: start -> first reply, one LAN / two NATs over ICE, relay only
#   watcher     tests/bench/watcher.sh: stale ICE path / stale relay / remote restart / roam -> traffic
#   throughput  tests/bench/throughput.sh: direct and ICE P2P paths vs wireguard-go and boringtun-cli,
#               and CPU time per GB at 500 Mbit/s
#   peers       tests/bench/idle.sh N=100 MODES=open: resident memory with 100 peers over ICE
#   idle        tests/bench/idle.sh N=20: wake-ups/s, connected over ICE and idle (lazy)
#   soak        tests/bench/soak.sh: false stale verdicts in SOAK_SECS (600) with loss and restarts
# Root for everything but build and memory (the rest skips with a reason, see tests/lab/skip.sh).
# Usage: tests/bench/run.sh [--readme]
#   --readme   also rewrite README.md's figures table from this run (tests/bench/figures.py readme)
#   QUICK=1    one run each with short windows and fewer peers: checks the script end to end
#   ONLY="…"   the sections to run (default: all, in the order above)
#   OUT=FILE   where the figure lines go as well (default $TMPDIR/peerlink-figures.txt)
#   BORINGTUN_INSTALL=0  no boringtun-cli anchor unless it is already built (by default it is
#              installed once from crates.io, `cargo install boringtun-cli --version 0.7.1`, into
#              the lab tools' cache; see throughput.sh)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
HERE=tests/bench
README=0
[[ ${1:-} == --readme ]] && README=1
QUICK=${QUICK:-0}
ONLY=${ONLY:-build memory start watcher throughput peers idle soak}
OUT=${OUT:-${TMPDIR:-/tmp}/peerlink-figures.txt}
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-bench.XXXXXX")
: >"$LOGS/samples"
if ((QUICK)); then
    START_RUNS=1 WATCH_RUNS=1 TP_RUNS=1 TP_SECS=3 PACED=3 PEERS=10 IDLE_N=3 IDLE_WINDOW=10 SOAK=${SOAK_SECS:-60}
else
    START_RUNS=10 WATCH_RUNS=10 TP_RUNS=3 TP_SECS=10 PACED=10 PEERS=100 IDLE_N=20 IDLE_WINDOW=60 SOAK=${SOAK_SECS:-600}
fi

want() { [[ " $ONLY " == *" $1 "* ]]; }

# section NAME CMD...: run CMD, its output in $LOGS/NAME.log; keep its sample lines (through the
# filter SAMPLE_FILTER, a grep -E pattern of the names to keep) and show its skips and failures.
section() {
    local name=$1 t0=$SECONDS
    shift
    echo "# $name: $*" >&2
    "$@" >"$LOGS/$name.log" 2>&1
    local rc=$?
    grep '^sample ' "$LOGS/$name.log" | grep -E "^sample (${SAMPLE_FILTER:-.*}) " >>"$LOGS/samples"
    grep -E '^(SKIP|FAIL|not ok)' "$LOGS/$name.log" | sed "s/^/# $name: /" >&2
    echo "# $name: exit $rc after $((SECONDS - t0)) s, log $LOGS/$name.log" >&2
}

if [[ -z ${PEERLINK:-} ]]; then
    cargo build -q --release --locked -p peerlink-cli || exit 1
fi

if want build; then
    # Built as a release app would ship it, stripped of symbols (the app's build strips too).
    if cargo build -q --release --locked -p peerlink-ffi >"$LOGS/build.log" 2>&1; then
        so=${CARGO_TARGET_DIR:-$ROOT/target}/release/libpeerlink_ffi.so
        strip -o "$LOGS/libpeerlink_ffi.so" "$so"
        awk -v b="$(stat -c %s "$LOGS/libpeerlink_ffi.so")" -v u="$(stat -c %s "$so")" 'BEGIN {
            printf "sample cdylib_stripped %.2f MiB unstripped_mib=%.2f\n", b / 1048576, u / 1048576 }' >>"$LOGS/samples"
    else
        echo "# build: cargo build --release -p peerlink-ffi failed, log $LOGS/build.log" >&2
    fi
fi
want memory && section memory bash "$HERE/memory.sh" "$PEERS"
want start && section start env RUNS="$START_RUNS" bash "$HERE/start.sh"
want watcher && section watcher env RUNS="$WATCH_RUNS" SOAK_RUNS=0 bash "$HERE/watcher.sh"
want throughput && section throughput env INPROCESS=0 BORINGTUN_INSTALL="${BORINGTUN_INSTALL:-1}" RUNS="$TP_RUNS" SECS="$TP_SECS" PACED_SECS="$PACED" bash "$HERE/throughput.sh"
want peers && SAMPLE_FILTER=memory_peers_ice section peers env N="$PEERS" MODES=open WINDOW=10 bash "$HERE/idle.sh"
want idle && SAMPLE_FILTER='idle_wakeups_.*' section idle env N="$IDLE_N" MODES="open idle" WINDOW="$IDLE_WINDOW" bash "$HERE/idle.sh"
want soak && section soak env SOAK_SECS="$SOAK" bash "$HERE/soak.sh"

{
    echo "# peerlink figures, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?), QUICK=$QUICK, $(nproc) cores; logs $LOGS"
    python3 "$HERE/figures.py" summarize <"$LOGS/samples"
} | tee "$OUT"
if ((README)); then
    python3 "$HERE/figures.py" readme README.md "$OUT" && echo "# README.md's figures table rewritten from $OUT" >&2
fi
