#!/usr/bin/env bash
# Lab: peerlink joins a real NetBird network. NetBird's combined server (management, signal,
# relay, STUN) runs on a hub namespace and is bootstrapped headlessly (PAT, setup key); two
# `peerlink up --management-url … --setup-key …` peers and one NetBird Go client join from
# their own namespaces on one LAN, and every pair pings through the tunnel. Then: a bad setup
# key is a typed error, a peer deleted in management leaves the others' engines, the server
# restarts and everyone syncs again without restarting an engine, a peerlink peer and a Go
# peer each behind its own NAT meet over ICE (server-reflexive), and with UDP between the NATs
# blocked over NetBird's relay.
# Prints "figure" lines: peerlink start with a setup key → first reply from the Go peer
# (FIGURE_RUNS=N repeats the LAN and NAT figures N times and prints the medians).
# LAB_ONLY="nat blk lazy" picks the NAT sections and the lazy-connection section with a lazy Go
# peer (default: all); the LAN part always runs.
# MEMORY_PEERS=N (a figure, off by default): registers N offline peers (core's mgmt_register
# example, built with `cargo build --release -p peerlink-core --example mgmt_register`) and
# prints the resident memory of one peerlink engine in that network.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nat.sh"
source "$(dirname "$0")/mgmt.sh"
source "$(dirname "$0")/servers.sh"
lab_require_root
mgmt_require
lab_require_tool nb-relay
# LAB_KEEP=DIR keeps the logs (servers', peers') there after the run.
trap 'stop_servers; [[ -n ${LAB_KEEP:-} ]] && cp -r "$LAB_TMP" "$LAB_KEEP"; lab_cleanup' EXIT
want() { [[ -z ${LAB_ONLY:-} || " $LAB_ONLY " == *" $1 "* ]]; }

# The oldest NetBird release the Go module proxy serves that builds with today's Go.
OLD_GO_VERSION=0.48.0
HUB=nbmh$LAB_TAG
nat_server "$HUB"
mgmt_server_start "$HUB" 33073
lab_check "combined server: bootstrap a PAT and a setup key" mgmt_bootstrap

A=nbma$LAB_TAG B=nbmb$LAB_TAG G=nbmg$LAB_TAG
nat_same_lan "$A" "$B" 1
mgmt_hub_routes
lab_ns "$G"
_nat_join_lan "$A-r" 1 "$G" 4

# first_reply NS IP: pings until the first reply (bounded: 30 s). Each ping waits 100 ms for
# its reply, so the figure's resolution is 0.1 s (a lost early ping does not cost a second).
first_reply() {
    local deadline=$((SECONDS + 30))
    until ip netns exec "$1" ping -c 1 -W 0.1 "$2" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
    done
}

# join_figure NS NAME TOPO GO_IP: a fresh peerlink peer (new key, new registration) joins with
# the setup key; prints the time from its start to the first reply from the Go peer at GO_IP.
# Leaves the peer running (JOIN_PID).
join_figure() {
    local ns=$1 name=$2 topo=$3 go_ip=$4 start
    start=$EPOCHREALTIME
    JOIN_START=$start
    mgmt_up "$ns" "$name"
    JOIN_PID=$LAB_PID
    if first_reply "$ns" "$go_ip"; then
        echo "figure start with a setup key -> first reply from the Go peer, $topo: $(lab_ms "$start") ms" |
            tee -a "$LAB_TMP/figures"
    else
        echo "# $name: no reply from the Go peer within 30 s"
        tail -n 20 "$LAB_TMP/$name.log" | sed 's/^/#   /'
        return 1
    fi
}

# figure_runs MAKE_NS TOPO GO_IP: FIGURE_RUNS more joins, each from a fresh namespace that
# MAKE_NS NAME RUN creates (one tunnel per namespace, so the ping takes the new one), each peer
# deleted after; then the median.
figure_runs() {
    local make_ns=$1 topo=$2 go_ip=$3 run id ns
    for ((run = 1; run <= ${FIGURE_RUNS:-0}; run++)); do
        ns=nbf$topo$run$LAB_TAG
        "$make_ns" "$ns" "$run"
        join_figure "$ns" "fig$topo$run" "$topo run" "$go_ip" >/dev/null || true
        mgmt_stop "$JOIN_PID"
        id=$(mgmt_peer_id "fig$topo$run") && [[ -n $id ]] && mgmt_api DELETE "/api/peers/$id" >/dev/null
    done
    ((${FIGURE_RUNS:-0} > 0)) || return 0
    grep "$topo run:" "$LAB_TMP/figures" | awk '{ print $(NF-1) }' | sort -n | awk -v t="$topo" '
        { v[NR] = $1 } END { printf "figure start with a setup key -> first reply from the Go peer, %s: median %d ms of %d runs (min %d, max %d)\n", t, v[int((NR+1)/2)], NR, v[1], v[NR] }'
}

