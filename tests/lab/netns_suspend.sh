#!/usr/bin/env bash
# Lab: suspend (issue 14). A phone's suspend stops a Network Extension's process: here engine A
# is stopped with SIGSTOP and continued with SIGCONT. Two peers behind their own NAT routers,
# NetBird's signal and relay servers and coturn on the hub (nb_lab_servers), `peerlink up` on
# real tuns with ICE and the relay; A has a persistent keepalive.
#
#   1  Connected over ICE P2P.
#   2  A stopped for STOP_SECS (default 70 s: past the relay's 35 s dead-connection timeout,
#      signal's 30 s receive watchdog, ICE's 6 s failure timeout and two persistent keepalives;
#      the issue's "minutes" with STOP_SECS=300), then continued. Deadlines that passed while it
#      was stopped fire right after it continues: its first log line about them within
#      FIRE_BOUND s. SIGSTOP does not stop the clocks, so this shows the shell acting on overdue
#      deadlines; that the policy's clock counts suspend is core/src/clock.rs's unit test.
#   3  Paths re-established without a restart (same process): a ping through the tunnel is
#      answered within RECOVER_BOUND s of the continue (printed), and ICE P2P carries traffic again.
#   4  No storm of retries: offers sent, signal and relay reconnects and failed attempts in A's
#      log over the SETTLE_SECS after the continue are counted (printed) and bounded.
#
# Environment: STOP_SECS (70), RECOVER_BOUND (20), FIRE_BOUND (3), SETTLE_SECS (30).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nat.sh"
source "$(dirname "$0")/coturn.sh"
source "$(dirname "$0")/servers.sh"
lab_require_root
nb_lab_require
trap 'kill -CONT "${PID_A:-0}" 2>/dev/null; stop_servers; coturn_stop; lab_cleanup' EXIT

STOP_SECS=${STOP_SECS:-70}
RECOVER_BOUND=${RECOVER_BOUND:-20}
FIRE_BOUND=${FIRE_BOUND:-3}
SETTLE_SECS=${SETTLE_SECS:-30}
# Offers, reconnects and failed attempts in SETTLE_SECS: one re-offer and one reconnect of each
# server are expected; the guard's backoff (3 s doubling) allows a few more; a storm is dozens.
MAX_RETRIES=${MAX_RETRIES:-12}

nb_lab_servers nssrv$LAB_TAG
NA=nsa$LAB_TAG NB=nsb$LAB_TAG
nat_behind "$NA" 2
nat_behind "$NB" 3

TAG=su$LAB_TAG
IA=pa$TAG IB=pb$TAG
ka=$("$PEERLINK" genkey)
kb=$("$PEERLINK" genkey)
nb_conf "$TAG-a" "$IA" 1 "$ka" "$(peerlink_pub "$kb")" 2 yes yes
nb_conf "$TAG-b" "$IB" 2 "$kb" "$(peerlink_pub "$ka")" 1 yes yes
sed -i '/^allowed_ips/a persistent_keepalive = 25' "$LAB_TMP/$TAG-a.toml"
# Offers are logged at debug level: count them too.
RUST_LOG="info,peerlink_core::conn::shell=debug" peerlink_up "$NA" "$IA" "$LAB_TMP/$TAG-a.toml" "$LAB_TMP/$TAG-a.log"
PID_A=$LAB_PID
peerlink_up "$NB" "$IB" "$LAB_TMP/$TAG-b.toml" "$LAB_TMP/$TAG-b.log"

figure() { echo "figure: $*" | tee -a "$LAB_TMP/figures"; }
on_ice() { nb_path_is "$NA" "$IA" ice-p2p && nb_path_is "$NB" "$IB" ice-p2p; }
# epoch_of LINE: the time stamp tracing puts first on a log line, as seconds since the epoch.
epoch_of() { date -d "$(cut -d' ' -f1 <<<"$1" | sed 's/\x1b\[[0-9;]*m//g')" +%s.%N; }

