#!/usr/bin/env bash
# Build the Go lab tools into ${PEERLINK_CACHE:-$HOME/.cache/peerlink}/bin:
#   nb-signal, nb-relay   NetBird v0.77.1 signal and relay servers (tests/netbird)
#   nb-relay-peer         one-shot relay peer on NetBird's relay client (tests/netbird)
#   nb-signal-peer        interop peer on NetBird's Go signal client (tests/netbird)
#   netbird-server        NetBird v0.77.1 combined server: management, signal, relay, STUN
#                         (github.com/netbirdio/netbird/combined; needs CGO for sqlite)
#   netbird               NetBird v0.77.1 Go client (github.com/netbirdio/netbird/client)
#   netbird-0.48.0        an older NetBird Go client for mixed-fleet checks (tests/netbird-old)
#   wireguard-go          userspace WireGuard, pinned pseudo-version below
# Idempotent: each group is rebuilt only when a binary is missing or its stamp
# (hash of tests/netbird sources + Go version, or the wireguard-go version)
# changed. Needs Go >= 1.25 on PATH and access to the Go module proxy.
set -euo pipefail

WIREGUARD_GO_VERSION=v0.0.0-20260522210424-ecfc5a8d5446 # golang.zx2c4.com/wireguard@latest, 2026-05-22
NETBIRD_VERSION=0.77.1                                 # must match tests/netbird/go.mod

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../netbird" && pwd)
: "${HOME:=/root}"
cache=${PEERLINK_CACHE:-$HOME/.cache/peerlink}
bin=$cache/bin

die() { echo "build-tools: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 ||
    die "'go' not found on PATH (need Go >= 1.25; on these machines it lives in /usr/local/go/bin)"
gov=$(go env GOVERSION) # e.g. go1.26.8
[[ $gov =~ ^go1\.([0-9]+) ]] || die "cannot parse Go version '$gov'"
((BASH_REMATCH[1] >= 25)) || die "Go $gov is too old: NetBird v$NETBIRD_VERSION needs Go >= 1.25"

# Persistent module and build caches; never switch toolchains behind our back.
export GOPATH=${GOPATH:-$HOME/go}
export GOMODCACHE=${GOMODCACHE:-$GOPATH/pkg/mod}
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN=local
export CGO_ENABLED=${CGO_ENABLED:-0}

mkdir -p "$bin"

# --- NetBird tools -----------------------------------------------------------
nb_tools=(nb-signal nb-relay nb-relay-peer nb-signal-peer)
nb_stamp=$(
    cd "$src"
    { find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum; echo "$gov $CGO_ENABLED"; } | sha256sum | cut -d' ' -f1
)
need=0
for t in "${nb_tools[@]}"; do [[ -x $bin/$t ]] || need=1; done
[[ $(cat "$bin/.netbird.stamp" 2>/dev/null) == "$nb_stamp" ]] || need=1
if ((need)); then
    echo "build-tools: building ${nb_tools[*]} (NetBird v$NETBIRD_VERSION) ..." >&2
    rm -f "$bin/.netbird.stamp"
    start=$SECONDS
    (cd "$src" && go build -trimpath \
        -ldflags "-s -w -X github.com/netbirdio/netbird/version.version=$NETBIRD_VERSION" \
        -o "$bin/" ./cmd/nb-signal ./cmd/nb-relay ./cmd/nb-relay-peer ./cmd/nb-signal-peer)
    echo "$nb_stamp" >"$bin/.netbird.stamp"
    echo "build-tools: NetBird tools built in $((SECONDS - start)) s" >&2
else
    echo "build-tools: NetBird tools up to date" >&2
fi

# --- NetBird's combined server and Go client ----------------------------------
# Built through the same local module (its replace lines and NetBird's own go.sum). The server
# links sqlite through CGO (a CGO-less build dies at start); the client needs no CGO.
nbfull_stamp="$nb_stamp combined+client"
if [[ ! -x $bin/netbird-server || ! -x $bin/netbird || $(cat "$bin/.netbird-full.stamp" 2>/dev/null) != "$nbfull_stamp" ]]; then
    echo "build-tools: building netbird-server and netbird (NetBird v$NETBIRD_VERSION, a few minutes cold) ..." >&2
    rm -f "$bin/.netbird-full.stamp"
    start=$SECONDS
    ldflags="-s -w -X github.com/netbirdio/netbird/version.version=$NETBIRD_VERSION"
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/netbird" github.com/netbirdio/netbird/client)
    (cd "$src" && CGO_ENABLED=1 go build -trimpath -ldflags "$ldflags" -o "$bin/netbird-server" github.com/netbirdio/netbird/combined)
    echo "$nbfull_stamp" >"$bin/.netbird-full.stamp"
    echo "build-tools: netbird-server and netbird built in $((SECONDS - start)) s" >&2
else
    echo "build-tools: netbird-server and netbird up to date" >&2
fi

# --- an older NetBird Go client ------------------------------------------------
OLD_NETBIRD_VERSION=0.48.0 # must match tests/netbird-old/go.mod
old_src=$(cd "$here/../netbird-old" && pwd)
old_stamp=$(
    cd "$old_src"
    { sha256sum go.mod go.sum; echo "$gov"; } | sha256sum | cut -d' ' -f1
)
if [[ ! -x $bin/netbird-$OLD_NETBIRD_VERSION || $(cat "$bin/.netbird-old.stamp" 2>/dev/null) != "$old_stamp" ]]; then
    echo "build-tools: building netbird-$OLD_NETBIRD_VERSION (about 2 min cold) ..." >&2
    rm -f "$bin/.netbird-old.stamp"
    start=$SECONDS
    (cd "$old_src" && CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X github.com/netbirdio/netbird/version.version=$OLD_NETBIRD_VERSION" \
        -o "$bin/netbird-$OLD_NETBIRD_VERSION" github.com/netbirdio/netbird/client)
    echo "$old_stamp" >"$bin/.netbird-old.stamp"
    echo "build-tools: netbird-$OLD_NETBIRD_VERSION built in $((SECONDS - start)) s" >&2
else
    echo "build-tools: netbird-$OLD_NETBIRD_VERSION up to date" >&2
fi

# --- wireguard-go ------------------------------------------------------------
# golang.zx2c4.com/wireguard's go.mod has no replace directives, so plain
# `go install module@version` works. Its main package is the module root, so
# the binary comes out as "wireguard"; it is renamed to wireguard-go.
wg_stamp="$WIREGUARD_GO_VERSION $gov $CGO_ENABLED"
if [[ ! -x $bin/wireguard-go || $(cat "$bin/.wireguard-go.stamp" 2>/dev/null) != "$wg_stamp" ]]; then
    echo "build-tools: building wireguard-go $WIREGUARD_GO_VERSION ..." >&2
    rm -f "$bin/.wireguard-go.stamp"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    GOBIN=$tmp go install -trimpath -ldflags "-s -w" "golang.zx2c4.com/wireguard@$WIREGUARD_GO_VERSION"
    mv -f "$tmp/wireguard" "$bin/wireguard-go"
    echo "$wg_stamp" >"$bin/.wireguard-go.stamp"
else
    echo "build-tools: wireguard-go up to date" >&2
fi

for t in "${nb_tools[@]}" netbird-server netbird "netbird-$OLD_NETBIRD_VERSION" wireguard-go; do
    echo "$bin/$t"
done
