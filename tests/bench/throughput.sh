#!/usr/bin/env bash
# Throughput and CPU time per byte (DESIGN §9). Root, network namespaces, real tuns; one TCP
# stream (iperf3, SECS s) from peer A to peer B through two `peerlink up`, and in the same run,
# on the same path, through two wireguard-go, two boringtun-cli (when built, see below) and
# with no tunnel (the anchors), on each of PATHS:
#   direct   A and B joined by a veth pair, endpoints configured;
#   ice      A and B each behind its own NAT router, NetBird's signal and relay and coturn on a
#            hub: peerlink on the ICE P2P path (the path a phone uses); wireguard-go, boringtun-cli
#            and the bare path through a port forward on B's router (the same routers and hub).
# Then each engine under iperf3 paced at PACE (PACED_SECS s): the CPU time of both of its
# processes (/proc/PID/stat) per GB received.
# The engines of a path run side by side and are measured in turn, RUNS rounds, so that every
# round compares them under the same load from the rest of the machine (other builds): read the
# ratios, not the absolute numbers. One `sample` line per round and figure (tests/bench/figures.py),
# then the figures (medians).
# boringtun-cli 0.7.1 (crates.io) is used when $PEERLINK_BIN/boringtun-cli exists; BORINGTUN_INSTALL=1
# installs it there first (`cargo install`, about 2 min on 2 cores).
# Environment: PATHS ("direct ice"), RUNS (3), SECS (10; PEERLINK_BENCH_SECS is read too),
# PACED_SECS (10; 0 skips), PACE (500M), BORINGTUN_THREADS (1: its best here, see DESIGN §9),
# INPROCESS (1: first cargo bench's in-process figures, two engines on socketpair tuns).
# Usage: tests/bench/throughput.sh   (build first: cargo build --release -p peerlink-cli)
source "$(dirname "$0")/../lab/lib.sh"
source "$(dirname "$0")/../lab/nat.sh"
source "$(dirname "$0")/../lab/coturn.sh"
source "$(dirname "$0")/../lab/servers.sh"
PATHS=${PATHS:-direct ice}
RUNS=${RUNS:-3}
SECS=${SECS:-${PEERLINK_BENCH_SECS:-10}}
PACED_SECS=${PACED_SECS:-10}
PACE=${PACE:-500M}
BORINGTUN_THREADS=${BORINGTUN_THREADS:-1}
BORINGTUN_VERSION=0.7.1 # the boringtun release peerlink builds on (Cargo.toml)
BORINGTUN=$PEERLINK_BIN/boringtun-cli
CLK_TCK=$(getconf CLK_TCK)
FIGURES=$(dirname "$0")/figures.py

if [[ ${INPROCESS:-1} == 1 ]]; then
    (cd "$LAB_ROOT" && cargo bench -q -p peerlink-core --bench throughput 2>/dev/null | grep '^throughput' | sed 's/^/# in-process: /')
fi
lab_require_root
for c in iperf3 wg iptables; do command -v "$c" >/dev/null || lab_skip "$c missing (apt-get install -y iperf3 wireguard-tools iptables)"; done
lab_require_tool wireguard-go
[[ " $PATHS " != *" ice "* ]] || nb_lab_require
[[ -x $PEERLINK ]] || lab_skip "$PEERLINK not built (cargo build --release -p peerlink-cli)"
if [[ ! -x $BORINGTUN && ${BORINGTUN_INSTALL:-0} == 1 ]]; then
    cargo install -q --locked boringtun-cli --version "$BORINGTUN_VERSION" --root "${PEERLINK_BIN%/bin}" >&2
fi
ENGINES=(peerlink wireguard-go)
if [[ -x $BORINGTUN ]]; then
    ENGINES+=(boringtun-cli)
else
    echo "# boringtun-cli not built: no boringtun anchor (BORINGTUN_INSTALL=1 installs $BORINGTUN_VERSION from crates.io)"
fi
trap 'stop_servers; coturn_stop; lab_cleanup' EXIT
: >"$LAB_TMP/samples"

# --- measuring -----------------------------------------------------------------------------

# iperf NS_B BIND DST [ARGS...]: one TCP stream from A ($A) to DST, the server in NS_B bound to
# BIND; leaves iperf3's JSON in $LAB_TMP/iperf.json.
iperf() {
    local nsb=$1 bind=$2 dst=$3
    shift 3
    lab_bg "$nsb" "$LAB_TMP/iperf-s.log" iperf3 -s -1 -B "$bind"
    local pid=$LAB_PID
    lab_wait 10 "iperf3 server" bash -c "ip netns exec $nsb ss -Hlnt | grep -q ':5201 '"
    ip netns exec "$A" iperf3 -c "$dst" -J "$@" >"$LAB_TMP/iperf.json" || true
    wait "$pid" 2>/dev/null || true
}

