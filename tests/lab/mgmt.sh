# shellcheck shell=bash
# NetBird's combined server (management, signal, relay, STUN on one port) and NetBird's Go
# client, for the management lab. Source after lib.sh and nat.sh.
#
#   mgmt_server_start NS PORT   -> MGMT_URL, MGMT_PID; data in $LAB_TMP/nbdata (kept across
#                                  restarts: same accounts, same keys in the store); the YAML
#                                  lines in MGMT_EXTRA_YAML go under `server:` (e.g. relays)
#   mgmt_server_stop            -> SIGTERM, waits
#   mgmt_bootstrap              -> MGMT_PAT, MGMT_SETUP_KEY (headless first-run API)
#   mgmt_api METHOD PATH [JSON] -> the API's answer on stdout (with the PAT)
#   mgmt_go_peer NS NAME        -> NetBird's Go client in NS, MGMT_GO_PID
#
# Exact commands (NetBird v0.77.1, DESIGN 8):
#   NB_SETUP_PAT_ENABLED=true NB_DISABLE_GEOLOCATION=true netbird-server --config server.yaml
#   NB_WG_KERNEL_DISABLED=true NB_RELAY_TRANSPORT=ws NB_LAZY_CONN=off NB_STATE_DIR=D HOME=D \
#     netbird up -F --setup-key K --management-url U --hostname N --disable-dns \
#     --config D/default.json --log-file console

mgmt_require() {
    local c
    for c in iptables ping ss curl jq openssl; do
        command -v "$c" >/dev/null 2>&1 || lab_skip "$c missing"
    done
    lab_require_tool netbird-server
    lab_require_tool netbird
    [[ -x $PEERLINK ]] || lab_skip "$PEERLINK not built (cargo build --release -p peerlink-cli)"
}

mgmt_server_start() {
    local ns=$1 port=$2
    MGMT_NS=$ns
    MGMT_URL=http://$NAT_SERVER_IP:$port
    mkdir -p "$LAB_TMP/nbdata"
    # The store's key must survive restarts, or sync and the PAT break (DESIGN 8).
    : "${MGMT_ENC_KEY:=$(openssl rand -base64 32)}"
    cat >"$LAB_TMP/server.yaml" <<YAML
server:
  listenAddress: "$NAT_SERVER_IP:$port"
  exposedAddress: "$MGMT_URL"
  stunPorts: [3478]
  metricsPort: 0
  healthcheckAddress: "127.0.0.1:0"
  logLevel: "info"
  logFile: "console"
  authSecret: "lab-relay-secret-$LAB_TAG"
  dataDir: "$LAB_TMP/nbdata"
  disableAnonymousMetrics: true
  disableGeoliteUpdate: true
  auth:
    issuer: "http://127.0.0.1:$port/oauth2"
  store:
    engine: "sqlite"
    encryptionKey: "$MGMT_ENC_KEY"
${MGMT_EXTRA_YAML:-}
YAML
    MGMT_STARTS=$((${MGMT_STARTS:-0} + 1))
    lab_bg "$ns" "$LAB_TMP/server-$MGMT_STARTS.log" env NB_SETUP_PAT_ENABLED=true NB_DISABLE_GEOLOCATION=true \
        "$PEERLINK_BIN/netbird-server" --config "$LAB_TMP/server.yaml"
    MGMT_PID=$LAB_PID
    lab_wait 30 "the combined server's API" \
        ip netns exec "$ns" curl -sf "$MGMT_URL/api/instance" || { tail -n 30 "$LAB_TMP/server-$MGMT_STARTS.log" >&2; return 1; }
}

# mgmt_hub_routes: answers from the hub to the routers' WAN links leave from NAT_SERVER_IP.
# NetBird's STUN server listens on [::]:3478 unbound to an address, so the kernel picks the
# source of its answers by route: the hub's WAN address, which the NAT routers' conntrack does
# not match to the request sent to NAT_SERVER_IP (no srflx candidates). Call after nat_router.
mgmt_hub_routes() {
    local net dev
    ip -n "$NAT_SERVER_NS" -4 route show proto kernel | awk '$1 ~ /^10\.201\./ { print $1, $3 }' |
        while read -r net dev; do
            ip -n "$NAT_SERVER_NS" route replace "$net" dev "$dev" proto kernel scope link src "$NAT_SERVER_IP"
        done
}

mgmt_server_stop() {
    kill -TERM "$MGMT_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$MGMT_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$MGMT_PID" 2>/dev/null || true
    wait "$MGMT_PID" 2>/dev/null || true
}

