#!/usr/bin/env bash
# Throughput figures, one line each:
#   1. in-process: two engines on socketpair tuns over loopback, against plain loopback UDP
#      (cargo bench; no root needed);
#   2. root only: one TCP stream (iperf3, 10 s) through two `peerlink up` on real tuns in two
#      namespaces joined by a veth pair, and in the same run through two wireguard-go, and over
#      the bare veth (the anchor).
# Usage: tests/bench/throughput.sh   (build first: cargo build --release -p peerlink-cli)
source "$(dirname "$0")/../lab/lib.sh"
set +e
cd "$LAB_ROOT"
cargo bench -q -p peerlink-core --bench throughput 2>/dev/null | grep '^throughput'
if [[ $(id -u) -ne 0 ]]; then
    echo "skip: the namespace figures need root"
    exit 0
fi
set -e
trap lab_cleanup EXIT
SECS=${PEERLINK_BENCH_SECS:-10}
A=bta$LAB_TAG B=btb$LAB_TAG
lab_ns "$A"
lab_ns "$B"
lab_link "$A" 10.252.0.1/24 "$B" 10.252.0.2/24

iperf() { # iperf DST -> Gbit/s of one TCP stream from A to B
    lab_bg "$B" "$LAB_TMP/iperf-s.log" iperf3 -s -1 -B "$1"
    local pid=$LAB_PID
    lab_wait 10 "iperf3 server" bash -c "ip netns exec $B ss -Hlnt | grep -q ':5201'"
    ip netns exec "$A" iperf3 -c "$1" -t "$SECS" -J >"$LAB_TMP/iperf.json"
    wait "$pid" 2>/dev/null || true
    python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e9))' "$LAB_TMP/iperf.json"
}

bare=$(iperf 10.252.0.2)
echo "throughput bare veth, iperf3 one TCP stream: $bare Gbit/s"

ka=$("$PEERLINK" genkey) kb=$("$PEERLINK" genkey)
pa=$(peerlink_pub "$ka") pb=$(peerlink_pub "$kb")
write_conf() { # name iface key own_n peer_pub peer_n endpoint
    cat >"$LAB_TMP/$1.toml" <<TOML
interface = "$2"
private_key = "$3"
addresses = ["10.253.0.$4/24"]
listen_port = 51820
[[peers]]
public_key = "$5"
allowed_ips = ["10.253.0.$6/32"]
${7:+endpoint = \"$7\"}
TOML
}
write_conf a pl-ba "$ka" 1 "$pb" 2 10.252.0.2:51820
write_conf b pl-bb "$kb" 2 "$pa" 1 10.252.0.1:51820
peerlink_up "$A" pl-ba "$LAB_TMP/a.toml" "$LAB_TMP/pa.log"
peerlink_up "$B" pl-bb "$LAB_TMP/b.toml" "$LAB_TMP/pb.log"
ip netns exec "$A" ping -c 1 -W 3 10.253.0.2 >/dev/null
pl=$(iperf 10.253.0.2)
echo "throughput peerlink (two engines, real tuns, two namespaces), iperf3 one TCP stream: $pl Gbit/s"
for pid in "${_LAB_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
lab_wait 10 "peerlink tuns gone" bash -c "! ip -n $A link show pl-ba && ! ip -n $B link show pl-bb"

wg_up() { # ns key peer_pub own_n peer_n endpoint; interface names differ: wireguard-go's
    # control sockets live in /var/run/wireguard, which the namespaces share.
    local dev=wgb$4
    lab_bg "$1" "$LAB_TMP/wg-$1.log" env WG_PROCESS_FOREGROUND=1 "$PEERLINK_BIN/wireguard-go" -f "$dev"
    lab_wait 10 "wireguard-go in $1" ip -n "$1" link show "$dev"
    echo "$2" >"$LAB_TMP/$1.key"
    ip netns exec "$1" wg set "$dev" private-key "$LAB_TMP/$1.key" listen-port 51821 \
        peer "$3" allowed-ips "10.253.0.$5/32" endpoint "$6"
    ip -n "$1" addr add "10.253.0.$4/24" dev "$dev"
    ip -n "$1" link set "$dev" mtu 1280 up
}
wg_up "$A" "$ka" "$pb" 1 2 10.252.0.2:51821
wg_up "$B" "$kb" "$pa" 2 1 10.252.0.1:51821
ip netns exec "$A" ping -c 1 -W 3 10.253.0.2 >/dev/null
wg=$(iperf 10.253.0.2)
echo "throughput wireguard-go (same setup), iperf3 one TCP stream: $wg Gbit/s"
python3 -c "import sys; print('throughput ratio peerlink / wireguard-go: %.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$pl" "$wg"
