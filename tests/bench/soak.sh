#!/usr/bin/env bash
# Soak (DESIGN §9, issue 14; a benchmark, not in CI). Root, network namespaces. Two `peerlink up`,
# each behind its own NAT router, NetBird's signal and relay and coturn on the hub, signal, relay
# and ICE configured (ICE P2P carries the traffic, the relay is on standby). For SOAK_SECS:
#   traffic   one TCP stream (iperf3, full load, in chunks of CHUNK s) from A to B through the
#             tunnel, and a steady ping (5/s) for reachability;
#   loss      5 % random loss on every UDP packet each router forwards (iptables statistic);
#   events    at 20 % the relay server restarts, at 40 % the signal server restarts, at 60 % B is
#             told the network changed (SIGUSR1, nothing moved), at 80 % A moves behind a new NAT
#             router (new address; the new router drops A's old source address) and is told so.
# Measured:
#   /proc of both engines every SAMPLE_SECS: VmRSS, threads, open descriptors: first, last and
#   max; growth of the last sample beyond RSS_GROWTH % / THREAD_GROWTH / FD_GROWTH over the warm
#   baseline (the last sample before the first event: buffers and pools have grown to the load)
#   fails;
#   the watcher's verdicts ("path stale" in each engine's log), each classified: expected when
#   it follows an event that killed that path within GRACE s (a relay restart: the relay path; A's
#   move: any path of either peer); every other verdict is false (loss alone, a signal restart or
#   a network change that moved nothing must not condemn a working path);
#   at the end: both peers connected (a ping answered, a path on both) within END_BOUND s.
# Prints `sample soak_*` lines (tests/bench/figures.py), result lines and `soak: N passed, N failed`.
# Environment: SOAK_SECS (600), SAMPLE_SECS (5), CHUNK (30), GRACE (30), END_BOUND (60),
# RSS_GROWTH (25), THREAD_GROWTH (2), FD_GROWTH (4).
# Usage: SOAK_SECS=600 tests/bench/soak.sh   (the release CLI must be built)
source "$(dirname "$0")/../lab/lib.sh"
source "$(dirname "$0")/../lab/nat.sh"
source "$(dirname "$0")/../lab/coturn.sh"
source "$(dirname "$0")/../lab/servers.sh"
lab_require_root
nb_lab_require
command -v iperf3 >/dev/null || lab_skip "iperf3 missing (apt-get install -y iperf3)"
# The evidence outlives the run: both engines' logs, the events, the /proc and path samples.
KEEP=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-soak.XXXXXX")
keep() { cp "$LAB_TMP"/sk-?.log "$LAB_TMP"/{events,proc,paths,verdicts,ping.log} "$KEEP/" 2>/dev/null || true; }
trap 'keep; stop_servers; coturn_stop; lab_cleanup' EXIT

SOAK_SECS=${SOAK_SECS:-600}         # DESIGN §9: a 10-minute soak
SAMPLE_SECS=${SAMPLE_SECS:-5}       # 120 samples in 10 min: a trend shows, sampling costs nothing
CHUNK=${CHUNK:-30}                  # an event that breaks a TCP stream costs at most this much traffic
GRACE=${GRACE:-30}                  # relay reconnect backoff plus the watcher's deadlines, with room
END_BOUND=${END_BOUND:-60}          # the watcher suite's HEAL_BOUND
RSS_GROWTH=${RSS_GROWTH:-25}        # allocator noise is a few %, a leak under full load is more
THREAD_GROWTH=${THREAD_GROWTH:-2}   # tokio's blocking pool may keep a thread or two for a while
FD_GROWTH=${FD_GROWTH:-4}           # a relay and a signal connection and ICE sockets mid-replacement
LOSS='-p udp -m statistic --mode random --probability 0.05'

SRV=sksrv$LAB_TAG
nb_lab_servers "$SRV"
NA=ska$LAB_TAG NB=skb$LAB_TAG
nat_behind "$NA" 2
A_LAN_IF=v${LAB_TAG}b${_LAB_LINKS} # A's interface on router A's LAN (the move deletes it)
nat_behind "$NB" 3
RA=$NA-r RB=$NB-r RC=$NA-n
nat_router "$RC" 4 # where A moves to

