# shellcheck shell=bash
# Helpers for the lab suites: network namespaces joined by veth pairs, peerlink and
# wireguard-go inside them, TAP-like result lines. Source it from a suite.
#
# Every namespace and process a suite makes is recorded and removed by lab_cleanup (trap it).
# Addresses are in namespaces the suite creates; nothing leaves this machine.

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/skip.sh"

LAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${HOME:=/root}"
PEERLINK_BIN=${PEERLINK_BIN:-${PEERLINK_CACHE:-$HOME/.cache/peerlink}/bin}
PEERLINK=${PEERLINK:-$LAB_ROOT/target/release/peerlink}
LAB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-lab.XXXXXX")
# A per-run tag keeps names unique if two suites run at once.
LAB_TAG=${LAB_TAG:-$$}
_LAB_NS=()
_LAB_PIDS=()
LAB_PASSED=0
LAB_FAILED=0

# lab_skip REASON: the whole suite cannot run here. Prints "SKIP: SUITE: REASON" and exits 0;
# in CI (CI=true) prints "FAIL: SUITE: REASON" and exits 1 (see skip_or_fail).
lab_skip() {
    rm -rf "$LAB_TMP"
    skip_or_fail "$(basename "$0" .sh)" "$1" || exit 1
    exit 0
}

# Skips the whole suite unless we are root with netns support.
lab_require_root() {
    [[ $(id -u) -eq 0 ]] || lab_skip "needs root for network namespaces"
    ip netns add "plchk$LAB_TAG" 2>/dev/null || lab_skip "cannot create network namespaces here"
    ip netns del "plchk$LAB_TAG"
}

# lab_require_tool NAME: skips the whole suite unless $PEERLINK_BIN/NAME (tests/lab/build-tools.sh)
# is there.
lab_require_tool() {
    [[ -x $PEERLINK_BIN/$1 ]] || lab_skip "$1 not built (run tests/lab/build-tools.sh)"
}

lab_cleanup() {
    local pid
    for pid in "${_LAB_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${_LAB_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    local ns
    for ns in "${_LAB_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$LAB_TMP"
}

# lab_ns NAME: a fresh namespace with lo up.
lab_ns() {
    ip netns add "$1"
    _LAB_NS+=("$1")
    ip -n "$1" link set lo up
}

# lab_link NS1 ADDR1/LEN NS2 ADDR2/LEN: a veth pair between two namespaces.
lab_link() {
    local a=$1 aa=$2 b=$3 ba=$4
    _LAB_LINKS=$((${_LAB_LINKS:-0} + 1))
    local ia="v${LAB_TAG}a${_LAB_LINKS}" ib="v${LAB_TAG}b${_LAB_LINKS}"
    ip link add "$ia" netns "$a" type veth peer name "$ib" netns "$b"
    ip -n "$a" addr add "$aa" dev "$ia"
    ip -n "$b" addr add "$ba" dev "$ib"
    ip -n "$a" link set "$ia" up
    ip -n "$b" link set "$ib" up
}

# lab_bg NS LOG CMD...: run CMD in NS in the background, recorded for cleanup; sets LAB_PID.
lab_bg() {
    local ns=$1 log=$2
    shift 2
    ip netns exec "$ns" "$@" >"$log" 2>&1 &
    LAB_PID=$!
    _LAB_PIDS+=("$LAB_PID")
}

# lab_wait SECONDS WHAT CMD...: poll CMD until it succeeds (an event we cannot subscribe to:
# an interface appearing, a handshake in status) or fail after SECONDS.
lab_wait() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "timed out after ${limit}s waiting for $what" >&2
            return 1
        fi
        sleep 0.05
    done
}

# lab_check NAME CMD...: run one check, print a result line, count it.
lab_check() {
    local name=$1
    shift
    if "$@" >"$LAB_TMP/check.log" 2>&1; then
        echo "ok - $name"
        LAB_PASSED=$((LAB_PASSED + 1))
    else
        echo "not ok - $name"
        sed 's/^/    # /' "$LAB_TMP/check.log" | tail -n 30
        LAB_FAILED=$((LAB_FAILED + 1))
    fi
}

# lab_summary: the closing line; exit status says whether anything failed.
lab_summary() {
    echo "$(basename "$0" .sh): $LAB_PASSED passed, $LAB_FAILED failed"
    ((LAB_FAILED == 0))
}

# peerlink_up NS IFACE CONFIG LOG: start `peerlink up` and wait for its tun to come up.
peerlink_up() {
    local ns=$1 iface=$2 config=$3 log=$4
    lab_bg "$ns" "$log" env RUST_LOG="${RUST_LOG:-info}" "$PEERLINK" up --config "$config"
    lab_wait 10 "$iface in $ns" ip -n "$ns" link show "$iface" up || { cat "$log" >&2; return 1; }
}

# peerlink_pub PRIVATE: the public key of a private key.
peerlink_pub() {
    echo "$1" | "$PEERLINK" pubkey
}
