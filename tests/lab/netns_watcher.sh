#!/usr/bin/env bash
# Lab: the stale-path watcher (DESIGN §3), the reason peerlink exists. Two peers behind their own
# NAT routers, NetBird's signal and relay servers and coturn on the hub (nb_lab_servers), `peerlink
# up` on real tuns, a steady ping (`ping -D -i 0.05`, timestamped replies) through the tunnel from
# peer A to peer B while a fault is injected with iptables on the routers:
#
#   a  ICE P2P carries the traffic, the relay is on standby. The NetBird-4769 fault: the routers
#      drop WireGuard on the ICE 5-tuple, both directions, and let STUN pass (DESIGN §8's u32 rule,
#      narrowed to the peer's srflx address and port, so ICE's own checks keep succeeding and the
#      relay's TCP is untouched). Traffic must flow again (on the relay) within STALE_BOUND s.
#      Figure: the time from the fault to the first reply after it.
#   f  The fault of (a) removed: traffic must be back on ICE P2P within HEAL_BOUND s.
#   b  ICE off, the relay is the only path. Its fault: the relay's TCP connection of peer A goes
#      silent (the router drops that one connection both ways, as when a NAT mapping is lost after
#      a router reboot or a carrier's idle timeout), while a new connection to the same relay
#      works. Nothing tells the client: no RST, writes succeed into the send buffer; NetBird's
#      relay client notices only when 35 s pass without the server's health check. The watcher
#      sees the path go quiet under traffic within seconds; since the relay is the last path
#      there is nowhere to move, so the verdict must lead to a new relay connection. Traffic must
#      flow again within STALE_BOUND s. Figure as in (a).
#      Why not a second, direct path here: a configured endpoint (a port forward on the router)
#      outranks the relay (wg::Peer::attach: Direct > Relay), so with a reachable endpoint the
#      relay never carries traffic, and silencing the direct path is fault (a) on another kind.
#   e  Soak: ICE P2P with 5 % random loss on every UDP packet the routers forward (both routers,
#      so about 10 % of echoes are lost per way), steady ping for SOAK_SECS; `peerlink status` is
#      sampled every second and every sample must show ICE P2P (loss alone must not condemn a
#      path). Figure: false verdicts (switches away from ICE P2P seen in the samples).
#   c  The remote engine restarts with the same key while the network stays up (issue 9): ICE
#      P2P carries a steady ping, peer B's `peerlink up` is killed with SIGKILL (no goodbye, so
#      A's ICE agent and WireGuard session still believe in B) and started again at once with the
#      same config. Traffic must flow again within RESTART_BOUND s of the restart; the path must
#      be ICE P2P on both peers again within HEAL_BOUND s. Figure: restart -> first reply.
#   d  A roam (issue 9): peer A leaves router A's LAN (its link is deleted, as a phone leaves a
#      Wi-Fi) and joins a new router's LAN with a new address, behind a new public address; the
#      new router drops what A still sends from its old address (BCP 38), so the old ICE pair and
#      the old relay TCP connection are silently dead. The platform reports it: SIGUSR1 to A's
#      `peerlink up` (Engine::network_changed(true)). Traffic must flow again within ROAM_BOUND s
#      of the move (design target ≤ 1 s, the relay carrying it at once); ICE P2P must be back on
#      both peers within HEAL_BOUND s. Figures: roam -> first reply, roam -> ICE P2P again.
#      (d) leaves A on the new router, so it runs last.
#
# Cases to run (all by default): WATCHER_ONLY="e a b c d" ((f) runs with (a)).
# Environment: STALE_BOUND (default 20 s), HEAL_BOUND (60 s), SOAK_SECS (30 s), RESTART_BOUND
# (20 s), ROAM_BOUND (20 s).
# Figure lines start with "figure:"; tests/bench/watcher.sh repeats the cases and summarises them.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nat.sh"
source "$(dirname "$0")/coturn.sh"
source "$(dirname "$0")/servers.sh"
lab_require_root
nb_lab_require
trap 'stop_servers; coturn_stop; lab_cleanup' EXIT