# path_kind IFACE: the active path's kind, "none" without one, "?" if status cannot be read.
path_kind() {
    nb_status "$1" 2>/dev/null | awk '$1 == "path:" { print $2; found = 1; exit } END { if (!found) print "none" }' ||
        echo "?"
}

# proc_sample PID: "RSS_KIB THREADS FDS" of a process.
proc_sample() {
    echo "$(awk '/^VmRSS/ { r = $2 } /^Threads/ { t = $2 } END { print r + 0, t + 0 }' "/proc/$1/status") $(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l)"
}

# event NAME: record an event with its time (for the verdicts' classification).
event() {
    echo "$EPOCHREALTIME $1" | tee -a "$LAB_TMP/events" | sed 's/^/# event at /'
}

# --- connect ----------------------------------------------------------------------------------
: >"$LAB_TMP/events"
nb_connect sk "$NA" "$NB" yes yes >/dev/null || { echo "not ok - soak: peers never connected"; exit 1; }
PID_A=${NB_PEER_PIDS[0]} PID_B=${NB_PEER_PIDS[1]}
both_ice() { [[ $(path_kind pask) == ice-p2p && $(path_kind pbsk) == ice-p2p ]]; }
lab_wait 20 "ICE P2P on both peers" both_ice ||
    echo "# not on ICE P2P 20 s after connecting: A $(path_kind pask), B $(path_kind pbsk)"

# --- traffic and loss ---------------------------------------------------------------------------
end_at=$((${EPOCHREALTIME%.*} + SOAK_SECS))
lab_bg "$NB" "$LAB_TMP/iperf-s.log" iperf3 -s -B 10.254.0.2
lab_wait 10 "iperf3 server" bash -c "ip netns exec $NB ss -Hlnt | grep -q ':5201 '"
# The client runs in chunks until the soak's end, so that a chunk broken by an event only costs
# that chunk; each chunk's bytes go to iperf.bytes.
lab_bg "$NA" "$LAB_TMP/iperf-c.log" bash -c "
    while (( \$(date +%s) < $end_at - 2 )); do
        t=\$(( $end_at - \$(date +%s) )); (( t > $CHUNK )) && t=$CHUNK
        iperf3 -c 10.254.0.2 -t \$t -J --connect-timeout 3000 >'$LAB_TMP/chunk.json' 2>/dev/null &
        echo \$! >'$LAB_TMP/iperf.pid'
        wait \$!
        python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1]))[\"end\"][\"sum_received\"][\"bytes\"])
except Exception: print(0)' '$LAB_TMP/chunk.json' >>'$LAB_TMP/iperf.bytes'
        sleep 0.5  # a chunk that failed at once must not spin
    done"
IPERF_LOOP=$LAB_PID
lab_bg "$NA" "$LAB_TMP/ping.log" ping -D -n -i 0.2 -W 1 10.254.0.2
PING_PID=$LAB_PID
for ns in "$RA" "$RB" "$RC"; do
    # shellcheck disable=SC2086 # LOSS is a list of iptables arguments.
    ip netns exec "$ns" iptables -I FORWARD $LOSS -j DROP
done
start=$EPOCHREALTIME
event "soak start ($SOAK_SECS s, 5 % loss on every router)"

# --- the soak: samples every SAMPLE_SECS, events at their fractions ----------------------------
: >"$LAB_TMP/proc"
: >"$LAB_TMP/paths"
done_events=0
for ((i = 0; ; i++)); do
    now=$EPOCHREALTIME
    elapsed=$(awk -v s="$start" -v n="$now" 'BEGIN { printf "%d", n - s }')
    echo "$elapsed $(proc_sample "$PID_A") $(proc_sample "$PID_B")" >>"$LAB_TMP/proc"
    echo "$elapsed $(path_kind pask) $(path_kind pbsk)" >>"$LAB_TMP/paths"
    frac=$((elapsed * 100 / SOAK_SECS))
    if ((done_events == 0 && frac >= 20)); then
        event "relay restart"
        kill -TERM "$RELAY_PID"
        wait "$RELAY_PID" 2>/dev/null || true
        NETNS=$SRV RELAY_ADDR=$NAT_SERVER_IP start_relay 33080 "$SECRET" 2>/dev/null || echo "# the relay did not start again"
        done_events=1
    elif ((done_events == 1 && frac >= 40)); then
        event "signal restart"
        kill -TERM "$SIGNAL_PID"
        wait "$SIGNAL_PID" 2>/dev/null || true
        NETNS=$SRV start_signal 10000 2>/dev/null || echo "# the signal server did not start again"
        done_events=2
    elif ((done_events == 2 && frac >= 60)); then
        event "network change on B (SIGUSR1, nothing moved)"
        kill -USR1 "$PID_B"
        done_events=3
    elif ((done_events == 3 && frac >= 80)); then
        event "move of A behind a new NAT router, then SIGUSR1"
        ip -n "$NA" link del "$A_LAN_IF"
        lab_link "$RC" 10.202.4.1/24 "$NA" 10.202.4.2/24
        ip netns exec "$RC" iptables -I FORWARD -i "v${LAB_TAG}a${_LAB_LINKS}" ! -s 10.202.4.0/24 -j DROP
        ip -n "$NA" route add default via 10.202.4.1
        kill -USR1 "$PID_A"
        done_events=4
    fi
    ((elapsed >= SOAK_SECS)) && break
    # A sampling interval, not an event wait: the next sample is due at start + (i + 1) * SAMPLE_SECS.
    sleep "$(awk -v s="$start" -v i="$i" -v p="$SAMPLE_SECS" -v n="$EPOCHREALTIME" 'BEGIN { d = s + (i + 1) * p - n; print (d > 0 ? d : 0) }')"
done
event "soak end"

# --- the end: connected? ----------------------------------------------------------------------
t_end=$EPOCHREALTIME
connected() {
    awk -v t="$t_end" '/bytes from/ { s = substr($1, 2, length($1) - 2); if (s + 0 > t + 0) { n++ } } END { exit !(n > 0) }' "$LAB_TMP/ping.log" &&
        [[ $(path_kind pask) != none && $(path_kind pbsk) != none ]]
}
lab_check "soak: both peers connected at the end (a reply after the soak, a path on both)" \
    lab_wait "$END_BOUND" "both peers connected" connected
echo "# at the end: A $(path_kind pask), B $(path_kind pbsk)"
kill -INT "$PING_PID" 2>/dev/null || true
wait "$PING_PID" 2>/dev/null || true
# The loop ends by itself at the soak's end; a chunk hung on a broken connection is ended here.
gone() { [[ ! -e /proc/$1 || $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) == Z ]]; }
lab_wait 15 "the iperf3 loop's end" gone "$IPERF_LOOP" || kill -TERM "$(cat "$LAB_TMP/iperf.pid")" 2>/dev/null || true

