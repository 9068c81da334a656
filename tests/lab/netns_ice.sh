#!/usr/bin/env bash
# Lab: the ICE worker end to end between namespaces, one `ice_pair` example per side, with
# coturn as STUN/TURN server on the hub:
#   same LAN                 → host candidates
#   two NATs (MASQUERADE)    → server-reflexive candidates, ICE P2P
#   two symmetric NATs       → TURN forced, relay candidates
#   UDP blocked between NATs → fails within a bound, with a clear message
# and what an idle connected pair sends (STUN consent checks), counted on a NAT router.
# Connect times: median of ICE_RUNS runs per topology (both sides' figures).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nat.sh"
source "$(dirname "$0")/coturn.sh"
lab_require_root
coturn_available || lab_skip "coturn missing (apt-get install -y coturn)"
trap 'coturn_stop; lab_cleanup' EXIT

ICE_PAIR=${ICE_PAIR:-$LAB_ROOT/target/release/examples/ice_pair}
if [[ ! -x $ICE_PAIR ]]; then
    echo "# building $ICE_PAIR"
    (cd "$LAB_ROOT" && cargo build --release -q -p peerlink-core --example ice_pair)
fi
ICE_RUNS=${ICE_RUNS:-5}
# Seconds an idle connected pair is watched for its STUN traffic.
ICE_IDLE=${ICE_IDLE:-30}
# NetBird's timeouts make checking give up after disconnected + failed = 12 s; 20 s bounds it.
ICE_TIMEOUT=${ICE_TIMEOUT:-20}

SRV=plsrv$LAB_TAG
nat_server "$SRV"
coturn_start "$SRV" "$NAT_SERVER_IP" 3478
STUN=(--stun "$COTURN_STUN_URL")
TURN=(--turn "$COTURN_URL" --turn-secret "$COTURN_SECRET" --force-turn)

LAN_A=pllana$LAB_TAG LAN_B=pllanb$LAB_TAG
nat_same_lan "$LAN_A" "$LAN_B" 1
NAT_A=plnata$LAB_TAG NAT_B=plnatb$LAB_TAG
nat_behind "$NAT_A" 2
WAN_A=$NAT_WAN_IF
nat_behind "$NAT_B" 3
SYM_A=plsyma$LAB_TAG SYM_B=plsymb$LAB_TAG
nat_behind "$SYM_A" 4 --random-fully
nat_behind "$SYM_B" 5 --random-fully

# ice_run TAG NS_CONTROLLING NS_CONTROLLED ARGS...: one session; both sides' output in
# $LAB_TMP/TAG.{ctl,ctd}.out; fails unless both exit 0.
ice_run() {
    local tag=$1 ctl=$2 ctd=$3
    shift 3
    local dir=$LAB_TMP/$tag.rdv
    rm -rf "$dir" && mkdir -p "$dir"
    ip netns exec "$ctl" "$ICE_PAIR" --role controlling --dir "$dir" --timeout "$ICE_TIMEOUT" "$@" \
        >"$LAB_TMP/$tag.ctl.out" 2>"$LAB_TMP/$tag.ctl.err" &
    local p1=$!
    ip netns exec "$ctd" "$ICE_PAIR" --role controlled --dir "$dir" --timeout "$ICE_TIMEOUT" "$@" \
        >"$LAB_TMP/$tag.ctd.out" 2>"$LAB_TMP/$tag.ctd.err" &
    local p2=$!
    local rc=0
    wait "$p1" || rc=1
    wait "$p2" || rc=1
    return $rc
}

# result TAG SIDE KEY: a field of a side's RESULT line.
result() {
    sed -n "s/^RESULT .*\b$3=\([^ ]*\).*/\1/p" "$LAB_TMP/$1.$2.out"
}

