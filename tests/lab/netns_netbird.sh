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
coturn_available || lab_skip "coturn missing (apt-get install -y coturn)"
lab_require_tool nb-signal
lab_require_tool nb-relay
trap 'stop_servers; coturn_stop; lab_cleanup' EXIT

SRV=nbsrv$LAB_TAG
nat_server "$SRV"
coturn_start "$SRV" "$NAT_SERVER_IP" 3478
SECRET=lab-relay-secret-$LAB_TAG
NETNS=$SRV start_signal 10000
NETNS=$SRV RELAY_ADDR=$NAT_SERVER_IP start_relay 33080 "$SECRET"
SIGNAL_URL=http://$NAT_SERVER_IP:10000
RELAY=rel://$NAT_SERVER_IP:33080

# conf NAME IFACE N KEY PEER_PUB PEER_N WITH_RELAY ICE_EXTRA: a config for `peerlink up`.
conf() {
    local name=$1 iface=$2 n=$3 key=$4 ppub=$5 pn=$6 with_relay=$7 ice_extra=$8
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

[ice]
stun = ["$COTURN_STUN_URL"]
$ice_extra
TOML
        if [[ $with_relay == yes ]]; then
            printf '\n[relay]\nurls = ["%s"]\nsecret = "%s"\n' "$RELAY" "$SECRET"
        fi
    } >"$LAB_TMP/$name.toml"
}

# connect TAG NS_A NS_B WITH_RELAY ICE_EXTRA: start both peers, wait for the first reply.
connect() {
    local tag=$1 a=$2 b=$3 with_relay=$4 ice_extra=${5:-}
    local ka kb
    ka=$("$PEERLINK" genkey)
    kb=$("$PEERLINK" genkey)
    conf "$tag-a" "pa$tag" 1 "$ka" "$(peerlink_pub "$kb")" 2 "$with_relay" "$ice_extra"
    conf "$tag-b" "pb$tag" 2 "$kb" "$(peerlink_pub "$ka")" 1 "$with_relay" "$ice_extra"
    local start=$EPOCHREALTIME
    peerlink_up "$a" "pa$tag" "$LAB_TMP/$tag-a.toml" "$LAB_TMP/$tag-a.log"
    PEER_PIDS+=("$LAB_PID")
    peerlink_up "$b" "pb$tag" "$LAB_TMP/$tag-b.toml" "$LAB_TMP/$tag-b.log"
    PEER_PIDS+=("$LAB_PID")
    local deadline=$((SECONDS + 20))
    until ip netns exec "$a" ping -c 1 -W 1 10.254.0.2 >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "# $tag: no reply within 20 s"
            tail -n 20 "$LAB_TMP/$tag-a.log" | sed 's/^/#   a: /'
            tail -n 20 "$LAB_TMP/$tag-b.log" | sed 's/^/#   b: /'
            return 1
        fi
    done
    local ms
    ms=$(python3 -c "print(round((float('$EPOCHREALTIME') - float('$start')) * 1000))")
    echo "figure start -> first reply, $tag: $ms ms" | tee -a "$LAB_TMP/figures"
}

# path_is NS IFACE KIND: the peer's active path in `peerlink status`.
path_is() {
    "$PEERLINK" status --interface "$2" | grep -q "path: $3 "
}

# stop_peers: stops the peers of the last section (coturn and the servers run on).
PEER_PIDS=()
stop_peers() {
    local pid
    for pid in "${PEER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PEER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PEER_PIDS=()
}

# Sections to run (all by default): LAB_ONLY="lan nat blk sym".
want() { [[ -z ${LAB_ONLY:-} || " $LAB_ONLY " == *" $1 "* ]]; }

# --- same LAN: host candidates -------------------------------------------------------------
if want lan; then
LA=nbla$LAB_TAG LB=nblb$LAB_TAG
nat_same_lan "$LA" "$LB" 1
lab_check "same LAN: connected through signal" connect lan "$LA" "$LB" yes
lab_check "same LAN: ping both ways" bash -c \
    "ip netns exec $LA ping -c 2 -i 0.2 -W 2 10.254.0.2 && ip netns exec $LB ping -c 2 -i 0.2 -W 2 10.254.0.1"
lab_wait 10 "ICE P2P on the LAN" path_is "$LA" palan ice-p2p
lab_check "same LAN: ICE P2P carries the traffic, relay on standby" bash -c \
    "'$PEERLINK' status --interface palan | grep -q 'path: ice-p2p ' && '$PEERLINK' status --interface palan | grep -q 'standby: relay '"
stop_peers
fi

# --- each behind its own NAT: server-reflexive ---------------------------------------------
NA=nbna$LAB_TAG NB=nbnb$LAB_TAG
if want nat || want blk; then
nat_behind "$NA" 2
nat_behind "$NB" 3
fi
if want nat; then
lab_check "two NATs: connected through signal" connect nat "$NA" "$NB" yes
lab_wait 15 "ICE P2P through the NATs" path_is "$NA" panat ice-p2p || true
lab_check "two NATs: ICE P2P carries the traffic" path_is "$NA" panat ice-p2p
lab_check "two NATs: ping both ways" bash -c \
    "ip netns exec $NA ping -c 2 -i 0.2 -W 2 10.254.0.2 && ip netns exec $NB ping -c 2 -i 0.2 -W 2 10.254.0.1"
stop_peers
fi

# --- UDP between the NATs blocked: NetBird's relay ------------------------------------------
if want blk; then
nat_block_udp_between_peers
lab_check "UDP blocked: connected through signal" connect blk "$NA" "$NB" yes
lab_check "UDP blocked: the relay carries the traffic" path_is "$NA" pablk relay
lab_check "UDP blocked: ping both ways through the relay" bash -c \
    "ip netns exec $NA ping -c 3 -i 0.2 -W 2 10.254.0.2 && ip netns exec $NB ping -c 3 -i 0.2 -W 2 10.254.0.1"
stop_peers
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
lab_check "symmetric NATs, no relay: connected through signal" connect sym "$SA" "$SB" no "$TURN_EXTRA"
lab_check "symmetric NATs: ICE through TURN carries the traffic" path_is "$SA" pasym ice-turn
lab_check "symmetric NATs: ping both ways" bash -c \
    "ip netns exec $SA ping -c 2 -i 0.2 -W 2 10.254.0.2 && ip netns exec $SB ping -c 2 -i 0.2 -W 2 10.254.0.1"
stop_peers
fi

# --- figures: start -> first reply over ICE alone (no relay to answer first), FIGURE_RUNS each --
if [[ ${FIGURE_RUNS:-0} -gt 0 ]]; then
    for topo in lan nat; do
        if [[ $topo == lan ]]; then fa=$LA fb=$LB; else fa=$NA fb=$NB; fi
        [[ -n ${fa:-} ]] || continue
        for ((run = 1; run <= FIGURE_RUNS; run++)); do
            connect "i$topo$run" "$fa" "$fb" no >/dev/null 2>&1 || echo "# $topo run $run: no reply"
            stop_peers
        done
        grep "i$topo[0-9]*:" "$LAB_TMP/figures" | awk '{ print $(NF-1) }' | sort -n | awk -v t="$topo" '
            { v[NR] = $1 } END { printf "figure start -> first reply over ICE only, %s: median %d ms of %d runs (min %d, max %d)\n", t, v[int((NR+1)/2)], NR, v[1], v[NR] }'
    done
fi

[[ -f $LAB_TMP/figures ]] && grep -vE ', i(lan|nat)[0-9]+:' "$LAB_TMP/figures"
lab_summary
