#!/usr/bin/env bash
# Resident memory of one engine with N connected peers (DESIGN §9: ≤ 12 MiB at 100 peers), one
# line per N. Two processes on loopback, socketpair tuns, no root: `memory_peers peers N` runs N
# engines; `memory_peers hub N` (the measured process) runs one engine on the mobile bindings'
# runtime (2 workers, 256 KiB stacks) whose N peers are those engines, handshakes with every peer,
# sends an ICMP echo to each, and reads VmRSS before the engine started (baseline: runtime and
# binary) and once every peer is connected.
# Also as a `sample` line per N (tests/bench/figures.py): memory_peers_direct_N.
# Usage: tests/bench/memory.sh [N...]   (default: 10 100 200)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-memory.XXXXXX")
PEERS_PID=
cleanup() {
    if [[ -n $PEERS_PID ]]; then
        kill -TERM "$PEERS_PID" 2>/dev/null || true
        wait "$PEERS_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

cargo build -q --release -p peerlink-core --example memory_peers
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/memory_peers

status=0
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(10 100 200)
for n in "${sizes[@]}"; do
    ports=$TMP/ports-$n
    "$BIN" peers "$n" "$ports" 2>"$TMP/peers-$n.log" &
    PEERS_PID=$!
    for _ in $(seq 200); do [[ -f $ports ]] && break; sleep 0.05; done
    if [[ ! -f $ports ]]; then
        echo "memory $n peers: FAILED, the peers process wrote no port file"
        cat "$TMP/peers-$n.log"
        status=1
        kill -TERM "$PEERS_PID" 2>/dev/null || true
        wait "$PEERS_PID" 2>/dev/null || true
        PEERS_PID=
        continue
    fi
    if ! "$BIN" hub "$n" "$ports" >"$TMP/hub-$n.log" 2>&1; then
        echo "memory $n peers: FAILED, the hub did not connect every peer"
        tail -n 20 "$TMP/hub-$n.log"
        status=1
    else
        # The echoes were sent once the handshakes completed: give them a moment to arrive.
        for _ in $(seq 100); do grep -q 'echo delivered on' "$TMP/peers-$n.log" && break; sleep 0.05; done
        delivered=$(grep -o 'echo delivered on [0-9]*/[0-9]*' "$TMP/peers-$n.log" || echo "echo delivered on ?/$n")
        awk -v n="$n" -v delivered="${delivered#echo delivered on }" '/^RESULT/ {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
            printf "memory hub engine with %d connected peers: RSS %.1f MiB (baseline %.1f MiB, +%.1f KiB per peer; VmHWM %.1f MiB; connected in %d ms, echoes delivered %s)\n",
                n, r["rss_kib"] / 1024, r["baseline_kib"] / 1024, r["per_peer_kib"], r["hwm_kib"] / 1024, r["connect_ms"], delivered
            printf "sample memory_peers_direct_%d %.1f MiB baseline=%.1f per_peer_kib=%.1f\n", n, r["rss_kib"] / 1024, r["baseline_kib"] / 1024, r["per_peer_kib"]
        }' "$TMP/hub-$n.log"
        [[ $delivered == "echo delivered on $n/$n" ]] || status=1
    fi
    kill -TERM "$PEERS_PID" 2>/dev/null || true
    wait "$PEERS_PID" 2>/dev/null || true
    PEERS_PID=
done
exit $status