# ice_runs NAME NS_CTL NS_CTD PREDICATE ARGS...: ICE_RUNS sessions; each must succeed and
# satisfy PREDICATE TAG (a function). Records connect times in $LAB_TMP/NAME.ms.
ice_runs() {
    local name=$1 ctl=$2 ctd=$3 pred=$4
    shift 4
    : >"$LAB_TMP/$name.ms"
    : >"$LAB_TMP/$name.pairs"
    local i tag
    for i in $(seq "$ICE_RUNS"); do
        tag=$name-$i
        if ! ice_run "$tag" "$ctl" "$ctd" "$@"; then
            echo "run $i failed:"
            cat "$LAB_TMP/$tag.ctl.out" "$LAB_TMP/$tag.ctd.out"
            tail -n 5 "$LAB_TMP/$tag.ctl.err" "$LAB_TMP/$tag.ctd.err"
            return 1
        fi
        grep -h '^RESULT' "$LAB_TMP/$tag.ctl.out" "$LAB_TMP/$tag.ctd.out"
        "$pred" "$tag" || { echo "run $i: unexpected pair"; return 1; }
        echo "$(result "$tag" ctl local)-$(result "$tag" ctl remote)" >>"$LAB_TMP/$name.pairs"
        result "$tag" ctl connect_ms >>"$LAB_TMP/$name.ms"
        result "$tag" ctd connect_ms >>"$LAB_TMP/$name.ms"
    done
}

# Predicates on a run's pair.
# The remote end may show as peer-reflexive: a check can arrive before the candidate that
# names the same address (trickle), and the pair is learned from it.
lan_host() {
    [[ $(result "$1" ctl kind) == ice-p2p && $(result "$1" ctd kind) == ice-p2p &&
        $(result "$1" ctl local) == host && $(result "$1" ctd local) == host &&
        $(result "$1" ctl remote) =~ ^(host|prflx)$ && $(result "$1" ctd remote) =~ ^(host|prflx)$ ]]
}
p2p_with_srflx() {
    [[ $(result "$1" ctl kind) == ice-p2p && $(result "$1" ctd kind) == ice-p2p ]] &&
        grep -q 'srflx' <(result "$1" ctl local; result "$1" ctl remote; result "$1" ctd local; result "$1" ctd remote)
}
through_turn() {
    [[ $(result "$1" ctl kind) == ice-turn && $(result "$1" ctd kind) == ice-turn ]] &&
        grep -q 'relay' <(result "$1" ctl local; result "$1" ctl remote)
}

