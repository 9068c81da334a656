#!/usr/bin/env bash
# Lab: `peerlink up` on real tuns, finding each other only through NetBird's own signal server,
# with NetBird's relay server and coturn, all on a hub namespace; peers in NAT topologies:
#   same LAN                      → ICE P2P (host candidates)
#   each behind its own NAT       → ICE P2P (server-reflexive)
#   UDP between the NATs blocked  → NetBird's relay carries the traffic
#   symmetric NATs, no relay      → ICE through TURN (coturn)
# Each check pings both ways through the tunnel and reads the path in `peerlink status`.
# Prints "figure" lines: start → first reply per topology.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nat.sh"
source "$(dirname "$0")/coturn.sh"
source "$(dirname "$0")/servers.sh"
lab_require_root
nb_lab_require
trap 'stop_servers; coturn_stop; lab_cleanup' EXIT

nb_lab_servers nbsrv$LAB_TAG

# Sections to run (all by default): LAB_ONLY="lan nat rebind blk sym".
want() { [[ -z ${LAB_ONLY:-} || " $LAB_ONLY " == *" $1 "* ]]; }

# --- same LAN: host candidates -------------------------------------------------------------
if want lan; then
LA=nbla$LAB_TAG LB=nblb$LAB_TAG
nat_same_lan "$LA" "$LB" 1
lab_check "same LAN: connected through signal" nb_connect lan "$LA" "$LB" yes yes
lab_check "same LAN: ping both ways" bash -c \
    "ip netns exec $LA ping -c 2 -i 0.2 -W 2 10.254.0.2 && ip netns exec $LB ping -c 2 -i 0.2 -W 2 10.254.0.1"
lab_wait 10 "ICE P2P on the LAN" nb_path_is "$LA" palan ice-p2p
# A quiet peer's status is refreshed every 30 s (a path's first proof and any data at once):
# the standby may show up to then.
lab_check "same LAN: ICE P2P carries the traffic, relay on standby" lab_wait 35 "relay standby" bash -c \
    "'$PEERLINK' status --interface palan | grep -q 'path: ice-p2p ' && '$PEERLINK' status --interface palan | grep -q 'standby: relay '"
nb_stop_peers
fi

# --- each behind its own NAT: server-reflexive ---------------------------------------------
NA=nbna$LAB_TAG NB=nbnb$LAB_TAG
if want nat || want blk || want rebind; then
nat_behind "$NA" 2
NA_WAN_IF=$NAT_WAN_IF
nat_behind "$NB" 3
fi
if want nat; then
lab_check "two NATs: connected through signal" nb_connect nat "$NA" "$NB" yes yes
lab_wait 15 "ICE P2P through the NATs" nb_path_is "$NA" panat ice-p2p || true
lab_check "two NATs: ICE P2P carries the traffic" nb_path_is "$NA" panat ice-p2p
lab_check "two NATs: ping both ways" bash -c \
    "ip netns exec $NA ping -c 2 -i 0.2 -W 2 10.254.0.2 && ip netns exec $NB ping -c 2 -i 0.2 -W 2 10.254.0.1"
# DESIGN 2: WireGuard, ICE's checks and STUN share the engine's one UDP socket.
lab_check "two NATs: each engine holds one UDP socket" bash -c \
    "[[ \$(ip netns exec $NA ss -Huanp | grep -c 'pid=${NB_PEER_PIDS[0]},') == 1 && \$(ip netns exec $NB ss -Huanp | grep -c 'pid=${NB_PEER_PIDS[1]},') == 1 ]]"
nb_stop_peers
fi

# --- NAT rebinding: A's router forgets its mappings and maps the shared socket anew ----------
# (conntrack flushed, new mappings from another port range): ICE's consent checks and WireGuard
# share that one mapping, so they must recover together, back on ICE P2P.
if want rebind; then
lab_check "NAT rebinding: connected through signal" nb_connect rebind "$NA" "$NB" yes yes
lab_wait 15 "ICE P2P through the NATs" nb_path_is "$NA" parebind ice-p2p || true
lab_check "NAT rebinding: ICE P2P before" nb_path_is "$NA" parebind ice-p2p
ip netns exec "$NA" ping -i 0.1 -W 1 10.254.0.2 >"$LAB_TMP/rebind-ping.log" 2>&1 &
rebind_ping=$!
_LAB_PIDS+=("$rebind_ping")
lab_wait 10 "pings answered" grep -q 'bytes from' "$LAB_TMP/rebind-ping.log"
ip netns exec "$NA-r" iptables -t nat -F POSTROUTING
ip netns exec "$NA-r" iptables -t nat -A POSTROUTING -o "$NA_WAN_IF" -p udp -j MASQUERADE --to-ports 20000-20999
ip netns exec "$NA-r" iptables -t nat -A POSTROUTING -o "$NA_WAN_IF" -j MASQUERADE
ip netns exec "$NA-r" conntrack -F >/dev/null 2>&1
rebind_at=$EPOCHREALTIME
replies_before=$(grep -c 'bytes from' "$LAB_TMP/rebind-ping.log")
lab_check "NAT rebinding: pings answered again" lab_wait 30 "replies after the rebinding" \
    bash -c "(( \$(grep -c 'bytes from' '$LAB_TMP/rebind-ping.log') > $replies_before + 5 ))"
