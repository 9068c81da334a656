#!/usr/bin/env bash
# The packet filter's figures (issue 15), one line each:
#   1. unit level (no root): heap of a flow table at 10 000 flows, time per packet of the
#      filter's checks (cargo bench -p peerlink-core --bench filter);
#   2. root only: one TCP stream (iperf3) through two `peerlink up` on real tuns in two
#      namespaces joined by a veth pair (the direct path), with no filter, with an allow-all
#      rule set (what NetBird's default policy sends: protocol all from the other peer) and with
#      50 rules (TCP 1000-1047, ICMP for the readiness ping, iperf3's TCP 5201 last), on both
#      engines. The three modes
#      take turns, RUNS rounds (default 3), and the medians and their ratios to "no filter" are
#      printed: the machine is shared, so only ratios from one run mean anything.
# The rules go in through `[[firewall]]` in up's configuration (Engine::set_firewall_rules).
# Usage: tests/bench/firewall.sh   (build first: cargo build --release -p peerlink-cli)
#   PEERLINK_BENCH_SECS=10 (each iperf3 run), RUNS=3.
source "$(dirname "$0")/../lab/lib.sh"
set +e
cd "$LAB_ROOT"
cargo bench -q -p peerlink-core --bench filter 2>/dev/null | grep '^filter'
if [[ $(id -u) -ne 0 ]]; then
    echo "skip: the namespace figures need root"
    exit 0
fi
set -e
command -v iperf3 >/dev/null || { echo "skip: iperf3 missing"; exit 0; }
trap lab_cleanup EXIT
SECS=${PEERLINK_BENCH_SECS:-10}
RUNS=${RUNS:-3}
A=bfa$LAB_TAG B=bfb$LAB_TAG
lab_ns "$A"
lab_ns "$B"
lab_link "$A" 10.252.0.1/24 "$B" 10.252.0.2/24
ka=$("$PEERLINK" genkey) kb=$("$PEERLINK" genkey)
pa=$(peerlink_pub "$ka") pb=$(peerlink_pub "$kb")

# rules MODE OTHER_IP: the [[firewall]] lines for MODE.
rules() {
    case "$1" in
        none) ;;
        allow-all) printf '[[firewall]]\nsource = "%s"\nprotocol = "all"\n' "$2" ;;
        ports50)
            for port in $(seq 1000 1047); do
                printf '[[firewall]]\nsource = "%s"\nprotocol = "tcp"\nports = "%s"\n' "$2" "$port"
            done
            printf '[[firewall]]\nsource = "%s"\nprotocol = "icmp"\n' "$2"
            printf '[[firewall]]\nsource = "%s"\nprotocol = "tcp"\nports = "5201"\n' "$2"
            ;;
    esac
}
write_conf() { # name iface key own_n peer_pub peer_n endpoint mode
    {
        cat <<TOML
interface = "$2"
private_key = "$3"
addresses = ["10.253.0.$4/24"]
listen_port = 51820
TOML
        rules "$8" "10.253.0.$6"
        cat <<TOML
[[peers]]
public_key = "$5"
allowed_ips = ["10.253.0.$6/32"]
endpoint = "$7"
TOML
    } >"$LAB_TMP/$1.toml"
}

# cpu_ticks PID...: user + system clock ticks the processes used so far.
cpu_ticks() {
    local pid n=0
    for pid in "$@"; do
        n=$((n + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$n"
}

# iperf DST PID...: one TCP stream from A to B; prints Gbit/s and the CPU seconds per GB the
# processes PID... (both engines) spent meanwhile. CPU time per byte is what a shared machine
# disturbs least (and a phone's battery pays).
iperf() {
    local dst=$1
    shift
    lab_bg "$B" "$LAB_TMP/iperf-s.log" iperf3 -s -1 -B "$dst"
    local pid=$LAB_PID before
    lab_wait 10 "iperf3 server" bash -c "ip netns exec $B ss -Hlnt | grep -q ':5201'"
    before=$(cpu_ticks "$@")
    ip netns exec "$A" iperf3 -c "$dst" -t "$SECS" -J >"$LAB_TMP/iperf.json"
    local ticks=$(($(cpu_ticks "$@") - before))
    wait "$pid" 2>/dev/null || true
    python3 -c 'import json,os,sys
end = json.load(open(sys.argv[1]))["end"]["sum_received"]
print("%.3f %.3f" % (end["bits_per_second"] / 1e9, int(sys.argv[2]) / os.sysconf("SC_CLK_TCK") / (end["bytes"] / 1e9)))' \
        "$LAB_TMP/iperf.json" "$ticks"
}

# one MODE: both engines up with MODE's rules, one iperf3 run, both down; prints Gbit/s and
# CPU s/GB.
one() {
    write_conf a pl-fa "$ka" 1 "$pb" 2 10.252.0.2:51820 "$1"
    write_conf b pl-fb "$kb" 2 "$pa" 1 10.252.0.1:51820 "$1"
    peerlink_up "$A" pl-fa "$LAB_TMP/a.toml" "$LAB_TMP/pa-$1.log" >&2
    local pid_a=$LAB_PID
    peerlink_up "$B" pl-fb "$LAB_TMP/b.toml" "$LAB_TMP/pb-$1.log" >&2
    local pid_b=$LAB_PID
    ip netns exec "$A" ping -c 1 -W 3 10.253.0.2 >/dev/null
    if [[ $1 != none ]]; then
        grep -q "firewall: .* inbound rules" "$LAB_TMP/pb-$1.log" || { echo "rules not applied" >&2; return 1; }
    fi
    iperf 10.253.0.2 "$pid_a" "$pid_b"
    kill "$pid_a" "$pid_b"
    # Exited, so the next pair can bind the same port.
    wait "$pid_a" "$pid_b" 2>/dev/null || true
}

declare -A gbits cpu
for ((run = 1; run <= RUNS; run++)); do
    for mode in none allow-all ports50; do
        one "$mode" >"$LAB_TMP/one.out"
        read -r g c <"$LAB_TMP/one.out"
        echo "# run $run, $mode: $g Gbit/s, $c CPU s/GB"
        gbits[$mode]+="$g "
        cpu[$mode]+="$c "
    done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
base_g=$(median <<<"${gbits[none]}") base_c=$(median <<<"${cpu[none]}")
for mode in none allow-all ports50; do
    g=$(median <<<"${gbits[$mode]}") c=$(median <<<"${cpu[$mode]}")
    awk -v m="$mode" -v g="$g" -v bg="$base_g" -v c="$c" -v bc="$base_c" -v n="$RUNS" 'BEGIN {
        printf "throughput through two engines, direct path, iperf3 one TCP stream, %s: median %.2f Gbit/s of %d runs, %.3f of no filter; CPU of both engines %.3f s/GB, %.3f of no filter\n", m, g, n, g / bg, c, c / bc }'
done