mgmt_bootstrap() {
    local setup
    setup=$(ip netns exec "$MGMT_NS" curl -sf -X POST "$MGMT_URL/api/setup" -H 'Content-Type: application/json' \
        -d '{"email":"lab@peerlink.test","password":"Lab-password-1234","name":"lab","create_pat":true,"pat_expire_in":1}')
    MGMT_PAT=$(jq -r .personal_access_token <<<"$setup")
    [[ -n $MGMT_PAT && $MGMT_PAT != null ]] || { echo "no PAT in: $setup" >&2; return 1; }
    MGMT_SETUP_KEY=$(mgmt_api POST /api/setup-keys \
        '{"name":"lab","type":"reusable","expires_in":86400,"auto_groups":[],"usage_limit":0,"ephemeral":false}' | jq -r .key)
    [[ -n $MGMT_SETUP_KEY && $MGMT_SETUP_KEY != null ]]
}

mgmt_api() {
    local method=$1 path=$2 body=${3:-}
    local args=(-sf -X "$method" "$MGMT_URL$path" -H "Authorization: Token $MGMT_PAT")
    [[ -n $body ]] && args+=(-H 'Content-Type: application/json' -d "$body")
    ip netns exec "$MGMT_NS" curl "${args[@]}"
}

# mgmt_peer_ip NAME: the overlay IP management gave the peer named NAME (from the API).
mgmt_peer_ip() {
    mgmt_api GET /api/peers | jq -r --arg n "$1" '.[] | select(.name == $n or .hostname == $n) | .ip' | head -n 1
}

# mgmt_peer_id NAME: the peer's id in the API.
mgmt_peer_id() {
    mgmt_api GET /api/peers | jq -r --arg n "$1" '.[] | select(.name == $n or .hostname == $n) | .id' | head -n 1
}

# mgmt_up NS NAME [KEY]: `peerlink up` joining with the setup key (or KEY), on tun NAME, its
# identity in $LAB_TMP/NAME.key; LAB_PID is its pid, the log $LAB_TMP/NAME.log.
mgmt_up() {
    local ns=$1 name=$2 key=${3:-$MGMT_SETUP_KEY}
    lab_bg "$ns" "$LAB_TMP/$name.log" env RUST_LOG="${RUST_LOG:-info}" "$PEERLINK" up \
        --management-url "$MGMT_URL" --setup-key "$key" --hostname "$name" --interface "$name" \
        --key-file "$LAB_TMP/$name.key"
}

# mgmt_go_peer NS NAME [BINARY]: NetBird's Go client (default: the pinned release, `netbird`).
# Lazy connections off unless MGMT_GO_LAZY is a threshold (a Go duration such as 1m): then on.
mgmt_go_peer() {
    local ns=$1 name=$2 dir=$LAB_TMP/$2 bin=${3:-netbird} lazy=(NB_LAZY_CONN=off)
    [[ -z ${MGMT_GO_LAZY:-} ]] || lazy=(NB_LAZY_CONN=on NB_LAZY_CONN_INACTIVITY_THRESHOLD="$MGMT_GO_LAZY")
    mkdir -p "$dir"
    lab_bg "$ns" "$LAB_TMP/$name.log" env NB_WG_KERNEL_DISABLED=true NB_RELAY_TRANSPORT=ws "${lazy[@]}" \
        NB_STATE_DIR="$dir" HOME="$dir" "$PEERLINK_BIN/$bin" up -F --setup-key "$MGMT_SETUP_KEY" \
        --management-url "$MGMT_URL" --hostname "$name" --disable-dns --config "$dir/default.json" \
        --log-file console
    MGMT_GO_PID=$LAB_PID
}

# mgmt_go_pub NAME: the Go peer's WireGuard public key (from its config file).
mgmt_go_pub() {
    jq -r .PrivateKey "$LAB_TMP/$1/default.json" | "$PEERLINK" pubkey
}

# mgmt_key_for NAME ROLE OTHER_PUB...: writes $LAB_TMP/NAME.key with a new private key whose
# public key makes this peer the controller (ROLE=controller: the greater base64 string,
# DESIGN 2) or the controlled side against every OTHER_PUB, so a suite covers both roles.
mgmt_key_for() {
    local name=$1 role=$2 key pub other ok
    shift 2
    while :; do
        key=$("$PEERLINK" genkey)
        pub=$(echo "$key" | "$PEERLINK" pubkey)
        ok=1
        for other in "$@"; do
            if [[ $role == controller ]]; then
                LC_ALL=C; [[ $pub > $other ]] || ok=0
            else
                LC_ALL=C; [[ $pub < $other ]] || ok=0
            fi
        done
        ((ok)) && break
    done
    echo "$key" >"$LAB_TMP/$name.key"
}

# mgmt_stop PID: stop one peer and wait for it.
mgmt_stop() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