# received KEY: from the last iperf3 run, Gbit/s (KEY=gbits) or bytes (KEY=bytes) received.
received() {
    python3 -c 'import json,sys
try:
    r = json.load(open(sys.argv[1]))["end"]["sum_received"]
    print("%.3f" % (r["bits_per_second"] / 1e9) if sys.argv[2] == "gbits" else r["bytes"])
except (KeyError, ValueError):
    print("fail")' "$LAB_TMP/iperf.json" "$1"
}

# cpu_ticks PID...: user + system time of the processes so far, in clock ticks.
cpu_ticks() {
    local pid n=0
    for pid in "$@"; do
        n=$((n + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$n"
}

# --- the anchors: wireguard-go and boringtun-cli configured by `wg` --------------------------

# anchor_up ENGINE NS KEY PEER_PUB OWN_N PEER_N NET PORT [ENDPOINT]: ENGINE on a tun in NS with
# address 10.253.NET.OWN_N, its one peer at 10.253.NET.PEER_N; appends its pid to PIDS_<engine>.
# Interface names carry LAB_TAG: the engines' control sockets live in /var/run/wireguard, which
# every namespace shares.
anchor_up() {
    local engine=$1 ns=$2 key=$3 ppub=$4 own=$5 pn=$6 net=$7 port=$8 ep=${9:-}
    local dev=${engine:0:2}$LAB_TAG$own
    case $engine in
        wireguard-go)
            lab_bg "$ns" "$LAB_TMP/$dev.log" env WG_PROCESS_FOREGROUND=1 "$PEERLINK_BIN/wireguard-go" -f "$dev"
            PIDS_wg+=("$LAB_PID")
            ;;
        boringtun-cli)
            lab_bg "$ns" "$LAB_TMP/$dev.log" "$BORINGTUN" --foreground --disable-drop-privileges \
                --threads "$BORINGTUN_THREADS" "$dev"
            PIDS_bt+=("$LAB_PID")
            ;;
    esac
    lab_wait 10 "$engine in $ns" test -S "/var/run/wireguard/$dev.sock"
    echo "$key" >"$LAB_TMP/$dev.key"
    ip netns exec "$ns" wg set "$dev" private-key "$LAB_TMP/$dev.key" listen-port "$port" \
        peer "$ppub" allowed-ips "10.253.$net.$pn/32" ${ep:+endpoint "$ep"}
    ip -n "$ns" addr add "10.253.$net.$own/24" dev "$dev"
    ip -n "$ns" link set "$dev" mtu 1280 up
}

# anchors_up B_ENDPOINT: wireguard-go (net 1, port 51821) and boringtun-cli (net 2, port 51822)
# in A and B; A reaches B at B_ENDPOINT's host on those ports, B learns A from its handshake.
anchors_up() {
    local host=$1 ka kb
    ka=$("$PEERLINK" genkey) kb=$("$PEERLINK" genkey)
    PIDS_wg=() PIDS_bt=()
    anchor_up wireguard-go "$A" "$ka" "$(peerlink_pub "$kb")" 1 2 1 51821 "$host:51821"
    anchor_up wireguard-go "$B" "$kb" "$(peerlink_pub "$ka")" 2 1 1 51821
    if [[ -x $BORINGTUN ]]; then
        anchor_up boringtun-cli "$A" "$ka" "$(peerlink_pub "$kb")" 1 2 2 51822 "$host:51822"
        anchor_up boringtun-cli "$B" "$kb" "$(peerlink_pub "$ka")" 2 1 2 51822
    fi
}

# --- one round on a path ------------------------------------------------------------------

# round PATH: bare path, then every engine at full speed and paced; one sample line per figure.
# Needs A, B, BARE_BIND, BARE_DST, PL_DST, PIDS_pl, PIDS_wg, PIDS_bt.
round() {
    local path=$1 e dst pids bare ticks0 ticks bytes
    declare -A rate cpu
    iperf "$B" "$BARE_BIND" "$BARE_DST" -t "$SECS"
    bare=$(received gbits)
    for e in "${ENGINES[@]}"; do
        case $e in
            peerlink) dst=$PL_DST pids=("${PIDS_pl[@]}") ;;
            wireguard-go) dst=10.253.1.2 pids=("${PIDS_wg[@]}") ;;
            boringtun-cli) dst=10.253.2.2 pids=("${PIDS_bt[@]}") ;;
        esac
        ip netns exec "$A" ping -c 1 -W 3 "$dst" >/dev/null || echo "# $path: $e: no ping reply before iperf3"
        iperf "$B" "$dst" "$dst" -t "$SECS"
        rate[$e]=$(received gbits)
        cpu[$e]=fail
        ((PACED_SECS > 0)) || continue
        ticks0=$(cpu_ticks "${pids[@]}")
        iperf "$B" "$dst" "$dst" -t "$PACED_SECS" -b "$PACE"
        ticks=$(($(cpu_ticks "${pids[@]}") - ticks0))
        bytes=$(received bytes)
        [[ $bytes == fail ]] || cpu[$e]=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v b="$bytes" 'BEGIN { printf "%.2f", (t / hz) / (b / 1e9) }')
    done
    local extra=
    [[ $path == ice ]] && extra=" path=$(nb_status "pa$TAG" | awk '$1 == "path:" { print $2; exit }')"
    anchors() { # KIND: the anchor fields of a sample from the array KIND (rate or cpu)
        local -n m=$1
        printf ' anchor=wireguard-go:%s' "${m[wireguard-go]}"
        if [[ -n ${m[boringtun-cli]:-} ]]; then
            printf ' anchor2=boringtun-cli-t%s:%s' "$BORINGTUN_THREADS" "${m[boringtun-cli]}"
        fi
    }
    local name=$path
    [[ $path == ice ]] && name=ice_p2p
    echo "sample throughput_$name ${rate[peerlink]} Gbit/s$(anchors rate) bare=$bare$extra" | tee -a "$LAB_TMP/samples"
    ((PACED_SECS > 0)) &&
        echo "sample cpu_per_gb_$name ${cpu[peerlink]} s/GB$(anchors cpu) pace=$PACE$extra" | tee -a "$LAB_TMP/samples"
    return 0
}

