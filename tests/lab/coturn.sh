# shellcheck shell=bash
# coturn (Debian's `coturn` package, binary `turnserver`) for the lab: STUN and TURN over UDP,
# no TLS, no CLI, logging to a file. Source it; with lib.sh loaded, started servers are also
# stopped by lab_cleanup.
#
#   coturn_available                 0 if turnserver is installed (prints how to get it if not)
#   coturn_install                   apt-get install -y coturn (root; Debian's registry)
#   coturn_start NS IP [PORT]        start in namespace NS (empty: this one), listening and
#                                    relaying on IP; waits until it listens (bounded)
#   coturn_stop                      stop every coturn this shell started
#
# Credentials (set before coturn_start, defaults below):
#   COTURN_SECRET   REST secret (`--use-auth-secret --static-auth-secret`): clients use
#                   username "<expiry>:<name>", password base64(HMAC-SHA1(secret, username))
#   COTURN_USER     a static long-term user "name:password" (`--user`)
# coturn 4.6 (checked with 4.6.1): with --use-auth-secret it authenticates with the secret
# only and ignores --user accounts, so a static user gets a second instance on PORT+1
# (COTURN_USER_PORT), unless COTURN_USER is empty.
#
# After coturn_start: COTURN_PID, COTURN_LOG, COTURN_URL (turn:IP:PORT), COTURN_STUN_URL
# (stun:IP:PORT), and for the static user COTURN_USER_PID, COTURN_USER_URL.

COTURN_SECRET=${COTURN_SECRET:-peerlink-lab-secret}
COTURN_USER=${COTURN_USER-peerlink:peerlink-lab-password}
COTURN_REALM=${COTURN_REALM:-peerlink.lab}
# How long coturn may take to listen before coturn_start gives up (it is up in ~100 ms).
COTURN_START_TIMEOUT=${COTURN_START_TIMEOUT:-10}
_COTURN_PIDS=()

coturn_available() {
    if command -v turnserver >/dev/null 2>&1; then
        return 0
    fi
    echo "coturn is not installed: apt-get install -y coturn (or coturn_install)" >&2
    return 1
}

coturn_install() {
    coturn_available 2>/dev/null && return 0
    DEBIAN_FRONTEND=noninteractive apt-get install -y coturn >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y coturn >/dev/null; }
}

# coturn_start NS IP [PORT]
coturn_start() {
    local ns=$1 ip=$2 port=${3:-3478}
    coturn_available || return 1
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-coturn.XXXXXX")
    COTURN_LOG=$dir/turnserver.log
    _coturn_run "$ns" "$ip" "$port" "$dir/rest" --use-auth-secret --static-auth-secret "$COTURN_SECRET" ||
        return 1
    COTURN_PID=$_COTURN_STARTED
    COTURN_URL="turn:$ip:$port"
    COTURN_STUN_URL="stun:$ip:$port"
    if [[ -n $COTURN_USER ]]; then
        COTURN_USER_PORT=$((port + 1))
        _coturn_run "$ns" "$ip" "$COTURN_USER_PORT" "$dir/static" --lt-cred-mech --user "$COTURN_USER" ||
            return 1
        COTURN_USER_PID=$_COTURN_STARTED
        COTURN_USER_URL="turn:$ip:$COTURN_USER_PORT"
    fi
}

coturn_stop() {
    local pid
    for pid in "${_COTURN_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${_COTURN_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    _COTURN_PIDS=()
}

# _coturn_run NS IP PORT LOGBASE AUTH-ARGS...: one instance; sets _COTURN_STARTED to its pid.
_coturn_run() {
    local ns=$1 ip=$2 port=$3 base=$4
    shift 4
    local pre=()
    [[ -n $ns ]] && pre=(ip netns exec "$ns")
    # Relay ports from a range of their own, so two instances never compete for one.
    local min=$((49152 + (port % 8) * 2048)) max
    max=$((min + 2047))
    "${pre[@]}" turnserver -n --listening-ip "$ip" --relay-ip "$ip" --listening-port "$port" \
        --min-port "$min" --max-port "$max" --realm "$COTURN_REALM" --fingerprint \
        --no-tls --no-dtls --no-cli --no-multicast-peers --no-stdout-log --simple-log \
        --log-file "$base.log" --pidfile "$base.pid" "$@" >"$base.out" 2>&1 &
    _COTURN_STARTED=$!
    _COTURN_PIDS+=("$_COTURN_STARTED")
    if declare -p _LAB_PIDS >/dev/null 2>&1; then
        _LAB_PIDS+=("$_COTURN_STARTED")
    fi
    _coturn_wait_listen "$ns" "$_COTURN_STARTED" "$port" "$base"
}

# _coturn_wait_listen NS PID PORT LOGBASE: poll until PID listens on UDP PORT (nothing to
# subscribe to), or fail when it exits or the deadline passes.
_coturn_wait_listen() {
    local ns=$1 pid=$2 port=$3 base=$4
    local deadline=$((SECONDS + COTURN_START_TIMEOUT))
    local pre=()
    [[ -n $ns ]] && pre=(ip netns exec "$ns")
    until "${pre[@]}" ss -Hlnup "sport = :$port" 2>/dev/null | grep -q "pid=$pid,"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "coturn exited before listening on udp:$port:" >&2
            tail -n 20 "$base.out" "$base.log" >&2 2>/dev/null
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "coturn not listening on udp:$port after ${COTURN_START_TIMEOUT}s:" >&2
            tail -n 20 "$base.log" >&2 2>/dev/null
            return 1
        fi
        sleep 0.05
    done
}