STALE_BOUND=${STALE_BOUND:-20}
HEAL_BOUND=${HEAL_BOUND:-60}
SOAK_SECS=${SOAK_SECS:-30}
RESTART_BOUND=${RESTART_BOUND:-20}
ROAM_BOUND=${ROAM_BOUND:-20}
# WireGuard messages (type 1-4, then three zero bytes) but not STUN: DESIGN §8.
WG_U32='0>>22&0x3C@8&0x00FFFFFF=0 && 0>>22&0x3C@8>>24=1:4'

want() { [[ -z ${WATCHER_ONLY:-} || " $WATCHER_ONLY " == *" $1 "* ]]; }

nb_lab_servers nwsrv$LAB_TAG
NA=nwa$LAB_TAG NB=nwb$LAB_TAG
nat_behind "$NA" 2
RA=$NA-r A_LAN_IP=$NAT_PEER_IP
A_LAN_IF=v${LAB_TAG}b${_LAB_LINKS} # A's interface on router A's LAN (the roam (d) deletes it)
nat_behind "$NB" 3
RB=$NB-r

# --- helpers ---------------------------------------------------------------------------------

# ping_start TAG: a steady ping from A to B through the tunnel, replies timestamped (-D), into
# $LAB_TMP/TAG-ping.log. Sets PING_PID, PING_LOG.
ping_start() {
    PING_LOG=$LAB_TMP/$1-ping.log
    lab_bg "$NA" "$PING_LOG" ping -D -n -i 0.05 -W 1 10.254.0.2
    PING_PID=$LAB_PID
}

ping_stop() {
    kill -INT "$PING_PID" 2>/dev/null || true
    wait "$PING_PID" 2>/dev/null || true
}

# replies_after T [LOG]: the number of echo replies in the ping log received after T (an
# $EPOCHREALTIME stamp).
replies_after() {
    awk -v t="$1" '/bytes from/ { s = substr($1, 2, length($1) - 2); if (s + 0 > t + 0) n++ } END { print n + 0 }' \
        "${2:-$PING_LOG}"
}

# first_reply_after T: the timestamp of the first echo reply received after T (empty if none).
first_reply_after() {
    awk -v t="$1" '/bytes from/ { s = substr($1, 2, length($1) - 2); if (s + 0 > t + 0) { print s; exit } }' "$PING_LOG"
}

# has_reply_after T: succeeds once a reply after T is in the log.
has_reply_after() {
    [[ -n $(first_reply_after "$1") ]]
}

# path_kind IFACE: the active path's kind (ice-p2p, relay, ...; "none" without one, "?" if the
# status cannot be read).
path_kind() {
    nb_status "$1" 2>/dev/null | awk '$1 == "path:" { print $2; found = 1; exit } END { if (!found) print "?" }'
}

# path_remote IFACE: the active path's remote address (ip:port for ICE).
path_remote() {
    nb_status "$1" | awk '$1 == "path:" { print $3; exit }'
}

# ice_with_relay_standby IFACE: ICE P2P carries the traffic and the relay is the standby.
ice_with_relay_standby() {
    local s
    s=$(nb_status "$1") || return 1
    grep -q '^  path: ice-p2p ' <<<"$s" && grep -q '^  standby: relay ' <<<"$s"
}

# fault_rules NS ACTION SPEC...: add (-I) or delete (-D) a FORWARD DROP rule per SPEC, each SPEC
# a quoted string of match arguments. Rules live only in the test's router namespaces.
fault_rules() {
    local ns=$1 action=$2 spec
    shift 2
    for spec in "$@"; do
        # shellcheck disable=SC2086 # SPEC is a list of iptables arguments.
        ip netns exec "$ns" iptables "$action" FORWARD $spec -j DROP
    done
}

# dropped NS PATTERN: packets dropped so far by the router's FORWARD DROP rules matching PATTERN.
dropped() {
    ip netns exec "$1" iptables -L FORWARD -v -x -n | awk -v p="$2" '$3 == "DROP" && $0 ~ p { n += $1 } END { print n + 0 }'
}

# seconds START END: END - START in seconds, one decimal.
seconds() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", b - a }'
}

