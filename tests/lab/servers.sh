# shellcheck shell=bash
# Start/stop NetBird's signal and relay servers (built by tests/lab/build-tools.sh).
# Source it, then:
#
#   start_signal PORT [CERT KEY]        -> sets SIGNAL_PID
#   start_relay PORT SECRET [CERT KEY]  -> sets RELAY_PID, RELAY_URL
#   stop_servers                        -> stops everything started here
#
# Call the start functions directly (not inside $(...)): PIDs are recorded in
# this shell. Suggested: trap stop_servers EXIT.
#
# Environment:
#   NETNS            run inside this network namespace (ip netns exec; its lo is set up)
#   RELAY_ADDR       relay listen address (default 127.0.0.1)
#   RELAY_EXPOSED    relay instance URL handed to peers in AuthResponse
#                    (default rel://RELAY_ADDR:PORT, rels:// with CERT/KEY; with TLS
#                    the host must match the certificate, e.g. rels://localhost:PORT)
#   SERVERS_LOG_DIR  where server logs go (default: a fresh /tmp/peerlink-servers.XXXX)
#   SERVERS_LOG_LEVEL  trace|debug|info|warn (default info)
#   SERVERS_START_TIMEOUT  seconds to wait for the listening sockets (default 15)
#   PEERLINK_BIN     where the binaries are (default ${PEERLINK_CACHE:-$HOME/.cache/peerlink}/bin)
#
# Exact commands (NetBird v0.77.1):
#   signal, plain: nb-signal run --port PORT --metrics-port 0 --log-file console --log-level info
#   signal, TLS:   ... plus --cert-file CERT --cert-key KEY   (gRPC over TLS, h2 + http/1.1 ALPN)
#     - binds ":PORT" on every address; there is no bind-address flag.
#     - unless PORT is 10000 it ALSO binds a plain gRPC compat listener on ":10000"
#       (not configurable): two signal servers in one namespace collide there, so use
#       PORT 10000 or separate namespaces.
#     - --metrics-port 0 = random port on every address (default 9090);
#       --log-file defaults to /var/log/netbird/signal.log; SIGINT is graceful, SIGTERM just kills.
#     - the same port also serves the WebSocket proxy at /ws-proxy/signal.
#   relay, plain:  nb-relay -l ADDR:PORT -e rel://HOST:PORT -s SECRET --metrics-port 0 \
#                      -H 127.0.0.1:0 --log-file console --log-level info
#   relay, TLS:    nb-relay -l ADDR:PORT -e rels://HOST:PORT -s SECRET -c CERT -k KEY ...
#     - WebSocket on TCP PORT at path /relay; QUIC (ALPN nb-quic) on UDP PORT, but only with
#       TLS: without a certificate it logs "Not starting QUIC listener" and is WebSocket-only.
#     - -e is required; it is the AuthResponse URL verbatim (no scheme -> rel:// or rels://;
#       rel:// together with a certificate is rejected at start-up).
#     - -s is required; the HMAC key is SHA-256(secret).
#     - also opens a metrics server (--metrics-port, default :9090, every address) and a
#       health server (-H/--health-listen-address, default :9000): both set to random ports here.
#     - SIGINT/SIGTERM are graceful. Every flag can also come from NB_<FLAG_NAME> env vars.

: "${HOME:=/root}"
PEERLINK_BIN=${PEERLINK_BIN:-${PEERLINK_CACHE:-$HOME/.cache/peerlink}/bin}
_SERVER_PIDS=()

_servers_ns() {
    if [[ -n ${NETNS:-} ]]; then
        ip netns exec "$NETNS" "$@"
    else
        "$@"
    fi
}

# Command prefix for background starts. A plain command (not a function) run
# with & is exec'd directly, and ip netns exec execs too, so $! is the server.
_servers_prefix() {
    _SERVERS_PRE=()
    if [[ -n ${NETNS:-} ]]; then
        _SERVERS_PRE=(ip netns exec "$NETNS")
    fi
}

_servers_logdir() {
    if [[ -z ${SERVERS_LOG_DIR:-} ]]; then
        SERVERS_LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/peerlink-servers.XXXXXX")
    fi
    mkdir -p "$SERVERS_LOG_DIR"
}

_servers_bin() {
    local b=$PEERLINK_BIN/$1
    if [[ ! -x $b ]]; then
        echo "servers.sh: $b missing; run tests/lab/build-tools.sh" >&2
        return 1
    fi
    echo "$b"
}