# ping_ok NS IP: one reply within a short bound, three tries.
ping_ok() { ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1 || ip netns exec "$1" ping -c 2 -i 0.3 -W 2 "$2"; }

# --- join: the Go peer first, then the two peerlink peers -------------------------------------
mgmt_go_peer "$G" gopeer
GO_PID=$MGMT_GO_PID
lab_wait 20 "the Go peer's address" bash -c "[[ -n \$(ip -n $G -4 addr show wt0 2>/dev/null | grep inet) ]]" ||
    tail -n 20 "$LAB_TMP/gopeer.log" >&2
GO_IP=$(mgmt_peer_ip gopeer)
GO_PUBS=("$(mgmt_go_pub gopeer)")
# An older Go client too (NetBird's users run mixed fleets), when build-tools built it.
OLD=
if [[ -x $PEERLINK_BIN/netbird-$OLD_GO_VERSION ]]; then
    OLD=nbmo$LAB_TAG
    lab_ns "$OLD"
    _nat_join_lan "$A-r" 1 "$OLD" 7
    mgmt_go_peer "$OLD" goold "netbird-$OLD_GO_VERSION"
    lab_wait 20 "the old Go peer's address" bash -c "[[ -n \$(ip -n $OLD -4 addr show wt0 2>/dev/null | grep inet) ]]" ||
        tail -n 20 "$LAB_TMP/goold.log" >&2
    OLD_IP=$(mgmt_peer_ip goold)
    GO_PUBS+=("$(mgmt_go_pub goold)")
else
    echo "# netbird-$OLD_GO_VERSION not built: the older Go client's checks are left out"
fi
# A controls its connections to the Go peers, B is controlled by them: both roles, every run.
mgmt_key_for pla controller "${GO_PUBS[@]}"
mgmt_key_for plb controlled "${GO_PUBS[@]}"
join_figure "$A" pla LAN "$GO_IP" || true
if [[ -n $OLD ]] && first_reply "$A" "$OLD_IP"; then
    echo "figure start with a setup key -> first reply from the v$OLD_GO_VERSION Go peer, LAN: $(lab_ms "$JOIN_START") ms" |
        tee -a "$LAB_TMP/figures"
fi
PLA_PID=$JOIN_PID
mgmt_up "$B" plb
PLB_PID=$LAB_PID
lab_wait 20 "plb's address" bash -c "'$PEERLINK' status --interface plb | grep -q 'address: '"
PLA_IP=$(mgmt_peer_ip pla) PLB_IP=$(mgmt_peer_ip plb)
echo "# addresses: pla $PLA_IP, plb $PLB_IP, gopeer $GO_IP${OLD:+, goold $OLD_IP}"
# B's peers learn of it through the server (about a second): wait for B's first replies.
first_reply "$B" "$GO_IP" || echo "# plb: no reply from the Go peer within 30 s"
[[ -z $OLD ]] || first_reply "$B" "$OLD_IP" || echo "# plb: no reply from the old Go peer within 30 s"

lab_check "peerlink A shows management connected and its address" bash -c \
    "'$PEERLINK' status --interface pla | grep -q 'management: connected' && '$PEERLINK' status --interface pla | grep -q 'address: $PLA_IP/'"
lab_check "peerlink A <-> Go peer ping both ways (A is the controller)" bash -c \
    "$(declare -f ping_ok); ping_ok $A $GO_IP && ping_ok $G $PLA_IP"
lab_check "peerlink B <-> Go peer ping both ways (the Go peer is the controller)" bash -c \
    "$(declare -f ping_ok); ping_ok $B $GO_IP && ping_ok $G $PLB_IP"
lab_check "a peer added to the network (B) appears in A's engine and connects" bash -c \
    "'$PEERLINK' status --interface pla | grep -q 'peer: $(cat "$LAB_TMP/plb.key" | "$PEERLINK" pubkey)'"
lab_check "peerlink A <-> peerlink B ping both ways" bash -c \
    "$(declare -f ping_ok); ping_ok $A $PLB_IP && ping_ok $B $PLA_IP"