# --- verdicts ---------------------------------------------------------------------------------
# Each engine's "path stale" lines with their times, classified against the events.
python3 - "$LAB_TMP/events" "$GRACE" "$LAB_TMP/sk-a.log" A "$LAB_TMP/sk-b.log" B >"$LAB_TMP/verdicts" <<'PY'
import datetime, re, sys
events = [(float(l.split(" ", 1)[0]), l.split(" ", 1)[1].strip()) for l in open(sys.argv[1])]
grace = float(sys.argv[2])
ansi = re.compile(r"\x1b\[[0-9;]*m")
for log, who in zip(sys.argv[3::2], sys.argv[4::2]):
    for line in open(log, errors="replace"):
        line = ansi.sub("", line)
        if "path stale" not in line:
            continue
        stamp = line.split()[0].rstrip("Z")
        t = datetime.datetime.fromisoformat(stamp[:26]).replace(tzinfo=datetime.timezone.utc).timestamp()
        path = (re.search(r"\bpath=(\S+)", line) or [None, "?"])[1]
        reason = (re.search(r"\breason=(.*)$", line) or [None, "?"])[1].strip()
        cause = "false"
        for et, name in events:
            if not 0 <= t - et <= grace:
                continue
            if name.startswith("relay restart") and path == "relay":
                cause = "expected after relay restart"
            elif name.startswith("move of A"):
                cause = "expected after the move"
        print("%s %.1f %s path=%s (%s): %s" % (who, t, cause.split()[0], path, reason, cause))
PY
sed 's/^/# verdict: /' "$LAB_TMP/verdicts"
false_verdicts=$(grep -c ' false path=' "$LAB_TMP/verdicts" || true)
expected=$(grep -c ' expected path=' "$LAB_TMP/verdicts" || true)
in_logs=$(cat "$LAB_TMP"/sk-?.log | grep -c 'path stale' || true)
lab_check "soak: every verdict in the logs was classified ($in_logs in the logs)" \
    test "$in_logs" -eq $((false_verdicts + expected))