# _servers_wait_listen PID LOG PROTO:PORT... : poll ss until PID owns a listening
# socket on every PROTO:PORT (tcp or udp), or fail when PID dies or the deadline passes.
_servers_wait_listen() {
    local pid=$1 log=$2
    shift 2
    local limit=${SERVERS_START_TIMEOUT:-15}
    local deadline=$((${EPOCHREALTIME/./} + limit * 1000000))
    local want missing flag
    while :; do
        missing=()
        for want in "$@"; do
            [[ ${want%%:*} == udp ]] && flag=-Hlnup || flag=-Hlntp
            _servers_ns ss "$flag" "sport = :${want#*:}" 2>/dev/null | grep -q "pid=$pid," ||
                missing+=("$want")
        done
        ((${#missing[@]} == 0)) && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "servers.sh: pid $pid exited before listening on ${missing[*]}; log $log:" >&2
            tail -n 20 "$log" >&2
            return 1
        fi
        if ((${EPOCHREALTIME/./} > deadline)); then
            echo "servers.sh: pid $pid not listening on ${missing[*]} after ${limit}s; log $log:" >&2
            tail -n 20 "$log" >&2
            return 1
        fi
        sleep 0.05
    done
}

# start_signal PORT [CERT KEY]
start_signal() {
    local port=${1:?usage: start_signal PORT [CERT KEY]} cert=${2:-} key=${3:-} bin log
    bin=$(_servers_bin nb-signal) || return 1
    _servers_logdir
    [[ -n ${NETNS:-} ]] && ip -n "$NETNS" link set lo up
    log=$SERVERS_LOG_DIR/signal-${NETNS:-host}-$port.log
    local args=(run --port "$port" --metrics-port 0 --log-file console
        --log-level "${SERVERS_LOG_LEVEL:-info}")
    [[ -n $cert ]] && args+=(--cert-file "$cert" --cert-key "$key")
    _servers_prefix
    "${_SERVERS_PRE[@]}" "$bin" "${args[@]}" >"$log" 2>&1 &
    SIGNAL_PID=$!
    _SERVER_PIDS+=("$SIGNAL_PID")
    local socks=("tcp:$port")
    [[ $port != 10000 ]] && socks+=("tcp:10000")
    _servers_wait_listen "$SIGNAL_PID" "$log" "${socks[@]}" || return 1
    echo "servers.sh: signal pid $SIGNAL_PID on :$port${cert:+ (TLS)}${NETNS:+ in netns $NETNS}, log $log" >&2
}

# start_relay PORT SECRET [CERT KEY]
start_relay() {
    local port=${1:?usage: start_relay PORT SECRET [CERT KEY]}
    local secret=${2:?usage: start_relay PORT SECRET [CERT KEY]} cert=${3:-} key=${4:-} bin log
    bin=$(_servers_bin nb-relay) || return 1
    _servers_logdir
    [[ -n ${NETNS:-} ]] && ip -n "$NETNS" link set lo up
    local addr=${RELAY_ADDR:-127.0.0.1} host
    host=$addr
    [[ $addr == *:* ]] && host="[$addr]"
    local scheme=rel
    [[ -n $cert ]] && scheme=rels
    RELAY_URL=${RELAY_EXPOSED:-$scheme://$host:$port}
    log=$SERVERS_LOG_DIR/relay-${NETNS:-host}-$port.log
    local args=(-l "$host:$port" -e "$RELAY_URL" -s "$secret" --metrics-port 0
        -H 127.0.0.1:0 --log-file console --log-level "${SERVERS_LOG_LEVEL:-info}")
    [[ -n $cert ]] && args+=(-c "$cert" -k "$key")
    _servers_prefix
    "${_SERVERS_PRE[@]}" "$bin" "${args[@]}" >"$log" 2>&1 &
    RELAY_PID=$!
    _SERVER_PIDS+=("$RELAY_PID")
    local socks=("tcp:$port")
    [[ -n $cert ]] && socks+=("udp:$port")
    _servers_wait_listen "$RELAY_PID" "$log" "${socks[@]}" || return 1
    echo "servers.sh: relay pid $RELAY_PID on $host:$port as $RELAY_URL${NETNS:+ in netns $NETNS}, log $log" >&2
}

# stop_servers: SIGTERM each recorded server, SIGKILL after 5 s, reap it.
stop_servers() {
    local pid i
    for pid in "${_SERVER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || continue
    done
    for pid in "${_SERVER_PIDS[@]}"; do
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    _SERVER_PIDS=()
}
