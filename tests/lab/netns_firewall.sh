#!/usr/bin/env bash
# Lab: NetBird's access policies on peerlink (issue 15). NetBird's combined server on a hub;
# on one LAN a NetBird Go client in group "fw-src" and `peerlink up` in group "fw-dst" (each
# joins with a setup key whose auto group puts it there). Through the management REST API the
# default allow-all policy is deleted and replaced by two: TCP 22 from fw-src to fw-dst, and
# ICMP from fw-dst to fw-src (so that the Go peer answers peerlink's pings). Then:
#   - the Go peer reaches TCP 22 on peerlink; TCP 80, UDP and its pings are dropped, and
#     peerlink's status counts the drops ("filtered: N without rule");
#   - peerlink's pings to the Go peer get their replies (flow state: no rule lets them in);
#   - a second Go client in fw-dst gets the same answers from its own (NetBird's) filter;
#   - the policy changed to allow-all through the API: TCP 80 answers within one sync
#     (figure: API call -> first TCP 80 echo), and a TCP 22 connection opened before the
#     change keeps echoing through it;
#   - FIGURE_RUNS (default 3) more changes each way, with the medians as figures.
# Needs root, NetBird's combined server and Go client (tests/lab/build-tools.sh), python3.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nat.sh"
source "$(dirname "$0")/mgmt.sh"
lab_require_root
mgmt_require
command -v python3 >/dev/null 2>&1 || lab_skip "python3 missing"
PROBE=$LAB_ROOT/tests/lab/fwprobe.py
# LAB_KEEP=DIR keeps the logs after the run.
trap '[[ -n ${LAB_KEEP:-} ]] && cp -r "$LAB_TMP" "$LAB_KEEP"; lab_cleanup' EXIT

HUB=fwh$LAB_TAG
nat_server "$HUB"
mgmt_server_start "$HUB" 33073
lab_check "combined server: bootstrap a PAT and a setup key" mgmt_bootstrap

# --- groups, setup keys that put peers in them, and the policies --------------------------------
# api_id METHOD PATH JSON: the `id` of what the API created.
api_id() { mgmt_api "$@" | jq -r .id; }
SRC_GROUP=$(api_id POST /api/groups '{"name":"fw-src"}')
DST_GROUP=$(api_id POST /api/groups '{"name":"fw-dst"}')
ALL_GROUP=$(mgmt_api GET /api/groups | jq -r '.[] | select(.name == "All") | .id')
setup_key_for() {
    mgmt_api POST /api/setup-keys "{\"name\":\"$1\",\"type\":\"reusable\",\"expires_in\":86400,\"auto_groups\":[\"$2\"],\"usage_limit\":0,\"ephemeral\":false}" |
        jq -r .key
}
SRC_KEY=$(setup_key_for fw-src "$SRC_GROUP")
DST_KEY=$(setup_key_for fw-dst "$DST_GROUP")
# policy_json NAME PROTOCOL PORTS_JSON SOURCE DESTINATION BIDIRECTIONAL
policy_json() {
    jq -nc --arg name "$1" --arg proto "$2" --argjson ports "$3" --arg src "$4" --arg dst "$5" --argjson bi "$6" \
        '{name: $name, enabled: true, rules: [{name: $name, enabled: true, action: "accept", bidirectional: $bi,
          protocol: $proto, ports: $ports, sources: [$src], destinations: [$dst]}]}'
}
DEFAULT_POLICY=$(mgmt_api GET /api/policies | jq -r '.[] | select(.name == "Default") | .id')
lab_check "the default allow-all policy is deleted" mgmt_api DELETE "/api/policies/$DEFAULT_POLICY"
SSH_POLICY=$(api_id POST /api/policies "$(policy_json ssh-only tcp '["22"]' "$SRC_GROUP" "$DST_GROUP" false)")
PING_POLICY=$(api_id POST /api/policies "$(policy_json ping-back icmp '[]' "$DST_GROUP" "$SRC_GROUP" false)")
lab_check "policies created: TCP 22 fw-src -> fw-dst, ICMP fw-dst -> fw-src" \
    test -n "$SSH_POLICY" -a "$SSH_POLICY" != null -a -n "$PING_POLICY" -a "$PING_POLICY" != null

