#!/usr/bin/env bash
# What an idle engine costs (DESIGN §9 idle figure, issue 12), in network namespaces (root):
# NetBird's signal and relay and coturn on a hub, one LAN behind a NAT router with a hub engine A
# and N peers B1..BN (each its own `peerlink up` in its own namespace), signal, relay and ICE
# configured. A pings every peer once, then nothing is said. Two runs of the same topology:
#
#   open   lazy connections off on A: N connected, quiet peers over ICE (the anchor);
#   relay  the same with ICE off on A: N quiet peers on the relay (so open - relay is what ICE's
#          consent checks cost);
#   idle   lazy connections on (threshold 60 s, NetBird's minimum): after the threshold every
#          peer is idle (what is left: signal and relay keepalives and the engine's own timers).
#
# For each, over WINDOW s: A's wake-ups per second (context switches of all its threads, read
# from /proc) and the UDP datagrams and TCP segments A's namespace sent per minute. Then, in the
# idle run, the time from the first packet to an idle peer to its reply (one ping to each of
# the first WAKES peers, each idle until then): median and worst.
# Prints `sample` lines too (tests/bench/figures.py): idle_wakeups_{ice,relay,lazy} and, for the
# open run, memory_peers_ice (A's VmRSS with N connected peers over ICE).
# Usage: tests/bench/idle.sh   (N=20, WINDOW=60, WAKES=10, MODES="open relay idle"; the release
# CLI must be built). N=100 MODES=idle gives the memory of 100 peers of which 90 are idle.
source "$(dirname "$0")/../lab/lib.sh"
source "$(dirname "$0")/../lab/nat.sh"
source "$(dirname "$0")/../lab/coturn.sh"
source "$(dirname "$0")/../lab/servers.sh"
lab_require_root
nb_lab_require
trap 'stop_servers; coturn_stop; lab_cleanup' EXIT
set +e

N=${N:-20}
WINDOW=${WINDOW:-60}
WAKES=${WAKES:-10}
LAZY=60

nb_lab_servers ibsrv$LAB_TAG
R=ib$LAB_TAG-r
nat_router "$R" 2
ip -n "$R" link add nat-br type bridge
ip -n "$R" addr add 10.202.2.1/24 dev nat-br
ip -n "$R" link set nat-br up

# wakeups PID [KINDS]: context switches of every thread of PID so far (KINDS: a regex of
# voluntary|nonvoluntary; the voluntary ones are the wake-ups the process asked for, the others
# grow with the machine's load).
wakeups() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk -v k="^(${2:-voluntary|nonvoluntary})_ctxt_switches" '$0 ~ k { n += $2 } END { print n + 0 }'
}
# sent NS PROTO: packets of PROTO the namespace has sent since the counting rule was added.
sent() {
    ip netns exec "$1" iptables -C OUTPUT -p "$2" -j ACCEPT 2>/dev/null ||
        ip netns exec "$1" iptables -I OUTPUT -p "$2" -j ACCEPT
    # iptables prints the protocol by name or by number, depending on its backend.
    local num=17 # IANA protocol numbers: UDP 17, TCP 6
    [[ $2 == tcp ]] && num=6
    ip netns exec "$1" iptables -L OUTPUT -v -x -n |
        awk -v p="$2" -v num="$num" '$3 == "ACCEPT" && ($4 == p || $4 == num) { n += $1 } END { print n + 0 }'
}