lab_check "peerlink A reaches the Go peer over ICE P2P on the LAN" lab_wait 10 "ICE P2P to the Go peer" bash -c \
    "'$PEERLINK' status --interface pla | grep -A3 'name: gopeer' | grep -q 'path: ice-p2p '"
if [[ -n $OLD ]]; then
    lab_check "peerlink A <-> v$OLD_GO_VERSION Go peer ping both ways (A is the controller)" bash -c \
        "$(declare -f ping_ok); ping_ok $A $OLD_IP && ping_ok $OLD $PLA_IP"
    lab_check "peerlink B <-> v$OLD_GO_VERSION Go peer ping both ways (the Go peer is the controller)" bash -c \
        "$(declare -f ping_ok); ping_ok $B $OLD_IP && ping_ok $OLD $PLB_IP"
    lab_check "peerlink A reaches the v$OLD_GO_VERSION Go peer over ICE P2P on the LAN" lab_wait 10 "ICE P2P to the old Go peer" bash -c \
        "'$PEERLINK' status --interface pla | grep -A3 'name: goold' | grep -q 'path: ice-p2p '"
fi
lab_check "peerlink B (controlled) reaches the Go peer over ICE P2P on the LAN" lab_wait 10 "ICE P2P from B" bash -c \
    "'$PEERLINK' status --interface plb | grep -A3 'name: gopeer' | grep -q 'path: ice-p2p '"
lab_check "the server shows peerlink and its version" bash -c \
    "$(declare -f mgmt_api); MGMT_NS=$MGMT_NS MGMT_URL=$MGMT_URL MGMT_PAT=$MGMT_PAT; mgmt_api GET /api/peers | jq -e '.[] | select(.name == \"pla\") | .ui_version | startswith(\"peerlink/\")'"

# --- a bad setup key: a typed error, and the engine keeps running -----------------------------
C=nbmc$LAB_TAG
lab_ns "$C"
_nat_join_lan "$A-r" 1 "$C" 5
mgmt_up "$C" plc "00000000-0000-0000-0000-000000000000"
PLC_PID=$LAB_PID
lab_wait 15 "the bad key's verdict" grep -q "setup key was refused" "$LAB_TMP/plc.log"
lab_check "an invalid setup key is a typed error and the engine runs on" bash -c \
    "grep -q 'management failed: the setup key was refused' '$LAB_TMP/plc.log' && kill -0 $PLC_PID"
mgmt_stop "$PLC_PID"

# --- an unreachable server: retried with backoff, said in status ------------------------------
lab_bg "$C" "$LAB_TMP/pld.log" env RUST_LOG="${RUST_LOG:-info}" "$PEERLINK" up \
    --management-url "http://$NAT_SERVER_IP:1" --setup-key "$MGMT_SETUP_KEY" --interface pld \
    --key-file "$LAB_TMP/pld.key"
PLD_PID=$LAB_PID
lab_check "an unreachable server is retried with backoff and status says why" \
    lab_wait 15 "pld retrying twice" bash -c \
    "'$PEERLINK' status --interface pld | grep -q 'management: retrying (attempt [1-9][0-9]*): management server unreachable'"
mgmt_stop "$PLD_PID"

# --- a peer deleted in management leaves the others' engines -----------------------------------
PLB_ID=$(mgmt_peer_id plb)
PLB_KEY=$(cat "$LAB_TMP/plb.key" | "$PEERLINK" pubkey)
lab_check "before the deletion, A's engine has B" bash -c "'$PEERLINK' status --interface pla | grep -q 'peer: $PLB_KEY'"
lab_check "peer B deleted through the API" mgmt_api DELETE "/api/peers/$PLB_ID"
lab_check "a peer deleted in management disappears from the other engine" \
    lab_wait 10 "plb gone from pla" bash -c "! '$PEERLINK' status --interface pla | grep -q 'peer: $PLB_KEY'"
[[ $LAB_LAST_OK == 1 ]] || "$PEERLINK" status --interface pla | sed 's/^/#   /'
lab_check "the deleted peer's own engine is told it must log in again (no silent re-registration)" \
    lab_wait 15 "plb's verdict" grep -q "management failed: management needs a user login" "$LAB_TMP/plb.log"

lab_check "the Go peer still answers peerlink A" ping_ok "$A" "$GO_IP"
mgmt_stop "$PLB_PID"

