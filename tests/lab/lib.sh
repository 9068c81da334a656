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
# The release CLI: cargo puts it under CARGO_TARGET_DIR when that is set (a shared build cache).
PEERLINK=${PEERLINK:-${CARGO_TARGET_DIR:-$LAB_ROOT/target}/release/peerlink}
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

# lab_check NAME CMD...: run one check, print a result line, count it; LAB_LAST_OK says how it went.
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
        LAB_LAST_OK=0
        return 0
    fi
    LAB_LAST_OK=1
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

# lab_ms START [END]: milliseconds between two $EPOCHREALTIME stamps (END: now).
lab_ms() {
    awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%d\n", (b - a) * 1000 + 0.5 }'
}

# --- NetBird lab: signal, relay and coturn on a hub, peers behind NAT routers -----------------
# Needs nat.sh, coturn.sh and servers.sh sourced as well (netns_netbird.sh, netns_watcher.sh).

# nb_lab_require: skip the suite unless coturn and NetBird's servers are there (a failure in CI).
nb_lab_require() {
    local c
    for c in iptables ping ss conntrack; do
        command -v "$c" >/dev/null 2>&1 || lab_skip "$c missing"
    done
    command -v turnserver >/dev/null 2>&1 || lab_skip "coturn missing (apt-get install -y coturn)"
    lab_require_tool nb-signal
    lab_require_tool nb-relay
    [[ -x $PEERLINK ]] || lab_skip "$PEERLINK not built (cargo build --release -p peerlink-cli)"
}

# nb_lab_servers NS: the hub namespace NS (nat_server) with coturn, NetBird's signal and relay on
# NAT_SERVER_IP. Sets SIGNAL_URL, RELAY, SECRET (and coturn's COTURN_*). Trap
# 'stop_servers; coturn_stop; lab_cleanup' on EXIT before calling it.
nb_lab_servers() {
    local ns=$1
    nat_server "$ns"
    coturn_start "$ns" "$NAT_SERVER_IP" 3478
    SECRET=lab-relay-secret-$LAB_TAG
    NETNS=$ns start_signal 10000
    NETNS=$ns RELAY_ADDR=$NAT_SERVER_IP start_relay 33080 "$SECRET"
    SIGNAL_URL=http://$NAT_SERVER_IP:10000
    RELAY=rel://$NAT_SERVER_IP:33080
}

# nb_conf NAME IFACE N KEY PEER_PUB PEER_N WITH_RELAY WITH_ICE [ICE_EXTRA]: a config for
# `peerlink up` in $LAB_TMP/NAME.toml: tunnel address 10.254.0.N, one peer at 10.254.0.PEER_N
# found through signal; NetBird's relay if WITH_RELAY is yes; ICE (coturn's STUN, plus the TOML
# lines ICE_EXTRA in the [ice] section) if WITH_ICE is yes.
nb_conf() {
    local name=$1 iface=$2 n=$3 key=$4 ppub=$5 pn=$6 with_relay=$7 with_ice=$8 ice_extra=${9:-}
    {
        cat <<TOML
interface = "$iface"
private_key = "$key"
addresses = ["10.254.0.$n/24"]

[[peers]]
public_key = "$ppub"
allowed_ips = ["10.254.0.$pn/32"]

[signal]
url = "$SIGNAL_URL"
TOML
        if [[ $with_ice == yes ]]; then
            printf '\n[ice]\nstun = ["%s"]\n%s\n' "$COTURN_STUN_URL" "$ice_extra"
        fi
        if [[ $with_relay == yes ]]; then
            printf '\n[relay]\nurls = ["%s"]\nsecret = "%s"\n' "$RELAY" "$SECRET"
        fi
    } >"$LAB_TMP/$name.toml"
}

# nb_connect TAG NS_A NS_B WITH_RELAY WITH_ICE [ICE_EXTRA]: start peers on tuns pa$TAG
# (10.254.0.1, in NS_A) and pb$TAG (10.254.0.2, in NS_B), wait (bounded) for the first reply
# and print "figure start -> first reply, TAG" (also appended to $LAB_TMP/figures). The peers'
# pids go to NB_PEER_PIDS; logs are $LAB_TMP/TAG-a.log and TAG-b.log.
NB_PEER_PIDS=()
nb_connect() {
    local tag=$1 a=$2 b=$3 with_relay=$4 with_ice=$5 ice_extra=${6:-}
    local ka kb
    ka=$("$PEERLINK" genkey)
    kb=$("$PEERLINK" genkey)
    nb_conf "$tag-a" "pa$tag" 1 "$ka" "$(peerlink_pub "$kb")" 2 "$with_relay" "$with_ice" "$ice_extra"
    nb_conf "$tag-b" "pb$tag" 2 "$kb" "$(peerlink_pub "$ka")" 1 "$with_relay" "$with_ice" "$ice_extra"
    local start=$EPOCHREALTIME
    peerlink_up "$a" "pa$tag" "$LAB_TMP/$tag-a.toml" "$LAB_TMP/$tag-a.log"
    NB_PEER_PIDS+=("$LAB_PID")
    peerlink_up "$b" "pb$tag" "$LAB_TMP/$tag-b.toml" "$LAB_TMP/$tag-b.log"
    NB_PEER_PIDS+=("$LAB_PID")
    local deadline=$((SECONDS + 20))
    until ip netns exec "$a" ping -c 1 -W 1 10.254.0.2 >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "# $tag: no reply within 20 s"
            tail -n 20 "$LAB_TMP/$tag-a.log" | sed 's/^/#   a: /'
            tail -n 20 "$LAB_TMP/$tag-b.log" | sed 's/^/#   b: /'
            return 1
        fi
    done
    echo "figure start -> first reply, $tag: $(lab_ms "$start") ms" | tee -a "$LAB_TMP/figures"
}

# nb_status IFACE: `peerlink status` of the engine on tun IFACE.
nb_status() {
    "$PEERLINK" status --interface "$1"
}

# nb_path_is NS IFACE KIND: the peer's active path in `peerlink status` is KIND.
nb_path_is() {
    nb_status "$2" | grep -q "path: $3 "
}

# nb_stop_peers: stop the peers nb_connect started (coturn and the servers run on).
nb_stop_peers() {
    local pid
    for pid in "${NB_PEER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${NB_PEER_PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    NB_PEER_PIDS=()
}