# --- direct: a veth pair, endpoints configured ----------------------------------------------
if [[ " $PATHS " == *" direct "* ]]; then
    A=bta$LAB_TAG B=btb$LAB_TAG
    lab_ns "$A"
    lab_ns "$B"
    lab_link "$A" 10.252.0.1/24 "$B" 10.252.0.2/24
    ka=$("$PEERLINK" genkey) kb=$("$PEERLINK" genkey)
    write_conf() { # name iface key own_n peer_pub peer_n endpoint
        cat >"$LAB_TMP/$1.toml" <<TOML
interface = "$2"
private_key = "$3"
addresses = ["10.253.0.$4/24"]
listen_port = 51820
[[peers]]
public_key = "$5"
allowed_ips = ["10.253.0.$6/32"]
endpoint = "$7"
TOML
    }
    write_conf a "pl${LAB_TAG}a" "$ka" 1 "$(peerlink_pub "$kb")" 2 10.252.0.2:51820
    write_conf b "pl${LAB_TAG}b" "$kb" 2 "$(peerlink_pub "$ka")" 1 10.252.0.1:51820
    peerlink_up "$A" "pl${LAB_TAG}a" "$LAB_TMP/a.toml" "$LAB_TMP/pa.log"
    PIDS_pl=("$LAB_PID")
    peerlink_up "$B" "pl${LAB_TAG}b" "$LAB_TMP/b.toml" "$LAB_TMP/pb.log"
    PIDS_pl+=("$LAB_PID")
    PL_DST=10.253.0.2 BARE_BIND=10.252.0.2 BARE_DST=10.252.0.2
    anchors_up 10.252.0.2
    for ((r = 1; r <= RUNS; r++)); do round direct; done
    # Gone before the next path's engines take the same interface names.
    for pid in "${PIDS_pl[@]}" "${PIDS_wg[@]}" "${PIDS_bt[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS_pl[@]}" "${PIDS_wg[@]}" "${PIDS_bt[@]}"; do wait "$pid" 2>/dev/null || true; done
fi

# --- ice: two NAT routers and a hub with NetBird's signal and relay and coturn ----------------
if [[ " $PATHS " == *" ice "* ]]; then
    nb_lab_servers "btsrv$LAB_TAG"
    A=btna$LAB_TAG B=btnb$LAB_TAG
    nat_behind "$A" 2
    nat_behind "$B" 3
    B_WAN=$NAT_WAN_IP B_WAN_IF=$NAT_WAN_IF B_LAN=$NAT_PEER_IP
    # The anchors' way in: a port forward on B's router for WireGuard's two ports and iperf3's.
    for fwd in udp:51821 udp:51822 tcp:5201; do
        ip netns exec "$B-r" iptables -t nat -A PREROUTING -i "$B_WAN_IF" -p "${fwd%:*}" --dport "${fwd#*:}" \
            -j DNAT --to-destination "$B_LAN"
    done
    TAG=ti$LAB_TAG
    nb_connect "$TAG" "$A" "$B" yes yes >/dev/null || { echo "# ice: peerlink never connected"; exit 1; }
    PIDS_pl=("${NB_PEER_PIDS[@]}")
    lab_wait 20 "ICE P2P on both peers" bash -c \
        "'$PEERLINK' status --interface pa$TAG | grep -q '^  path: ice-p2p ' && '$PEERLINK' status --interface pb$TAG | grep -q '^  path: ice-p2p '" ||
        echo "# ice: not on ICE P2P after 20 s: $(nb_status "pa$TAG" | grep -E '^  path' | xargs)"
    PL_DST=10.254.0.2 BARE_BIND=$B_LAN BARE_DST=$B_WAN
    anchors_up "$B_WAN"
    for ((r = 1; r <= RUNS; r++)); do round ice; done
fi

echo
python3 "$FIGURES" summarize <"$LAB_TMP/samples"