# show_state TAG: both peers' status and the tail of their logs, as comment lines (on failure).
show_state() {
    local tag=$1
    echo "# A: $(nb_status "pa$tag" 2>&1 | grep -E '^  (path|standby|latest|transfer|relay)' | tr -s ' ' | paste -sd ';')"
    echo "# B: $(nb_status "pb$tag" 2>&1 | grep -E '^  (path|standby|latest|transfer|relay)' | tr -s ' ' | paste -sd ';')"
}

# --- (e) soak: 5 % random loss on a healthy ICE path, no switch ------------------------------
if want e; then
    lab_check "e: connected through signal, ICE and relay" nb_connect we "$NA" "$NB" yes yes
    lab_wait 15 "ICE P2P with the relay on standby" ice_with_relay_standby pawe || true
    lab_check "e: ICE P2P carries the traffic, relay on standby" ice_with_relay_standby pawe
    ping_start we
    LOSS='-p udp -m statistic --mode random --probability 0.05'
    fault_rules "$RA" -I "$LOSS"
    fault_rules "$RB" -I "$LOSS"
    soak_start=$EPOCHREALTIME
    samples=0 off=0 switches=0 prev=ice-p2p
    : >"$LAB_TMP/soak-samples"
    for ((i = 1; i <= SOAK_SECS; i++)); do
        # A sampling interval (not an event wait): one status sample per second of the soak.
        sleep "$(awk -v s="$soak_start" -v n="$EPOCHREALTIME" -v i="$i" 'BEGIN { d = s + i - n; print (d > 0 ? d : 0) }')"
        ka=$(path_kind pawe) kb=$(path_kind pbwe)
        samples=$((samples + 1))
        echo "$i $ka $kb" >>"$LAB_TMP/soak-samples"
        if [[ $ka != ice-p2p || $kb != ice-p2p ]]; then
            off=$((off + 1))
            [[ $prev == ice-p2p ]] && switches=$((switches + 1))
            prev=off
        else
            prev=ice-p2p
        fi
    done
    soak_end=$EPOCHREALTIME
    ping_stop
    sent=$(grep -oE '^[0-9]+ packets transmitted' "$PING_LOG" | awk '{ print $1 }')
    got=$(replies_after "$soak_start")
    lost_pct=$(awk -v s="${sent:-0}" -v g="$got" 'BEGIN { printf "%.1f", (s > 0 ? 100 * (s - g) / s : 100) }')
    echo "figure: soak $SOAK_SECS s at 5 % loss per router: $switches false verdicts ($off of $samples status samples off ice-p2p), ping loss $lost_pct %" |
        tee -a "$LAB_TMP/figures"
    lab_check "e: the loss rules dropped packets" test "$(dropped "$RA" statistic)" -gt 0
    lab_check "e: traffic flowed through the soak (replies: $got of ${sent:-?})" \
        test "$got" -gt "$((SOAK_SECS * 20 / 2))"
    lab_check "e: ICE P2P kept the traffic in all $samples samples of ${SOAK_SECS} s at 5 % loss" \
        bash -c "(( $off == 0 )) || { grep -v ' ice-p2p ice-p2p$' '$LAB_TMP/soak-samples' | head -n 10 | sed 's/^/second, A, B: /'; false; }"
    fault_rules "$RA" -D "$LOSS"
    fault_rules "$RB" -D "$LOSS"
    nb_stop_peers
fi

# traffic_again WHAT T0 BOUND: waits (up to BOUND) for a reply to a request sent after T0 and prints
# the figure "WHAT -> traffic again"; sets RECOVERED=yes/no and T_AFTER (T0 + 100 ms). Replies within 100 ms of T0 may
# answer requests sent before it (the round trip here is under 1 ms), so they do not count.
traffic_again() {
    local what=$1 t0=$2 bound=$3 t_reply
    T_AFTER=$(awk -v t="$t0" 'BEGIN { printf "%.6f", t + 0.1 }')
    RECOVERED=yes
    lab_wait "$bound" "a reply after the $what" has_reply_after "$T_AFTER" 2>/dev/null || RECOVERED=no
    t_reply=$(first_reply_after "$T_AFTER")
    if [[ -n $t_reply ]]; then
        echo "figure: $what -> traffic again: $(seconds "$t0" "$t_reply") s" | tee -a "$LAB_TMP/figures"
    else
        echo "figure: $what -> traffic again: none within $bound s" | tee -a "$LAB_TMP/figures"
    fi
}