# --- results ----------------------------------------------------------------------------------
# The warm baseline: the last sample before the first event (20 % of the soak).
read -r rss_a thr_a fd_a rss_b thr_b fd_b < <(awk -v cut=$((SOAK_SECS / 5)) 'NR == 1 || $1 < cut { b = $2 " " $3 " " $4 " " $5 " " $6 " " $7 } END { print b }' "$LAB_TMP/proc")
summary() { # COLUMN LABEL: first, last and max of a /proc column
    awk -v c="$1" -v l="$2" '{ v = $c; if (NR == 1) f = v; if (v > m) m = v; last = v } END { printf "%s first %d last %d max %d", l, f, last, m }' "$LAB_TMP/proc"
}
echo "# A: $(summary 2 'RSS KiB'), $(summary 3 threads), $(summary 4 fds)"
echo "# B: $(summary 5 'RSS KiB'), $(summary 6 threads), $(summary 7 fds)"
last() { awk -v c="$1" 'END { print $c }' "$LAB_TMP/proc"; }
maxc() { awk -v c="$1" '$c > m { m = $c } END { print m + 0 }' "$LAB_TMP/proc"; }
for side in A B; do
    if [[ $side == A ]]; then o=0 rss0=$rss_a thr0=$thr_a fd0=$fd_a; else o=3 rss0=$rss_b thr0=$thr_b fd0=$fd_b; fi
    lab_check "soak: $side's memory at the end within $RSS_GROWTH % of its warm baseline ($rss0 -> $(last $((2 + o))) KiB, max $(maxc $((2 + o))))" \
        test "$(last $((2 + o)))" -le $((rss0 * (100 + RSS_GROWTH) / 100))
    lab_check "soak: $side's threads at the end within $THREAD_GROWTH of its warm baseline ($thr0 -> $(last $((3 + o))), max $(maxc $((3 + o))))" \
        test "$(last $((3 + o)))" -le $((thr0 + THREAD_GROWTH))
    lab_check "soak: $side's descriptors at the end within $FD_GROWTH of its warm baseline ($fd0 -> $(last $((4 + o))), max $(maxc $((4 + o))))" \
        test "$(last $((4 + o)))" -le $((fd0 + FD_GROWTH))
done
lab_check "soak: no false stale verdicts ($false_verdicts false, $expected expected after an event)" test "$false_verdicts" -eq 0

sent=$(grep -oE '^[0-9]+ packets transmitted' "$LAB_TMP/ping.log" | awk '{ print $1 }')
got=$(grep -c 'bytes from' "$LAB_TMP/ping.log" || true)
bytes=$(awk '{ n += $1 } END { print n + 0 }' "$LAB_TMP/iperf.bytes" 2>/dev/null || echo 0)
ice_share=$(awk '{ n++; if ($2 == "ice-p2p" && $3 == "ice-p2p") k++ } END { printf "%.0f", n ? 100 * k / n : 0 }' "$LAB_TMP/paths")
echo "sample soak_false_verdicts $false_verdicts count expected=$expected secs=$SOAK_SECS"
awk -v b="$bytes" -v s="$SOAK_SECS" -v sent="${sent:-0}" -v got="$got" -v ice="$ice_share" 'BEGIN {
    printf "sample soak_throughput %.1f Mbit/s bytes=%.0f ping_loss_pct=%.1f ice_p2p_samples_pct=%s\n",
        b * 8 / s / 1e6, b, sent ? 100 * (sent - got) / sent : 100, ice }'
echo "sample soak_rss_growth_a $(awk -v a="$rss_a" -v b="$(last 2)" 'BEGIN { printf "%.1f", 100 * (b - a) / a }') % warm_kib=$rss_a last_kib=$(last 2) max_kib=$(maxc 2)"
echo "sample soak_rss_growth_b $(awk -v a="$rss_b" -v b="$(last 5)" 'BEGIN { printf "%.1f", 100 * (b - a) / a }') % warm_kib=$rss_b last_kib=$(last 5) max_kib=$(maxc 5)"
echo "# logs, events and samples kept in $KEEP"
lab_summary