# run MODE: the topology once with A's lazy mode MODE (open or idle); prints figure lines.
run() {
    local mode=$1 tag=i${1:0:1}$LAB_TAG a k ka kb first=${#_LAB_PIDS[@]}
    a=${tag}a
    lab_ns "$a"
    _nat_join_lan "$R" 2 "$a" 2
    ka=$("$PEERLINK" genkey)
    {
        printf 'interface = "pa%s"\nprivate_key = "%s"\naddresses = ["10.254.0.1/16"]\n' "$tag" "$ka"
        printf '\n[signal]\nurl = "%s"\n\n[relay]\nurls = ["%s"]\nsecret = "%s"\n' "$SIGNAL_URL" "$RELAY" "$SECRET"
        [[ $mode == relay ]] || printf '\n[ice]\nstun = ["%s"]\n' "$COTURN_STUN_URL"
        if [[ $mode != idle ]]; then
            printf '\n[lazy]\ndisabled = true\n'
        else
            printf '\n[lazy]\ninactivity_threshold_secs = %s\n' "$LAZY"
        fi
    } >"$LAB_TMP/$tag-a.toml"
    for ((k = 1; k <= N; k++)); do
        kb=$("$PEERLINK" genkey)
        printf '\n[[peers]]\npublic_key = "%s"\nallowed_ips = ["10.254.1.%s/32"]\n' "$(peerlink_pub "$kb")" "$k" >>"$LAB_TMP/$tag-a.toml"
        lab_ns "$tag$k"
        _nat_join_lan "$R" 2 "$tag$k" $((k + 2))
        {
            printf 'interface = "pb%s"\nprivate_key = "%s"\naddresses = ["10.254.1.%s/16"]\n' "$tag" "$kb" "$k"
            printf '\n[[peers]]\npublic_key = "%s"\nallowed_ips = ["10.254.0.1/32"]\n' "$(peerlink_pub "$ka")"
            printf '\n[signal]\nurl = "%s"\n\n[ice]\nstun = ["%s"]\n\n[relay]\nurls = ["%s"]\nsecret = "%s"\n' \
                "$SIGNAL_URL" "$COTURN_STUN_URL" "$RELAY" "$SECRET"
        } >"$LAB_TMP/$tag-b$k.toml"
        peerlink_up "$tag$k" "pb$tag" "$LAB_TMP/$tag-b$k.toml" "$LAB_TMP/$tag-b$k.log" || return 1
    done
    peerlink_up "$a" "pa$tag" "$LAB_TMP/$tag-a.toml" "$LAB_TMP/$tag-a.log" || return 1
    local pid=$LAB_PID
    for ((k = 1; k <= N; k++)); do
        lab_wait 30 "peer $k" ip netns exec "$a" ping -c 1 -W 1 "10.254.1.$k" ||
            { echo "# $mode: peer $k never answered"; return 1; }
    done
    if [[ $mode == idle ]]; then
        lab_wait $((LAZY + 60)) "all idle" bash -c "[[ \$('$PEERLINK' status --interface pa$tag | grep -c 'connection: idle') == $N ]]" ||
            { echo "# idle: not every peer went idle"; "$PEERLINK" status --interface "pa$tag" | grep connection | sort | uniq -c; return 1; }
    else
        sleep 15 # let the connections settle (ICE selected, relay standby), not an event
    fi
    local w0 v0 u0 t0 w1 v1 u1 t1
    w0=$(wakeups "$pid") v0=$(wakeups "$pid" voluntary) u0=$(sent "$a" udp) t0=$(sent "$a" tcp)
    sleep "$WINDOW" # the measurement window
    w1=$(wakeups "$pid") v1=$(wakeups "$pid" voluntary) u1=$(sent "$a" udp) t1=$(sent "$a" tcp)
    awk -v m="$mode" -v n="$N" -v w=$((w1 - w0)) -v v=$((v1 - v0)) -v u=$((u1 - u0)) -v t=$((t1 - t0)) -v s="$WINDOW" 'BEGIN {
        what = (m == "open" ? "connected quiet peers over ICE" : m == "relay" ? "connected quiet peers on the relay (ICE off)" : "idle peers")
        printf "idle engine with %d %s: %.2f wake-ups/s (%.2f voluntary), %.1f UDP datagrams/min, %.1f TCP segments/min\n",
            n, what, w / s, v / s, u * 60 / s, t * 60 / s }'
    local rss
    rss=$(awk '/VmRSS/ { print $2 }' /proc/"$pid"/status)
    printf 'idle engine RSS (%s): %d KiB\n' "$mode" "$rss"
    # The same as `sample` lines (tests/bench/figures.py): open is ICE, idle is lazy.
    awk -v m="$mode" -v n="$N" -v w=$((w1 - w0)) -v u=$((u1 - u0)) -v t=$((t1 - t0)) -v s="$WINDOW" -v rss="$rss" 'BEGIN {
        name = (m == "open" ? "ice" : m == "relay" ? "relay" : "lazy")
        printf "sample idle_wakeups_%s %.2f /s peers=%d udp_per_min=%.1f tcp_per_min=%.1f\n", name, w / s, n, u * 60 / s, t * 60 / s
        if (m == "open") printf "sample memory_peers_ice %.1f MiB peers=%d\n", rss / 1024, n }'
    if [[ $mode == idle ]]; then
        : >"$LAB_TMP/wakes"
        for ((k = 1; k <= WAKES && k <= N; k++)); do
            ip netns exec "$a" ping -n -c 1 -W 10 "10.254.1.$k" >"$LAB_TMP/wake.log" 2>&1
            sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' "$LAB_TMP/wake.log" >>"$LAB_TMP/wakes"
        done
        sort -n "$LAB_TMP/wakes" | awk -v want="$WAKES" '{ v[NR] = $1 } END {
            if (NR == 0) { print "idle peer, first packet -> reply: no reply"; exit }
            printf "idle peer, first packet -> reply (LAN, %d of %d answered): median %.0f ms, worst %.0f ms\n",
                NR, want, v[int((NR + 1) / 2)], v[NR] }'
        printf 'idle engine RSS with %d peers, %d of them woken, the rest idle: %d KiB\n' \
            "$N" "$WAKES" "$(awk '/VmRSS/ { print $2 }' /proc/"$pid"/status)"
    fi
}

# stop_run FIRST: stop the processes a run started (those after index FIRST of _LAB_PIDS).
stop_run() {
    local pid
    for pid in "${_LAB_PIDS[@]:$1}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${_LAB_PIDS[@]:$1}"; do wait "$pid" 2>/dev/null; done
}

echo "# $N peers, window ${WINDOW} s"
for mode in ${MODES:-open relay idle}; do
    first=${#_LAB_PIDS[@]}
    run "$mode"
    stop_run "$first"
done
