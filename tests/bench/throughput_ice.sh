#!/usr/bin/env bash
# Throughput on the path a phone uses: two peers each behind its own NAT router, meeting
# through NetBird's signal (STUN from coturn, NetBird's relay on standby), carrying WireGuard
# on the ICE P2P pair. In the same run and topology, the anchors: wireguard-go between the same
# two namespaces (endpoints at the other router's WAN address; the first handshakes punch the
# NATs), and the bare path through the routers (a TCP port forwarded on B's router).
# One TCP stream (iperf3), RUNS runs of SECS seconds each, medians; then CPU seconds per GB at a
# paced 500 Mbit/s (both ends' processes), peerlink against wireguard-go.
# Prints one line per figure: "NAME VALUE UNIT anchor=VALUE ratio=X runs=N".
# Usage (root): tests/bench/throughput_ice.sh   (build first: cargo build --release -p peerlink-cli)
source "$(dirname "$0")/../lab/lib.sh"
source "$(dirname "$0")/../lab/nat.sh"
source "$(dirname "$0")/../lab/coturn.sh"
source "$(dirname "$0")/../lab/servers.sh"
lab_require_root
nb_lab_require
lab_require_tool wireguard-go
command -v iperf3 >/dev/null || lab_skip "iperf3 missing"
trap 'stop_servers; coturn_stop; lab_cleanup' EXIT
SECS=${PEERLINK_BENCH_SECS:-10}
RUNS=${RUNS:-3}
PACED=${PACED:-500M}

nb_lab_servers btsrv$LAB_TAG
A=btia$LAB_TAG B=btib$LAB_TAG
nat_behind "$A" 2
nat_behind "$B" 3
B_WAN=$NAT_WAN_IP B_LAN=$NAT_PEER_IP
A_WAN=10.201.2.2
# The bare anchor: B's router forwards TCP 5201 to B (no NAT traversal for TCP otherwise).
ip netns exec "$B-r" iptables -t nat -A PREROUTING -d "$B_WAN" -p tcp --dport 5201 -j DNAT --to-destination "$B_LAN"

# iperf DST [RATE]: one TCP stream A → DST; prints "Gbit/s bytes".
iperf() {
    lab_bg "$B" "$LAB_TMP/iperf-s.log" iperf3 -s -1
    local pid=$LAB_PID
    lab_wait 10 "iperf3 server" bash -c "ip netns exec $B ss -Hlnt | grep -q ':5201'"
    ip netns exec "$A" iperf3 -c "$1" -t "$SECS" ${2:+-b "$2"} -J >"$LAB_TMP/iperf.json"
    wait "$pid" 2>/dev/null || true
    python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["end"]["sum_received"]; print("%.3f %d" % (e["bits_per_second"]/1e9, e["bytes"]))' "$LAB_TMP/iperf.json"
}

# cpu_secs PID...: user+system CPU seconds of the processes so far.
cpu_secs() {
    local pid total=0
    for pid in "$@"; do
        total=$(awk -v t="$total" -v hz="$(getconf CLK_TCK)" '{ print t + ($14 + $15) / hz }' "/proc/$pid/stat")
    done
    echo "$total"
}

# measure LABEL DST PID...: RUNS full-speed runs (median Gbit/s into MEDIAN) and one paced run
# (CPU seconds per GB of both ends into CPU_PER_GB).
measure() {
    local label=$1 dst=$2
    shift 2
    local runs=() r
    for ((r = 0; r < RUNS; r++)); do
        runs+=("$(iperf "$dst" | cut -d' ' -f1)")
    done
    MEDIAN=$(printf '%s\n' "${runs[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    echo "# $label: ${runs[*]} Gbit/s" >&2
    CPU_PER_GB=
    if (($# > 0)); then
        local before after moved
        before=$(cpu_secs "$@")
        moved=$(iperf "$dst" "$PACED" | cut -d' ' -f2)
        after=$(cpu_secs "$@")
        CPU_PER_GB=$(awk -v a="$after" -v b="$before" -v m="$moved" 'BEGIN { printf "%.2f", (a - b) / (m / 1e9) }')
    fi
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }

# --- the bare NAT path ------------------------------------------------------------------------
measure "bare" "$B_WAN"
bare=$MEDIAN

# --- peerlink over ICE P2P --------------------------------------------------------------------
nb_connect tput "$A" "$B" yes yes >/dev/null
lab_wait 15 "ICE P2P through the NATs" nb_path_is "$A" patput ice-p2p
nb_path_is "$A" patput ice-p2p || { nb_status patput >&2; exit 1; }
measure "peerlink ice-p2p" 10.254.0.2 "${NB_PEER_PIDS[@]}"
pl=$MEDIAN pl_cpu=$CPU_PER_GB
nb_path_is "$A" patput ice-p2p || echo "# warning: the path left ICE P2P during the runs" >&2
# One UDP socket per engine: WireGuard, ICE and STUN on it.
sockets=$(ip netns exec "$A" ss -Hunap | grep -c "pid=${NB_PEER_PIDS[0]}," || true)
nb_stop_peers

# --- wireguard-go through the same NATs ---------------------------------------------------------
wg_up() { # ns key peer_pub own_n peer_n endpoint
    local dev=wgi$4
    lab_bg "$1" "$LAB_TMP/wg-$1.log" env WG_PROCESS_FOREGROUND=1 "$PEERLINK_BIN/wireguard-go" -f "$dev"
    WG_PIDS+=("$LAB_PID")
    lab_wait 10 "wireguard-go in $1" ip -n "$1" link show "$dev"
    echo "$2" >"$LAB_TMP/$1.key"
    ip netns exec "$1" wg set "$dev" private-key "$LAB_TMP/$1.key" listen-port 51821 \
        peer "$3" allowed-ips "10.253.0.$5/32" endpoint "$6" persistent-keepalive 1
    ip -n "$1" addr add "10.253.0.$4/24" dev "$dev"
    ip -n "$1" link set "$dev" mtu 1280 up
}
WG_PIDS=()
ka=$("$PEERLINK" genkey) kb=$("$PEERLINK" genkey)
wg_up "$A" "$ka" "$(peerlink_pub "$kb")" 1 2 "$B_WAN:51821"
wg_up "$B" "$kb" "$(peerlink_pub "$ka")" 2 1 "$A_WAN:51821"
lab_wait 20 "wireguard-go through the NATs" ip netns exec "$A" ping -c 1 -W 1 10.253.0.2
measure "wireguard-go" 10.253.0.2 "${WG_PIDS[@]}"
wg=$MEDIAN wg_cpu=$CPU_PER_GB

echo "throughput_ice_p2p_peerlink $pl Gbit/s anchor=$wg ratio=$(ratio "$pl" "$wg") runs=$RUNS (anchor: wireguard-go through the same NATs)"
echo "throughput_nat_bare $bare Gbit/s runs=$RUNS (the routers' own ceiling)"
echo "cpu_per_gb_ice_p2p_peerlink $pl_cpu s/GB anchor=$wg_cpu ratio=$(ratio "$pl_cpu" "$wg_cpu") runs=1 (both ends, paced $PACED)"
echo "udp_sockets_engine_ice $sockets sockets (one engine, one peer over ICE P2P, relay and signal on)"
