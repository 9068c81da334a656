#!/usr/bin/env bash
# Lab: lazy connections (issue 12, NetBird's lazyconn). Two peers behind their own NAT routers,
# NetBird's signal and relay servers and coturn on the hub (nb_lab_servers), `peerlink up` on
# real tuns with ICE and the relay. Peer A closes a connection after LAZY_A s without data, peer
# B only after 10 min, so B goes idle only because A tells it (GO_IDLE).
#
#   1  Connected, then quiet: A goes idle after its threshold (its ICE agent and relay path
#      closed: no path left in status), and B follows on A's GO_IDLE.
#   2  Idle costs nothing on the wire: UDP through A's router over IDLE_SECS s is counted (the
#      idle pair sends no STUN and no WireGuard), and A's wake-ups (context switches of all its
#      threads, from /proc) per second. Figures, not bounds.
#   3  One ping from B (idle by GO_IDLE) wakes both sides and its one echo request is answered:
#      the packet that woke the connection is held and delivered, not lost. Figure: time from
#      the first packet to its reply.
#   4  Quiet again: both idle again; one ping from A (idle by its own threshold) wakes both.
#
# Environment: LAZY_A (default 60 s, NetBird's minimum), IDLE_SECS (20 s), WAKE_BOUND (10 s).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nat.sh"
source "$(dirname "$0")/coturn.sh"
source "$(dirname "$0")/servers.sh"
lab_require_root
nb_lab_require
trap 'stop_servers; coturn_stop; lab_cleanup' EXIT

LAZY_A=${LAZY_A:-60}
IDLE_SECS=${IDLE_SECS:-20}
WAKE_BOUND=${WAKE_BOUND:-10}
# Idle within the threshold, plus the control plane's quiet observation (30 s) and a margin.
IDLE_BOUND=$((LAZY_A + 45))

nb_lab_servers nlsrv$LAB_TAG
NA=nla$LAB_TAG NB=nlb$LAB_TAG
nat_behind "$NA" 2
RA=$NA-r RA_WAN=$NAT_WAN_IF
nat_behind "$NB" 3

TAG=lz$LAB_TAG
IA=pa$TAG IB=pb$TAG
ka=$("$PEERLINK" genkey)
kb=$("$PEERLINK" genkey)
nb_conf "$TAG-a" "$IA" 1 "$ka" "$(peerlink_pub "$kb")" 2 yes yes
nb_conf "$TAG-b" "$IB" 2 "$kb" "$(peerlink_pub "$ka")" 1 yes yes
printf '\n[lazy]\ninactivity_threshold_secs = %s\n' "$LAZY_A" >>"$LAB_TMP/$TAG-a.toml"
printf '\n[lazy]\ninactivity_threshold_secs = 600\n' >>"$LAB_TMP/$TAG-b.toml"
peerlink_up "$NA" "$IA" "$LAB_TMP/$TAG-a.toml" "$LAB_TMP/$TAG-a.log"
PID_A=$LAB_PID
peerlink_up "$NB" "$IB" "$LAB_TMP/$TAG-b.toml" "$LAB_TMP/$TAG-b.log"

# figure TEXT: a figure line, printed after the checks (a check's own output shows on failure).
figure() { echo "figure: $*" >>"$LAB_TMP/figures"; }
# connection_is IFACE STATE: `peerlink status` shows the peer's connection in STATE.
connection_is() { nb_status "$1" | grep -q "connection: $2"; }
# no_path IFACE: status shows no active path for the peer.
no_path() { nb_status "$1" | grep -q "path: none"; }
# wakeups PID: context switches of every thread of PID so far.
wakeups() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { n += $2 } END { print n + 0 }'
}
# ping_once NS DST LOG: one echo request, answered within WAKE_BOUND s.
ping_once() { ip netns exec "$1" ping -n -c 1 -W "$WAKE_BOUND" "$2" >"$3" 2>&1; }

connected() {
    lab_wait 20 "first reply" ip netns exec "$NA" ping -c 1 -W 1 10.254.0.2
}
lab_check "the peers connect (ICE and relay, lazy connections on)" connected

idle_both() {
    local start=$EPOCHREALTIME
    lab_wait "$IDLE_BOUND" "A idle" connection_is "$IA" idle || { nb_status "$IA"; return 1; }
    figure "last data -> A idle: $(lab_ms "$start") ms (threshold ${LAZY_A} s)"
    lab_wait 15 "B idle" connection_is "$IB" "idle (peer went idle)" || { nb_status "$IB"; return 1; }
    no_path "$IA" || { nb_status "$IA"; return 1; }
    no_path "$IB" || { nb_status "$IB"; return 1; }
}
lab_check "quiet for the threshold: A idle, B idle on A's GO_IDLE, no paths left" idle_both

idle_cost() {
    local udp0 w0 udp1 w1
    udp0=$(nat_count_udp "$RA" "$RA_WAN")
    w0=$(wakeups "$PID_A")
    sleep "$IDLE_SECS" # the measurement window itself, not a wait for an event
    udp1=$(nat_count_udp "$RA" "$RA_WAN")
    w1=$(wakeups "$PID_A")
    figure "idle pair, UDP through A's router in ${IDLE_SECS} s: $((udp1 - udp0)) packets"
    figure "$(awk -v w=$((w1 - w0)) -v s="$IDLE_SECS" 'BEGIN { printf "idle engine A (signal, relay, ICE configured), wake-ups: %.2f per second", w / s }')"
    connection_is "$IA" idle
}
lab_check "an idle pair stays idle" idle_cost

wake() {
    local from=$1 dst=$2 ia=$3 ib=$4 log=$LAB_TMP/wake-$1.log
    ping_once "$from" "$dst" "$log" || { cat "$log"; nb_status "$ia"; nb_status "$ib"; return 1; }
    figure "idle -> first packet answered ($5): $(sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' "$log") ms"
    grep -q " 0% packet loss" "$log"
    lab_wait 10 "both open" connection_is "$ia" "active\|waking" || return 1
    lab_wait 10 "both open" connection_is "$ib" "active\|waking"
}
lab_check "one ping from B wakes both; its packet is answered" wake "$NB" 10.254.0.1 "$IB" "$IA" "B, woken by GO_IDLE"
lab_check "quiet again: both idle again" idle_both
lab_check "one ping from A wakes both; its packet is answered" wake "$NA" 10.254.0.2 "$IA" "$IB" "A, idle by its threshold"

cat "$LAB_TMP/figures" 2>/dev/null
lab_summary
