#!/usr/bin/env bash
# The watcher's figures (DESIGN §9), from the lab suite tests/lab/netns_watcher.sh run again and
# again (root, network namespaces; the suite skips with a reason otherwise):
#   stale ice-p2p -> traffic again   case (a), RUNS runs: median and worst (target ≤ 5 s)
#   fault removed -> ice-p2p again   case (f), RUNS runs: median and worst
#   stale relay -> traffic again     case (b), RUNS runs: median and worst
#   remote restart -> traffic again  case (c), RUNS runs: median and worst (and -> ice-p2p again)
#   roam -> traffic again            case (d), RUNS runs: median and worst (target ≤ 1 s; and
#                                    -> ice-p2p again)
#   false verdicts in the soak       case (e), SOAK_RUNS runs of SOAK_SECS s at 5 % loss (target 0)
# Environment: RUNS (default 10), SOAK_RUNS (default 1), SOAK_SECS (default 600: the figure is
# for a 10-minute soak), STALE_BOUND, HEAL_BOUND, RESTART_BOUND and ROAM_BOUND as in the suite. A run that did not recover
# within the suite's bound counts as "> bound" (and makes the worst figure that).
# Prints a `sample` line per figure of every run (tests/bench/figures.py; tests/bench/run.sh
# collects them), then the summary lines.
# Usage: tests/bench/watcher.sh   (the release CLI must be built: cargo build --release -p peerlink-cli)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SUITE=$ROOT/tests/lab/netns_watcher.sh
RUNS=${RUNS:-10}
SOAK_RUNS=${SOAK_RUNS:-1}
export SOAK_SECS=${SOAK_SECS:-600}
export STALE_BOUND=${STALE_BOUND:-20} HEAL_BOUND=${HEAL_BOUND:-60}
export RESTART_BOUND=${RESTART_BOUND:-20} ROAM_BOUND=${ROAM_BOUND:-20}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-bench-watcher.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
: >"$TMP/figures"

# run CASES N: run the suite N times on CASES; keep its figure lines; stop early on a skip.
run() {
    local cases=$1 n=$2 i
    for ((i = 1; i <= n; i++)); do
        WATCHER_ONLY=$cases bash "$SUITE" >"$TMP/run.log" 2>&1
        if grep -q '^skip:' "$TMP/run.log"; then
            grep '^skip:' "$TMP/run.log"
            exit 0
        fi
        grep '^figure:' "$TMP/run.log" | tee -a "$TMP/figures" | sed "s/^/# $cases run $i: /"
        grep '^figure:' "$TMP/run.log" | samples
        grep -E '^(not ok|netns_watcher:)' "$TMP/run.log" | sed "s/^/# $cases run $i: /"
    done
}

# samples: the suite's figure lines on stdin as `sample NAME VALUE UNIT` lines; a case that did
# not recover within its bound ("none within", "not within") is `fail`.
samples() {
    awk '
        function out(name, v, unit) { printf "sample %s %s %s\n", name, (v ~ /^[0-9.]+$/ ? v : "fail"), unit }
        /^figure: soak / { for (i = 1; i <= NF; i++) if ($i == "false" && $(i + 1) == "verdicts") out("soak_loss_only_false_verdicts", $(i - 1), "count"); next }
        {
            line = substr($0, 9); split(line, kv, ": "); what = kv[1]; split(kv[2], v, " ")
            name = what
            sub(/ -> traffic on ice-p2p again$/, "_to_ice_p2p", name)
            sub(/ -> traffic again$/, "_to_traffic", name)
            sub(/ -> ice-p2p again$/, "_to_ice_p2p", name)
            gsub(/[ -]/, "_", name)
            out(name, v[1], "s")
        }'
}

((RUNS > 0)) && run "a b c d" "$RUNS"
((SOAK_RUNS > 0)) && run e "$SOAK_RUNS"

# summary PREFIX BOUND TARGET: median and worst of the seconds after PREFIX ("none"/"not" = > BOUND).
summary() {
    local prefix=$1 bound=$2 target=$3
    grep -F "figure: $prefix: " "$TMP/figures" | sed "s/^figure: $prefix: //" | awk -v b="$bound" '
        { v[NR] = ($1 ~ /^[0-9.]+$/) ? $1 + 0 : 1e9; if (v[NR] == 1e9) miss++ }
        END {
            if (NR == 0) { print "no runs"; exit }
            for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            m = v[int((NR + 1) / 2)]; w = v[NR]
            printf "median %s, worst %s of %d runs (%d without recovery within %d s)\n",
                (m == 1e9 ? "> " b " s" : sprintf("%.1f s", m)), (w == 1e9 ? "> " b " s" : sprintf("%.1f s", w)), NR, miss + 0, b
        }' | sed "s/^/figure: $prefix: /; s/\$/${target:+, target $target}/"
}

echo
if ((RUNS > 0)); then
    summary "stale ice-p2p -> traffic again" "$STALE_BOUND" "≤ 5 s"
    summary "fault removed -> traffic on ice-p2p again" "$HEAL_BOUND" ""
    summary "stale relay -> traffic again" "$STALE_BOUND" "≤ 5 s"
    summary "remote restart -> traffic again" "$RESTART_BOUND" ""
    summary "remote restart -> ice-p2p again" "$HEAL_BOUND" ""
    summary "roam -> traffic again" "$ROAM_BOUND" "≤ 1 s"
    summary "roam -> ice-p2p again" "$HEAL_BOUND" ""
fi
if ((SOAK_RUNS > 0)); then
    grep -F 'figure: soak ' "$TMP/figures" | awk -v secs="$SOAK_SECS" '
        { for (i = 1; i <= NF; i++) if ($i == "false" && $(i + 1) == "verdicts") { f += $(i - 1); n++ } }
        END { printf "figure: false verdicts in %d soak(s) of %d s at 5 %% loss: %d, target 0\n", n, secs, f }'
fi
