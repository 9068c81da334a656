# shellcheck shell=bash
# tests/run.sh's bookkeeping, sourced by it (and by tests/tally_test.sh): counts per step and the
# closing line. A test that cannot run prints "SKIP: NAME: REASON" at the start of a line and/or
# appends it to $PEERLINK_SKIP_LOG (core/tests/common/lab.rs, tests/lab/skip.sh).

passed=0 failed=0 skipped=0
failures=()
skip_names=()

# record NAME STATUS: a whole step that has no counts of its own.
record() {
    if [[ $2 -eq 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}

# tally LOG NAME STATUS [SKIPS]: adds a step's counts: cargo's "N passed; N failed" lines, else
# the lab's and jvm's "suite: N passed, N failed" lines, from LOG; and its skips, one per name,
# from the SKIP lines in LOG and in the file SKIPS (the step's PEERLINK_SKIP_LOG). libtest has no
# run-time skip, so a cargo test that skipped reported ok: it is taken off passed.
tally() {
    local log=$1 name=$2 status=$3 skips=${4:-/dev/null} p f cargo=1 names
    p=$(grep -oE '(ok\.|FAILED\.) [0-9]+ passed' "$log" | awk '{s+=$2} END {print s+0}')
    f=$(grep -oE '[0-9]+ passed; [0-9]+ failed' "$log" | awk '{s+=$3} END {print s+0}')
    if [[ $p -eq 0 && $f -eq 0 ]]; then
        cargo=0
        p=$(grep -oE '^[a-z_]+: [0-9]+ passed, [0-9]+ failed' "$log" | awk '{s+=$2} END {print s+0}')
        f=$(grep -oE '^[a-z_]+: [0-9]+ passed, [0-9]+ failed' "$log" | awk '{s+=$4} END {print s+0}')
    fi
    mapfile -t names < <(cat "$log" "$skips" 2>/dev/null | skip_names_in)
    if ((cargo)); then
        p=$((p > ${#names[@]} ? p - ${#names[@]} : 0))
    fi
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + ${#names[@]}))
    skip_names+=("${names[@]}")
    if [[ $status -ne 0 ]]; then
        failures+=("$name")
        [[ $f -eq 0 ]] && failed=$((failed + 1))
    fi
    return 0
}

# skip_names_in: the distinct names of the "SKIP: NAME: REASON" lines on stdin, in order seen.
skip_names_in() {
    awk 'sub(/^SKIP: /, "") { i = index($0, ": "); n = i ? substr($0, 1, i - 1) : $0; if (!seen[n]++) print n }'
}

# summary: "all: N passed, N failed, N skipped (skipped: a, b)"; the parenthesis only with skips.
summary() {
    local line="all: $passed passed, $failed failed, $skipped skipped" joined
    if ((${#skip_names[@]})); then
        printf -v joined '%s, ' "${skip_names[@]}"
        line+=" (skipped: ${joined%, })"
    fi
    echo "$line"
}