# --- the server restarts: new session, same network, no engine restart -------------------------
logins() { grep -c "logged in to management" "$LAB_TMP/pla.log" || true; }
# go_switches: the switches in A's status for the Go peer (its block: name line to blank line).
go_switches() { "$PEERLINK" status --interface pla | awk '/name: gopeer/ { on = 1 } on && /^$/ { on = 0 } on && /switched/' | wc -l; }
before=$(logins)
switches_before=$(go_switches)
mgmt_server_stop
mgmt_server_start "$HUB" 33073
lab_check "after a server restart peerlink A logs in and syncs again (same engine)" \
    lab_wait 30 "pla logged in again" bash -c \
    "(( \$(grep -c 'logged in to management' '$LAB_TMP/pla.log') > $before )) && '$PEERLINK' status --interface pla | grep -q 'management: connected' && kill -0 $PLA_PID"
lab_check "after a server restart peerlink A <-> Go peer ping both ways" bash -c \
    "$(declare -f ping_ok); ping_ok $A $GO_IP && ping_ok $G $PLA_IP"
lab_check "the server restart and the re-sync left A's path to the Go peer alone (no switch)" \
    test "$(go_switches)" -eq "$switches_before"

# --- lazy connections with NetBird's Go client (issue 12): idle, and woken from either side -------
# A Go peer with lazy connections on (NetBird starts such peers closed and closes them after its
# threshold, checked once a minute) and a peerlink peer whose threshold is 60 s: the pair goes
# idle (peerlink's GO_IDLE closes the Go side), and a ping from either side wakes both.
if want lazy; then
    LZ=nbmlz$LAB_TAG LG=nbmlg$LAB_TAG
    lab_ns "$LZ"
    _nat_join_lan "$A-r" 1 "$LZ" 8
    lab_ns "$LG"
    _nat_join_lan "$A-r" 1 "$LG" 9
    MGMT_GO_LAZY=1m mgmt_go_peer "$LG" golazy
    lab_wait 20 "golazy's address" bash -c "[[ -n \$(ip -n $LG -4 addr show wt0 2>/dev/null | grep inet) ]]" || true
    GOLZ_IP=$(mgmt_peer_ip golazy)
    printf '[lazy]\ninactivity_threshold_secs = 60\n' >"$LAB_TMP/pllazy.toml"
    lab_bg "$LZ" "$LAB_TMP/pllazy.log" env RUST_LOG="${RUST_LOG:-info}" "$PEERLINK" up --config "$LAB_TMP/pllazy.toml" \
        --management-url "$MGMT_URL" --setup-key "$MGMT_SETUP_KEY" --hostname pllazy --interface pllazy \
        --key-file "$LAB_TMP/pllazy.key"
    PLLZ_PID=$LAB_PID
    lab_check "lazy: peerlink reaches the lazy Go peer (our offer opens its side)" first_reply "$LZ" "$GOLZ_IP"
    PLLZ_IP=$(mgmt_peer_ip pllazy)
    # go_lazy_is STATE: peerlink's connection to the Go peer is in STATE.
    go_lazy_is() { "$PEERLINK" status --interface pllazy | grep -A4 'name: golazy' | grep -q "connection: $1"; }
    # wake_from NS IP: five pings 1 s apart, each waiting up to 10 s: at least one answered
    # (ping fails only when none is). NetBird's side may drop the packet that woke it.
    wake_from() { ip netns exec "$1" ping -n -c 5 -i 1 -W 10 "$2"; }
    lab_check "lazy: quiet for 60 s, peerlink closes the connection to the Go peer" \
        lab_wait 110 "pllazy idle towards golazy" go_lazy_is idle
    lab_check "lazy: a ping from the Go peer wakes both sides and is answered" wake_from "$LG" "$PLLZ_IP"
    lab_check "lazy: peerlink's connection is open again" go_lazy_is "active\|waking"
    lab_check "lazy: quiet again, idle again" lab_wait 110 "pllazy idle again" go_lazy_is idle
    lab_check "lazy: a ping from peerlink wakes both sides and is answered" wake_from "$LZ" "$GOLZ_IP"
    [[ $LAB_LAST_OK == 1 ]] || "$PEERLINK" status --interface pllazy | sed 's/^/#   /'
    mgmt_stop "$PLLZ_PID"
    mgmt_stop "$MGMT_GO_PID"
fi

lan_ns() { lab_ns "$1"; _nat_join_lan "$A-r" 1 "$1" $((10 + $2)); }
figure_runs lan_ns LAN "$GO_IP"