# a_ready: A on ICE P2P with the relay on standby, and B on ICE P2P.
a_ready() { ice_with_relay_standby pawa && [[ $(path_kind pbwa) == ice-p2p ]]; }

# --- (a) WireGuard dropped on the ICE path, STUN passes: traffic moves to the relay ------------
# --- (f) the fault removed: traffic returns to ICE P2P --------------------------------------
if want a; then
    lab_check "a: connected through signal, ICE and relay" nb_connect wa "$NA" "$NB" yes yes
    # One reading decides both the check and whether the fault section runs.
    lab_check "a: ICE P2P carries the traffic, relay on standby (A and B)" \
        lab_wait 15 "ICE P2P on A (relay on standby) and on B" a_ready
    if ((LAB_LAST_OK)); then
        ping_start wa
        lab_check "a: the steady ping is answered before the fault" \
            lab_wait 10 "ten replies" bash -c "(( \$(awk '/bytes from/' '$PING_LOG' | wc -l) >= 10 ))"
        # The ICE 5-tuple as each router sees it: the other router's srflx address and port (the
        # remote of each peer's ICE path); the local side is the peer's LAN address before SNAT
        # (outbound) and after de-NAT (inbound), so match on the remote, in both directions.
        to_b=$(path_remote pawa) to_a=$(path_remote pbwa)
        echo "# fault: WireGuard dropped between $to_b (B's ICE address) and $to_a (A's), STUN passes"
        fault() {
            local action=$1 ns remote
            for ns in "$RA" "$RB"; do
                [[ $ns == "$RA" ]] && remote=$to_b || remote=$to_a
                ip netns exec "$ns" iptables "$action" FORWARD -p udp -d "${remote%:*}" --dport "${remote##*:}" \
                    -m u32 --u32 "$WG_U32" -j DROP
                ip netns exec "$ns" iptables "$action" FORWARD -p udp -s "${remote%:*}" --sport "${remote##*:}" \
                    -m u32 --u32 "$WG_U32" -j DROP
            done
        }
        fault -I
        t_fault=$EPOCHREALTIME
        traffic_again "stale ice-p2p" "$t_fault" "$STALE_BOUND"
        recovered=$RECOVERED
        lab_check "a: the fault dropped WireGuard on the ICE path (routers' rules hit)" \
            test "$(($(dropped "$RA" u32) + $(dropped "$RB" u32)))" -gt 0
        lab_check "a: traffic flows again within $STALE_BOUND s of the fault" \
            bash -c "[[ $recovered == yes ]] || { echo 'no reply in $STALE_BOUND s; status at the deadline:'; false; }"
        [[ $recovered == yes ]] || show_state wa
        lab_check "a: the relay carries the traffic after the verdict (A and B)" \
            lab_wait 5 "relay active on both peers" bash -c \
            "'$PEERLINK' status --interface pawa | grep -q '^  path: relay ' && '$PEERLINK' status --interface pbwa | grep -q '^  path: relay '"
        echo "# during the fault: A's path $(path_kind pawa), B's path $(path_kind pbwa), $(replies_after "$T_AFTER") replies after the fault"

        # (f): the fault removed.
        fault -D
        t_heal=$EPOCHREALTIME
        back() { [[ $(path_kind pawa) == ice-p2p && $(path_kind pbwa) == ice-p2p ]] && has_reply_after "$1"; }
        healed=yes
        lab_wait "$HEAL_BOUND" "ICE P2P and a reply" back "$t_heal" 2>/dev/null || healed=no
        if [[ $healed == yes ]]; then
            echo "figure: fault removed -> traffic on ice-p2p again: $(seconds "$t_heal" "$EPOCHREALTIME") s" | tee -a "$LAB_TMP/figures"
        else
            echo "figure: fault removed -> traffic on ice-p2p again: not within $HEAL_BOUND s" | tee -a "$LAB_TMP/figures"
            show_state wa
        fi
        lab_check "f: traffic back on ICE P2P within $HEAL_BOUND s of removing the fault" test "$healed" = yes
        ping_stop
    fi
    nb_stop_peers
fi