echo "figure NAT rebinding -> pings answered again: $(lab_ms "$rebind_at") ms (upper bound: 5 replies after)" | tee -a "$LAB_TMP/figures"
lab_check "NAT rebinding: back on ICE P2P through the new mapping" lab_wait 30 "ICE P2P again" nb_path_is "$NA" parebind ice-p2p
lab_check "NAT rebinding: the router mapped the shared socket anew" bash -c \
    "ip netns exec $NA-r conntrack -L -p udp 2>/dev/null | grep -qE 'dport=20[0-9]{3} '"
kill "$rebind_ping" 2>/dev/null || true
nb_stop_peers
fi

# --- UDP between the NATs blocked: NetBird's relay ------------------------------------------
if want blk; then
nat_block_udp_between_peers
lab_check "UDP blocked: connected through signal" nb_connect blk "$NA" "$NB" yes yes
lab_check "UDP blocked: the relay carries the traffic" nb_path_is "$NA" pablk relay
lab_check "UDP blocked: ping both ways through the relay" bash -c \
    "ip netns exec $NA ping -c 3 -i 0.2 -W 2 10.254.0.2 && ip netns exec $NB ping -c 3 -i 0.2 -W 2 10.254.0.1"
nb_stop_peers
nat_unblock_udp_between_peers
fi

# --- symmetric NATs, no NetBird relay: ICE through TURN --------------------------------------
if want sym; then
SA=nbsa$LAB_TAG SB=nbsb$LAB_TAG
nat_behind "$SA" 4 --random-fully
nat_behind "$SB" 5 --random-fully
TURN_USER=$(( $(date +%s) + 3600 )):lab
TURN_PASS=$(printf '%s' "$TURN_USER" | openssl dgst -sha1 -hmac "$COTURN_SECRET" -binary | base64)
TURN_EXTRA="[[ice.turn]]
url = \"$COTURN_URL\"
username = \"$TURN_USER\"
credential = \"$TURN_PASS\""
lab_check "symmetric NATs, no relay: connected through signal" nb_connect sym "$SA" "$SB" no yes "$TURN_EXTRA"
lab_check "symmetric NATs: ICE through TURN carries the traffic" nb_path_is "$SA" pasym ice-turn
lab_check "symmetric NATs: ping both ways" bash -c \
    "ip netns exec $SA ping -c 2 -i 0.2 -W 2 10.254.0.2 && ip netns exec $SB ping -c 2 -i 0.2 -W 2 10.254.0.1"
nb_stop_peers
fi

# --- figures: start -> first reply over ICE alone (no relay to answer first), FIGURE_RUNS each --
if [[ ${FIGURE_RUNS:-0} -gt 0 ]]; then
    for topo in lan nat; do
        if [[ $topo == lan ]]; then fa=$LA fb=$LB; else fa=$NA fb=$NB; fi
        [[ -n ${fa:-} ]] || continue
        for ((run = 1; run <= FIGURE_RUNS; run++)); do
            nb_connect "i$topo$run" "$fa" "$fb" no yes >/dev/null 2>&1 || echo "# $topo run $run: no reply"
            nb_stop_peers
        done
        grep "i$topo[0-9]*:" "$LAB_TMP/figures" | awk '{ print $(NF-1) }' | sort -n | awk -v t="$topo" '
            { v[NR] = $1 } END { printf "figure start -> first reply over ICE only, %s: median %d ms of %d runs (min %d, max %d)\n", t, v[int((NR+1)/2)], NR, v[1], v[NR] }'
    done
fi

[[ -f $LAB_TMP/figures ]] && grep -vE ', i(lan|nat)[0-9]+:' "$LAB_TMP/figures"
lab_summary