# --- the peers: the Go client (fw-src), peerlink and a second Go client (fw-dst) --------------
P=fwp$LAB_TAG G=fwg$LAB_TAG D=fwd$LAB_TAG
nat_same_lan "$P" "$G" 1
lab_ns "$D"
_nat_join_lan "$P-r" 1 "$D" 4
# go_peer NS NAME KEY: NetBird's Go client joining with setup key KEY; waits for its address.
go_peer() {
    MGMT_SETUP_KEY=$3 mgmt_go_peer "$1" "$2"
    lab_wait 20 "$2's address" bash -c "[[ -n \$(ip -n $1 -4 addr show wt0 2>/dev/null | grep inet) ]]" ||
        tail -n 20 "$LAB_TMP/$2.log" >&2
}
go_peer "$G" gosrc "$SRC_KEY"
go_peer "$D" godst "$DST_KEY"
mgmt_up "$P" plfw "$DST_KEY"
lab_wait 20 "plfw's address" bash -c "'$PEERLINK' status --interface plfw | grep -q 'address: '"
GO_IP=$(mgmt_peer_ip gosrc) PL_IP=$(mgmt_peer_ip plfw) GD_IP=$(mgmt_peer_ip godst)
echo "# addresses: plfw $PL_IP, gosrc $GO_IP, godst $GD_IP"
lab_bg "$P" "$LAB_TMP/serve-pl.log" python3 "$PROBE" serve 22 80
lab_bg "$D" "$LAB_TMP/serve-gd.log" python3 "$PROBE" serve 22 80
lab_wait 10 "the echo servers" bash -c "grep -q serving '$LAB_TMP/serve-pl.log' && grep -q serving '$LAB_TMP/serve-gd.log'"

# pl_status: peerlink's status; filtered_no_rule: its "without rule" drops from the Go peer.
pl_status() { "$PEERLINK" status --interface plfw; }
filtered_no_rule() {
    pl_status | awk '/^peer: / { on = 0 } /name: gosrc/ { on = 1 } on && /filtered:/ { n = $2 } END { print n + 0 }'
}
probe() { ip netns exec "$G" python3 "$PROBE" "$@"; }
refused() { ! probe "$@"; }

# The first exchange also waits for the connection: peerlink's ping to the Go peer (allowed
# there by ping-back) and its reply (let in here by flow state alone).
lab_check "peerlink pings the Go peer and gets the replies (flow state; no rule lets them in)" \
    lab_wait 30 "a reply from gosrc" ip netns exec "$P" ping -c 1 -W 1 "$GO_IP"
lab_check "the Go peer in fw-src reaches TCP 22 on peerlink" lab_wait 15 "TCP 22 from gosrc" probe tcp "$PL_IP" 22 1
drops_before=$(filtered_no_rule)
lab_check "the Go peer is refused on TCP 80 (times out)" refused tcp "$PL_IP" 80 2
lab_check "the Go peer is refused on UDP" refused udp "$PL_IP" 22 2
lab_check "the Go peer's pings to peerlink get no reply" bash -c "! ip netns exec $G ping -c 2 -i 0.3 -W 1 $PL_IP"
drops_after=$(filtered_no_rule)
lab_check "peerlink's status counts the drops without rule ($drops_before -> $drops_after)" \
    test "$drops_after" -gt "$drops_before"
[[ $LAB_LAST_OK == 1 ]] || pl_status | sed 's/^/#   /'

# NetBird's own client under the same policy (fw-dst too) gives the same answers.
lab_wait 15 "TCP 22 from gosrc to godst" probe tcp "$GD_IP" 22 1 || true
lab_check "NetBird's Go client in fw-dst agrees: TCP 22 passes, TCP 80 and UDP are refused, pings unanswered" bash -c \
    "$(declare -f probe refused); G=$G PROBE=$PROBE
     probe tcp $GD_IP 22 2 && refused tcp $GD_IP 80 2 && refused udp $GD_IP 22 2 && ! ip netns exec $G ping -c 2 -i 0.3 -W 1 $GD_IP"