# --- each behind its own NAT: ICE with server-reflexive candidates ------------------------------
NA=nbmna$LAB_TAG NG=nbmng$LAB_TAG
if want nat || want blk; then
    nat_behind "$NA" 2
    nat_behind "$NG" 3
    mgmt_hub_routes
    mgmt_go_peer "$NG" gonat
    GONAT_PID=$MGMT_GO_PID
    lab_wait 20 "gonat's address" bash -c "[[ -n \$(ip -n $NG -4 addr show wt0 2>/dev/null | grep inet) ]]" || true
    GONAT_IP=$(mgmt_peer_ip gonat)
fi
if want nat; then
    lab_check "two NATs: peerlink joins and gets a reply from the Go peer" join_figure "$NA" plnat NAT "$GONAT_IP"
    PLNAT_PID=${JOIN_PID:-}
    PLNAT_IP=$(mgmt_peer_ip plnat)
    lab_check "two NATs: ping both ways" bash -c \
        "$(declare -f ping_ok); ping_ok $NA $GONAT_IP && ping_ok $NG $PLNAT_IP"
    lab_wait 15 "ICE P2P through the NATs" bash -c \
        "'$PEERLINK' status --interface plnat | grep -A3 'name: gonat' | grep -q 'path: ice-p2p '" || true
    lab_check "two NATs: ICE P2P carries the traffic to the Go peer" bash -c \
        "'$PEERLINK' status --interface plnat | tee /dev/stderr | grep -A3 'name: gonat' | grep -q 'path: ice-p2p '"
    # The NetBird-4769 fault with NetBird's Go client on the other side: both routers drop
    # WireGuard and pass STUN (DESIGN §8's u32 rule), so ICE's checks keep succeeding. peerlink's
    # watcher condemns the ICE path and re-offers; traffic must flow again (on the relay) within
    # STALE_BOUND s. Figure: fault -> first reply after it.
    STALE_BOUND=${STALE_BOUND:-20}
    WG_U32='0>>22&0x3C@8&0x00FFFFFF=0 && 0>>22&0x3C@8>>24=1:4'
    go_fault() {
        local r
        for r in "$NA-r" "$NG-r"; do
            ip netns exec "$r" iptables "$1" FORWARD -p udp -m u32 --u32 "$WG_U32" -j DROP
        done
    }
    go_fault_hits() {
        local r n=0
        for r in "$NA-r" "$NG-r"; do
            n=$((n + $(ip netns exec "$r" iptables -L FORWARD -v -x -n | awk '/u32/ { s += $1 } END { print s + 0 }')))
        done
        echo "$n"
    }
    stale_recovers() {
        local log=$LAB_TMP/stale-ping.log start pid first
        lab_bg "$NA" "$log" ping -D -n -i 0.05 -W 1 "$GONAT_IP"
        pid=$LAB_PID
        lab_wait 10 "replies before the fault" bash -c "(( \$(grep -c 'bytes from' '$log') >= 10 ))" || return 1
        go_fault -I
        start=$EPOCHREALTIME
        # Replies in flight at the fault come within half a second; a later one is the recovery.
        lab_wait "$STALE_BOUND" "a reply after the fault" bash -c \
            "awk -v t=$start -F'[][]' '/bytes from/ && \$2 > t + 0.5 { found = 1 } END { exit !found }' '$log'"
        local ok=$? hits
        first=$(awk -v t="$start" -F'[][]' '/bytes from/ && $2 > t + 0.5 { print $2; exit }' "$log")
        kill "$pid" 2>/dev/null
        hits=$(go_fault_hits)
        go_fault -D
        ((ok == 0)) || { "$PEERLINK" status --interface plnat; return 1; }
        echo "figure stale ice-p2p to the Go peer -> traffic again: $(lab_ms "$start" "$first") ms" | tee -a "$LAB_TMP/figures"
        ((hits > 0)) || { echo "the fault's rules were never hit"; return 1; }
    }
    lab_check "two NATs: WireGuard dropped on the ICE path to the Go peer (STUN passing): traffic again within $STALE_BOUND s" \
        stale_recovers
    mgmt_stop "$PLNAT_PID"
    nat_ns() { nat_behind "$1" $((10 + $2)); mgmt_hub_routes; }
    figure_runs nat_ns NAT "$GONAT_IP"
fi

