#!/usr/bin/env bash
# Lab: peerlink joins a real NetBird network. NetBird's combined server (management, signal,
# relay, STUN) runs on a hub namespace and is bootstrapped headlessly (PAT, setup key); two
# `peerlink up --management-url … --setup-key …` peers and one NetBird Go client join from
# their own namespaces on one LAN, and every pair pings through the tunnel. Then: a bad setup
# key is a typed error, a peer deleted in management leaves the others' engines, and the
# server restarts with its keys and everyone syncs again without restarting an engine.
# Prints "figure" lines: peerlink start with a setup key → first reply from the Go peer.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nat.sh"
source "$(dirname "$0")/mgmt.sh"
lab_require_root
mgmt_require
trap 'lab_cleanup' EXIT

HUB=nbmh$LAB_TAG
nat_server "$HUB"
mgmt_server_start "$HUB" 33073
lab_check "combined server: bootstrap a PAT and a setup key" mgmt_bootstrap

A=nbma$LAB_TAG B=nbmb$LAB_TAG G=nbmg$LAB_TAG
nat_same_lan "$A" "$B" 1
lab_ns "$G"
_nat_join_lan "$A-r" 1 "$G" 4

# ping_ok NS IP: one reply within a short bound, three tries.
ping_ok() { ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1 || ip netns exec "$1" ping -c 2 -i 0.3 -W 2 "$2"; }
status_of() { "$PEERLINK" status --interface "$1"; }

# --- join: the Go peer first, then the two peerlink peers -------------------------------------
mgmt_go_peer "$G" gopeer
GO_PID=$MGMT_GO_PID
lab_wait 20 "the Go peer's address" bash -c "[[ -n \$(ip -n $G -4 addr show wt0 2>/dev/null | grep inet) ]]" ||
    tail -n 20 "$LAB_TMP/gopeer.log" >&2
GO_IP=$(mgmt_peer_ip gopeer)
start=$EPOCHREALTIME
mgmt_up "$A" pla
PLA_PID=$LAB_PID
first_reply() {
    local deadline=$((SECONDS + 30))
    until ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
    done
}
if first_reply "$A" "$GO_IP"; then
    echo "figure start with a setup key -> first reply from the Go peer, LAN: $(lab_ms "$start") ms" | tee -a "$LAB_TMP/figures"
fi
mgmt_up "$B" plb
PLB_PID=$LAB_PID
lab_wait 20 "plb's address" bash -c "status_of() { '$PEERLINK' status --interface \$1; }; status_of plb | grep -q 'address: '"
PLA_IP=$(mgmt_peer_ip pla) PLB_IP=$(mgmt_peer_ip plb)
echo "# addresses: pla $PLA_IP, plb $PLB_IP, gopeer $GO_IP"

lab_check "peerlink A shows management connected and its address" bash -c \
    "'$PEERLINK' status --interface pla | grep -q 'management: connected' && '$PEERLINK' status --interface pla | grep -q 'address: $PLA_IP/'"
lab_check "peerlink A <-> Go peer ping both ways" bash -c \
    "$(declare -f ping_ok); ping_ok $A $GO_IP && ping_ok $G $PLA_IP"
lab_check "peerlink B <-> Go peer ping both ways" bash -c \
    "$(declare -f ping_ok); ping_ok $B $GO_IP && ping_ok $G $PLB_IP"
lab_check "peerlink A <-> peerlink B ping both ways" bash -c \
    "$(declare -f ping_ok); ping_ok $A $PLB_IP && ping_ok $B $PLA_IP"
lab_check "peerlink A reaches the Go peer over ICE P2P on the LAN" bash -c \
    "'$PEERLINK' status --interface pla | grep -A3 'name: gopeer' | grep -q 'path: ice-p2p '"
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

# --- a peer deleted in management leaves the others' engines -----------------------------------
PLB_ID=$(mgmt_peer_id plb)
PLB_KEY=$(cat "$LAB_TMP/plb.key" | "$PEERLINK" pubkey)
mgmt_api DELETE "/api/peers/$PLB_ID" >/dev/null
lab_check "a peer deleted in management disappears from the other engine" \
    lab_wait 10 "plb gone from pla" bash -c "! '$PEERLINK' status --interface pla | grep -q 'peer: $PLB_KEY'"
lab_check "the Go peer still answers peerlink A" ping_ok "$A" "$GO_IP"
mgmt_stop "$PLB_PID"

# --- the server restarts: new session, same network, no engine restart -------------------------
mgmt_server_stop
mgmt_server_start "$HUB" 33073
lab_check "after a server restart peerlink A syncs again" \
    lab_wait 30 "pla connected again" bash -c "'$PEERLINK' status --interface pla | grep -q 'management: connected'"
lab_check "after a server restart peerlink A <-> Go peer ping both ways" bash -c \
    "$(declare -f ping_ok); ping_ok $A $GO_IP && ping_ok $G $PLA_IP"

[[ -f $LAB_TMP/figures ]] && cat "$LAB_TMP/figures" >/dev/null
lab_summary