# --- the policy changed to allow-all, with a TCP 22 connection open ------------------------------
lab_bg "$G" "$LAB_TMP/hold.log" python3 "$PROBE" hold "$PL_IP" 22
HOLD_PID=$LAB_PID
lab_wait 10 "the held connection echoing" grep -q "^ok 5$" "$LAB_TMP/hold.log"
start=$EPOCHREALTIME
mgmt_api PUT "/api/policies/$SSH_POLICY" "$(policy_json allow-all all '[]' "$ALL_GROUP" "$ALL_GROUP" true)" >/dev/null
if probe until "$PL_IP" 80 15; then
    echo "figure policy change in the management API -> enforced (first TCP 80 echo through peerlink): $(lab_ms "$start") ms" |
        tee -a "$LAB_TMP/figures"
    lab_check "after the change to allow-all the Go peer reaches TCP 80 within one sync" true
else
    lab_check "after the change to allow-all the Go peer reaches TCP 80 within one sync" false
    pl_status | sed 's/^/#   /'
fi
lab_check "after the change UDP and pings from the Go peer pass too" bash -c \
    "$(declare -f probe); G=$G PROBE=$PROBE; probe udp $PL_IP 22 2 && ip netns exec $G ping -c 1 -W 2 $PL_IP"
held=$(grep -c '^ok' "$LAB_TMP/hold.log")
lab_check "the TCP 22 connection opened before the change still echoes after it" \
    lab_wait 5 "more echoes on the held connection" bash -c \
    "(( \$(grep -c '^ok' '$LAB_TMP/hold.log') > $held + 5 )) && ! grep -q broken '$LAB_TMP/hold.log' && kill -0 $HOLD_PID"
[[ $LAB_LAST_OK == 1 ]] || tail -n 3 "$LAB_TMP/hold.log" | sed 's/^/#   /'

# --- figure: more policy changes, both ways (FIGURE_RUNS, default 3) -----------------------------
# Back to TCP 22 only: time until a new TCP 80 connection is refused (each refused attempt
# waits 0.3 s, so that figure is coarse); then allow-all again: time until TCP 80 echoes.
ssh_only=$(policy_json ssh-only tcp '["22"]' "$SRC_GROUP" "$DST_GROUP" false)
allow_all=$(policy_json allow-all all '[]' "$ALL_GROUP" "$ALL_GROUP" true)
for ((run = 1; run <= ${FIGURE_RUNS:-3}; run++)); do
    start=$EPOCHREALTIME
    mgmt_api PUT "/api/policies/$SSH_POLICY" "$ssh_only" >/dev/null
    if ! lab_wait 15 "TCP 80 refused again" refused tcp "$PL_IP" 80 0.3; then
        echo "# run $run: TCP 80 still answered 15 s after the change back to TCP 22 only"
        continue
    fi
    echo "restrict $(lab_ms "$start")" >>"$LAB_TMP/toggles"
    start=$EPOCHREALTIME
    mgmt_api PUT "/api/policies/$SSH_POLICY" "$allow_all" >/dev/null
    probe until "$PL_IP" 80 15 && echo "open $(lab_ms "$start")" >>"$LAB_TMP/toggles"
done
for kind in open restrict; do
    grep "^$kind " "$LAB_TMP/toggles" 2>/dev/null | awk '{ print $2 }' | sort -n | awk -v k="$kind" '
        { v[NR] = $1 } END { if (NR) printf "figure policy change in the management API -> enforced (%s): median %d ms of %d (min %d, max %d)\n",
          k == "open" ? "allow-all: first TCP 80 echo" : "TCP 22 only: first TCP 80 refused, 0.3 s resolution", v[int((NR+1)/2)], NR, v[1], v[NR] }'
done | tee -a "$LAB_TMP/figures"
[[ -n ${FIGURE_RUNS:-} && $FIGURE_RUNS == 0 ]] || lab_check "policy changes both ways took effect in every run" \
    test "$(grep -c . "$LAB_TMP/toggles" 2>/dev/null || echo 0)" -eq $((2 * ${FIGURE_RUNS:-3}))

lab_summary