# --- UDP between the NATs blocked: NetBird's relay --------------------------------------------
if want blk; then
    nat_block_udp_between_peers
    lab_check "UDP blocked: peerlink joins and gets a reply from the Go peer" join_figure "$NA" plblk relay "$GONAT_IP"
    PLBLK_IP=$(mgmt_peer_ip plblk)
    lab_check "UDP blocked: ping both ways" bash -c \
        "$(declare -f ping_ok); ping_ok $NA $GONAT_IP && ping_ok $NG $PLBLK_IP"
    lab_check "UDP blocked: the relay carries the traffic to the Go peer" bash -c \
        "'$PEERLINK' status --interface plblk | grep -A3 'name: gonat' | grep -q 'path: relay '"
    nat_unblock_udp_between_peers
fi

# --- relay tokens: short-lived, refreshed by management, and the relay keeps working ------------
# The embedded relay's token TTL is fixed (12 h); NetBird's standalone relay as the network's
# relay lets the server hand out 10 s tokens, refreshed at 3/4 of that. Last: with an external
# relay the combined server no longer runs its STUN (it belongs to the embedded relay).
RELAY_SECRET=lab-relay-secret-$LAB_TAG
NETNS=$HUB RELAY_ADDR=$NAT_SERVER_IP SERVERS_LOG_DIR=$LAB_TMP start_relay 33080 "$RELAY_SECRET"
MGMT_EXTRA_YAML="  relays:
    addresses: [\"$RELAY_URL\"]
    credentialsTTL: \"10s\"
    secret: \"$RELAY_SECRET\""
refreshes() { grep -c "relay token refreshed by management" "$LAB_TMP/pla.log" || true; }
mgmt_server_stop
mgmt_server_start "$HUB" 33073
lab_check "management moves A to the standalone relay" \
    lab_wait 30 "pla on $RELAY_URL" bash -c "'$PEERLINK' status --interface pla | grep -q 'relay: Connected { server: \"$RELAY_URL\"'"
first=$(refreshes)
lab_check "the relay token is refreshed by management while the engine runs" \
    lab_wait 30 "two refreshes" bash -c "(( \$(grep -c 'relay token refreshed by management' '$LAB_TMP/pla.log') >= $first + 2 ))"
# The tokens of the login are expired by now: a new relay connection needs a refreshed one.
# SIGUSR1 (network changed) cuts the relay connection and reconnects it.
homes() { grep -c "home relay connected" "$LAB_TMP/pla.log" || true; }
homes_before=$(homes)
kill -USR1 "$PLA_PID"
lab_check "after the first tokens expired, A's relay reconnects with a refreshed one" \
    lab_wait 15 "pla's relay back" bash -c "(( \$(grep -c 'home relay connected' '$LAB_TMP/pla.log') > $homes_before )) &&
        '$PEERLINK' status --interface pla | grep -q 'relay: Connected { server: \"$RELAY_URL\"'"
lab_check "and A <-> Go peer ping both ways" bash -c \
    "$(declare -f ping_ok); ping_ok $A $GO_IP && ping_ok $G $PLA_IP"

# --- figure: memory of one engine in a network of many (mostly offline) peers -------------------
if ((${MEMORY_PEERS:-0} > 0)); then
    REGISTER=${MGMT_REGISTER:-${CARGO_TARGET_DIR:-$LAB_ROOT/target}/release/examples/mgmt_register}
    if [[ ! -x $REGISTER ]]; then
        echo "# memory figure skipped: $REGISTER not built"
    else
        ip netns exec "$A" "$REGISTER" "$MGMT_URL" "$MGMT_SETUP_KEY" "$MEMORY_PEERS"
        M=nbmm$LAB_TAG
        lab_ns "$M"
        _nat_join_lan "$A-r" 1 "$M" 6
        mgmt_up "$M" plmem
        PLMEM_PID=$LAB_PID
        lab_wait 60 "plmem's peers" bash -c \
            "(( \$('$PEERLINK' status --interface plmem | grep -c '^peer: ') >= $MEMORY_PEERS ))"
        # Let the connections settle (offers to the offline peers, relay subscriptions).
        sleep 15
        peers=$("$PEERLINK" status --interface plmem | grep -c '^peer: ')
        rss=$(awk '/VmRSS/ { print $2 }' "/proc/$PLMEM_PID/status")
        echo "figure resident memory of one engine, $peers peers in the network (most offline): $((rss / 1024)) MiB ($rss KiB)"
    fi
fi

grep '^figure stale' "$LAB_TMP/figures" 2>/dev/null || true
lab_summary