connected() {
    lab_wait 20 "first reply" ip netns exec "$NA" ping -c 1 -W 1 10.254.0.2 || return 1
    lab_wait 20 "ICE P2P on both" on_ice || { nb_status "$IA"; return 1; }
}
lab_check "the peers connect over ICE P2P (signal, relay, ICE)" connected

suspend_and_continue() {
    kill -STOP "$PID_A"
    sleep "$STOP_SECS" # the suspend itself, not a wait for an event
    LINES_BEFORE=$(wc -l <"$LAB_TMP/$TAG-a.log")
    CONT_AT=$EPOCHREALTIME
    kill -CONT "$PID_A"
    local deadline=$((SECONDS + RECOVER_BOUND))
    until ip netns exec "$NA" ping -n -c 1 -W 1 10.254.0.2 >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "no reply within ${RECOVER_BOUND}s of the continue"
            nb_status "$IA"
            tail -n 30 "$LAB_TMP/$TAG-a.log"
            return 1
        fi
    done
    figure "stopped ${STOP_SECS} s, continued -> first reply through the tunnel: $(lab_ms "$CONT_AT") ms"
    kill -0 "$PID_A" || { echo "A is gone"; return 1; }
}
lab_check "A stopped ${STOP_SECS} s and continued: a ping is answered within ${RECOVER_BOUND} s, same process" suspend_and_continue

overdue_deadlines_fire() {
    # The first line A logs after the continue about a deadline that passed while it was
    # stopped: the relay's silent connection, signal's watchdog, a path gone stale.
    local line at
    line=$(tail -n +"$((LINES_BEFORE + 1))" "$LAB_TMP/$TAG-a.log" |
        grep -m1 -E "relay lost|relay connection ended|signal (connection lost|heartbeat)|path stale|path switched|sending offer") || {
        echo "no deadline fired after the continue:"
        tail -n +"$((LINES_BEFORE + 1))" "$LAB_TMP/$TAG-a.log" | head -n 30
        return 1
    }
    at=$(epoch_of "$line")
    local ms
    ms=$(awk -v a="$CONT_AT" -v b="$at" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
    figure "continue -> first overdue deadline acted on: $ms ms ($(sed 's/\x1b\[[0-9;]*m//g' <<<"$line" | cut -c1-220))"
    awk -v ms="$ms" -v b="$FIRE_BOUND" 'BEGIN { exit !(ms <= b * 1000) }'
}
lab_check "deadlines that passed during the stop fire right after the continue (<= ${FIRE_BOUND} s)" overdue_deadlines_fire

back_on_ice() {
    lab_wait 30 "ICE P2P again" on_ice || { nb_status "$IA"; nb_status "$IB"; return 1; }
    figure "continued -> ICE P2P on both sides again: $(lab_ms "$CONT_AT") ms"
}
lab_check "ICE P2P carries traffic again, without a restart" back_on_ice

no_storm() {
    local elapsed
    elapsed=$(lab_ms "$CONT_AT")
    ((elapsed < SETTLE_SECS * 1000)) && sleep $(((SETTLE_SECS * 1000 - elapsed) / 1000 + 1)) # the counting window
    local after offers reconnects failures
    after=$(tail -n +"$((LINES_BEFORE + 1))" "$LAB_TMP/$TAG-a.log" | sed 's/\x1b\[[0-9;]*m//g')
    offers=$(grep -c "sending offer" <<<"$after" || true)
    reconnects=$(grep -cE "reconnecting|relay connected|signal registered" <<<"$after" || true)
    failures=$(grep -cE "attempt failed|not opened|did not start" <<<"$after" || true)
    figure "first ${SETTLE_SECS} s after the continue: $offers offers, $reconnects reconnects, $failures failed attempts, $(wc -l <<<"$after") log lines"
    ((offers + reconnects + failures <= MAX_RETRIES)) || { echo "$after" | tail -n 40; return 1; }
    ip netns exec "$NA" ping -n -c 3 -i 0.2 -W 1 10.254.0.2
}
lab_check "no storm of retries after the continue (<= $MAX_RETRIES offers, reconnects and failures in ${SETTLE_SECS} s)" no_storm

cat "$LAB_TMP/figures" 2>/dev/null
lab_summary