median() {
    sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

lab_check "same LAN: ICE connects over host candidates ($ICE_RUNS runs)" \
    ice_runs lan "$LAN_A" "$LAN_B" lan_host "${STUN[@]}"
lab_check "two NATs: ICE P2P over server-reflexive candidates ($ICE_RUNS runs)" \
    ice_runs nat "$NAT_A" "$NAT_B" p2p_with_srflx "${STUN[@]}"
lab_check "two symmetric NATs, TURN forced: ICE through relay candidates ($ICE_RUNS runs)" \
    ice_runs sym "$SYM_A" "$SYM_B" through_turn "${STUN[@]}" "${TURN[@]}"

static_user_turn() {
    ICE_RUNS=1 ice_runs symuser "$SYM_A" "$SYM_B" through_turn "${STUN[@]}" --force-turn \
        --turn "$COTURN_USER_URL" --turn-user "${COTURN_USER%%:*}" --turn-pass "${COTURN_USER#*:}"
}
lab_check "two symmetric NATs, TURN with coturn's static user: relay candidates" static_user_turn

udp_blocked_fails_in_time() {
    nat_block_udp_between_peers
    local start=$SECONDS rc=0
    ice_run blocked "$NAT_A" "$NAT_B" "${STUN[@]}" && rc=1
    nat_unblock_udp_between_peers
    local took=$((SECONDS - start))
    cat "$LAB_TMP/blocked.ctl.out" "$LAB_TMP/blocked.ctd.out"
    echo "failed after ${took}s (bound ${ICE_TIMEOUT}s + 2)" | tee "$LAB_TMP/blocked.took"
    ((rc == 0)) && ((took <= ICE_TIMEOUT + 2)) &&
        grep -q 'FAILED' "$LAB_TMP/blocked.ctl.out" && grep -q 'FAILED' "$LAB_TMP/blocked.ctd.out"
}
lab_check "UDP blocked between the NATs: both sides fail within the bound, saying so" udp_blocked_fails_in_time

# An idle connected pair: count the UDP packets through A's NAT router (both directions) while
# both sides sit idle for ICE_IDLE seconds after their exchange. All of it is STUN.
idle_stun_rate() {
    local dir=$LAB_TMP/idle.rdv
    rm -rf "$dir" && mkdir -p "$dir"
    nat_count_udp "$NAT_A-r" "$WAN_A" >/dev/null
    lab_bg "$NAT_A" "$LAB_TMP/idle.ctl.out" "$ICE_PAIR" --role controlling --dir "$dir" --idle "$ICE_IDLE" \
        --timeout "$ICE_TIMEOUT" "${STUN[@]}"
    local p1=$LAB_PID
    lab_bg "$NAT_B" "$LAB_TMP/idle.ctd.out" "$ICE_PAIR" --role controlled --dir "$dir" --idle "$ICE_IDLE" \
        --timeout "$ICE_TIMEOUT" "${STUN[@]}"
    local p2=$LAB_PID
    lab_wait "$ICE_TIMEOUT" "both sides idle" \
        bash -c "grep -q 'idle start' '$LAB_TMP/idle.ctl.out' && grep -q 'idle start' '$LAB_TMP/idle.ctd.out'" ||
        return 1
    local c0 t0 c1 t1
    c0=$(nat_count_udp "$NAT_A-r" "$WAN_A") t0=$EPOCHREALTIME
    lab_wait $((ICE_IDLE + 5)) "idle end" grep -q 'idle end' "$LAB_TMP/idle.ctl.out" || return 1
    c1=$(nat_count_udp "$NAT_A-r" "$WAN_A") t1=$EPOCHREALTIME
    wait "$p1" && wait "$p2" || return 1
    IDLE_RATE=$(awk -v n=$((c1 - c0)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n * 60 / (b - a) }')
    echo "idle pair: $((c1 - c0)) UDP packets through A's NAT in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s = $IDLE_RATE/min"
    echo "$IDLE_RATE" >"$LAB_TMP/idle.rate"
}
lab_check "an idle connected pair stays connected for ${ICE_IDLE}s (STUN rate measured)" idle_stun_rate

echo "# connect time, median of both sides over $ICE_RUNS runs (ms):" \
    "same LAN $(median "$LAB_TMP/lan.ms")," \
    "two NATs $(median "$LAB_TMP/nat.ms")," \
    "symmetric NATs via TURN $(median "$LAB_TMP/sym.ms")"
echo "# selected pairs (controlling side, local-remote):" \
    "same LAN: $(sort "$LAB_TMP/lan.pairs" | uniq -c | xargs);" \
    "two NATs: $(sort "$LAB_TMP/nat.pairs" | uniq -c | xargs);" \
    "symmetric NATs: $(sort "$LAB_TMP/sym.pairs" | uniq -c | xargs)"
echo "# all connect times (ms): same LAN $(sort -n "$LAB_TMP/lan.ms" | xargs);" \
    "two NATs $(sort -n "$LAB_TMP/nat.ms" | xargs); TURN $(sort -n "$LAB_TMP/sym.ms" | xargs)"
[[ -s $LAB_TMP/blocked.took ]] && echo "# UDP blocked: $(cat "$LAB_TMP/blocked.took")"
if [[ -s $LAB_TMP/idle.rate ]]; then
    echo "# idle connected pair: $(cat "$LAB_TMP/idle.rate") UDP packets/min through one side's NAT (both directions, all STUN)"
fi

lab_summary