# --- (b) the relay's connection silently dead (ICE off): traffic again on a new connection ----
if want b; then
    lab_check "b: connected through signal and relay, ICE off" nb_connect wb "$NA" "$NB" yes no
    lab_check "b: the relay carries the traffic" nb_path_is "$NA" pawb relay
    ping_start wb
    lab_check "b: the steady ping is answered before the fault" \
        lab_wait 10 "ten replies" bash -c "(( \$(awk '/bytes from/' '$PING_LOG' | wc -l) >= 10 ))"
    # A's one connection to the relay (signal is on another port): its local port.
    relay_port=${RELAY##*:}
    conns=$(ip netns exec "$NA" ss -Htn state established "( dport = :$relay_port )" | awk '{ print $3 }')
    echo "# A's relay connections: $(echo "$conns" | paste -sd ' ')"
    lport=$(echo "$conns" | head -n 1)
    lport=${lport##*:}
    lab_check "b: A has one relay connection" test "$(echo "$conns" | grep -c .)" -eq 1
    CUT=("-p tcp -s $A_LAN_IP --sport $lport -d $NAT_SERVER_IP --dport $relay_port"
        "-p tcp -s $NAT_SERVER_IP --sport $relay_port -d $A_LAN_IP --dport $lport")
    fault_rules "$RA" -I "${CUT[@]}"
    t_fault=$EPOCHREALTIME
    traffic_again "stale relay" "$t_fault" "$STALE_BOUND"
    recovered=$RECOVERED
    lab_check "b: the fault silenced A's relay connection (router's rules hit)" test "$(dropped "$RA" "dpt:$lport|spt:$lport")" -gt 0
    lab_check "b: traffic flows again within $STALE_BOUND s of the fault" test "$recovered" = yes
    if [[ $recovered == yes ]]; then
        lab_check "b: the relay carries the traffic again, on a new connection" bash -c \
            "'$PEERLINK' status --interface pawb | grep -q '^  path: relay ' &&
             ip netns exec $NA ss -Htn state established '( dport = :$relay_port )' | awk '{ print \$3 }' | grep -qv ':$lport\$'"
    else
        show_state wb
        echo "# A's relay connections now: $(ip netns exec "$NA" ss -Htn state established "( dport = :$relay_port )" | awk '{ print $3 }' | paste -sd ' ')"
    fi
    ping_stop
    fault_rules "$RA" -D "${CUT[@]}"
    nb_stop_peers
fi

# show_switches TAG: both peers' recent path switches from `peerlink status`, as comment lines.
show_switches() {
    nb_status "pa$1" 2>&1 | grep -E '^ *switched ' | sed 's/^ */# A: /' || true
    nb_status "pb$1" 2>&1 | grep -E '^ *switched ' | sed 's/^ */# B: /' || true
}

# both_ice TAG: ICE P2P is the active path on both peers.
both_ice() {
    [[ $(path_kind "pa$1") == ice-p2p && $(path_kind "pb$1") == ice-p2p ]]
}

# ping_ok_before TAG: the steady ping of TAG answered ten times (before a fault).
ping_ok_before() {
    lab_wait 10 "ten replies" bash -c "(( \$(awk '/bytes from/' '$PING_LOG' | wc -l) >= 10 ))"
}

# recovery CASE TAG WHAT T0 BOUND: after WHAT happened at T0 to the peers pa$TAG and pb$TAG,
# the first reply within BOUND and ICE P2P on both within HEAL_BOUND, as figures and checks.
recovery() {
    local case=$1 tag=$2 what=$3 t0=$4 bound=$5 healed=yes
    traffic_again "$what" "$t0" "$bound"
    echo "# then: A's path $(path_kind "pa$tag"), B's path $(path_kind "pb$tag")"
    [[ $RECOVERED == yes ]] || show_state "$tag"
    lab_check "$case: traffic flows again within $bound s of the $what" test "$RECOVERED" = yes
    lab_wait "$HEAL_BOUND" "ICE P2P on both peers" both_ice "$tag" 2>/dev/null || healed=no
    if [[ $healed == yes ]]; then
        echo "figure: $what -> ice-p2p again: $(seconds "$t0" "$EPOCHREALTIME") s" | tee -a "$LAB_TMP/figures"
    else
        echo "figure: $what -> ice-p2p again: not within $HEAL_BOUND s" | tee -a "$LAB_TMP/figures"
        show_state "$tag"
    fi
    lab_check "$case: ICE P2P on both peers again within $HEAL_BOUND s of the $what" test "$healed" = yes
    show_switches "$tag"
}

# --- (c) the remote engine restarts with the same key, the network stays up ----------------
if want c; then
    lab_check "c: connected through signal, ICE and relay" nb_connect wc "$NA" "$NB" yes yes
    lab_wait 15 "ICE P2P on both peers" both_ice wc || true
    lab_check "c: ICE P2P carries the traffic (A and B)" both_ice wc
    ping_start wc
    lab_check "c: the steady ping is answered before the restart" ping_ok_before
    # B: SIGKILL, no goodbye; its tun vanishes with the process. Then the same config again.
    pid_b=${NB_PEER_PIDS[1]}
    kill -KILL "$pid_b"
    wait "$pid_b" 2>/dev/null || true
    lab_wait 5 "pbwc gone" bash -c "! ip -n '$NB' link show pbwc" || true
    t_restart=$EPOCHREALTIME
    restarted=yes
    peerlink_up "$NB" pbwc "$LAB_TMP/wc-b.toml" "$LAB_TMP/wc-b2.log" || restarted=no
    NB_PEER_PIDS=("${NB_PEER_PIDS[0]}" "$LAB_PID")
    lab_check "c: B's peerlink up started again with the same config" test "$restarted" = yes
    recovery c wc "remote restart" "$t_restart" "$RESTART_BOUND"
    ping_stop
    nb_stop_peers
fi

# --- (d) A roams to a new network, the platform says so (SIGUSR1) ---------------------------
if want d; then
    # The new network: a router on WAN link 4 of the hub, its LAN 10.202.4.0/24, which drops
    # what A still sends from its old address (BCP 38 source filtering).
    RC=$NA-n
    nat_router "$RC" 4
    lab_check "d: connected through signal, ICE and relay" nb_connect wd "$NA" "$NB" yes yes
    d_ready() { ice_with_relay_standby pawd && [[ $(path_kind pbwd) == ice-p2p ]]; }
    lab_wait 15 "ICE P2P with the relay on standby (A), ICE P2P (B)" d_ready || true
    lab_check "d: ICE P2P carries the traffic, relay on standby (A), ICE P2P (B)" d_ready
    ping_start wd
    lab_check "d: the steady ping is answered before the roam" ping_ok_before
    old_ice=$(path_remote pbwd)
    pid_a=${NB_PEER_PIDS[0]}
    # The move: A's old link goes away, a new one with a new address appears, then the platform
    # reports the change (a phone's OS does this within milliseconds of the new default route).
    t_roam=$EPOCHREALTIME
    ip -n "$NA" link del "$A_LAN_IF"
    lab_link "$RC" 10.202.4.1/24 "$NA" 10.202.4.2/24
    c_lan_if=v${LAB_TAG}a${_LAB_LINKS}
    ip netns exec "$RC" iptables -I FORWARD -i "$c_lan_if" ! -s 10.202.4.0/24 -j DROP
    ip -n "$NA" route add default via 10.202.4.1
    kill -USR1 "$pid_a"
    echo "# roam: A moved from $A_LAN_IP behind ${old_ice%:*} to 10.202.4.2 behind $NAT_WAN_IP in $(lab_ms "$t_roam") ms, then SIGUSR1"
    recovery d wd roam "$t_roam" "$ROAM_BOUND"
    echo "# packets from A's old address dropped by the new router: $(dropped "$RC" 10.202.4.0)"
    lab_check "d: B's ICE path now goes to A's new public address $NAT_WAN_IP" \
        bash -c "'$PEERLINK' status --interface pbwd | grep -q '^  path: ice-p2p $NAT_WAN_IP:'"
    relay_port=${RELAY##*:}
    lab_check "d: A's relay connection is from its new address" bash -c \
        "ip netns exec '$NA' ss -Htn state established '( dport = :$relay_port )' | awk '{ print \$3 }' | grep -q '^10.202.4.2:'"
    ping_stop
    nb_stop_peers
fi

lab_summary
