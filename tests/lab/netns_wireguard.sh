#!/usr/bin/env bash
# Lab: peerlink on real tun devices in two namespaces joined by a veth pair, pinging both ways,
# and interop with wireguard-go (a WireGuard no one here wrote) configured with `wg`.
source "$(dirname "$0")/lib.sh"
lab_require_root
lab_require_tool wireguard-go
command -v wg >/dev/null || lab_skip "wg missing (apt-get install -y wireguard-tools)"
trap lab_cleanup EXIT

A=pla$LAB_TAG B=plb$LAB_TAG C=plc$LAB_TAG
lab_ns "$A"
lab_ns "$B"
lab_ns "$C"
lab_link "$A" 10.250.1.1/24 "$B" 10.250.1.2/24
lab_link "$A" 10.250.2.1/24 "$C" 10.250.2.3/24

ka=$("$PEERLINK" genkey) kb=$("$PEERLINK" genkey) kc=$("$PEERLINK" genkey)
pa=$(peerlink_pub "$ka") pb=$(peerlink_pub "$kb") pc=$(peerlink_pub "$kc")

cat >"$LAB_TMP/a.toml" <<TOML
interface = "pl-a"
private_key = "$ka"
addresses = ["10.251.0.1/24", "fd51::1/64"]
listen_port = 51820

[[peers]]
public_key = "$pb"
allowed_ips = ["10.251.0.2/32", "fd51::2/128"]
endpoint = "10.250.1.2:51820"

[[peers]]
public_key = "$pc"
allowed_ips = ["10.251.0.3/32", "fd51::3/128"]
endpoint = "10.250.2.3:51820"
persistent_keepalive = 25
TOML
cat >"$LAB_TMP/b.toml" <<TOML
interface = "pl-b"
private_key = "$kb"
addresses = ["10.251.0.2/24", "fd51::2/64"]
listen_port = 51820

[[peers]]
public_key = "$pa"
allowed_ips = ["10.251.0.1/32", "fd51::1/128"]
TOML

peerlink_up "$A" pl-a "$LAB_TMP/a.toml" "$LAB_TMP/a.log"
peerlink_up "$B" pl-b "$LAB_TMP/b.toml" "$LAB_TMP/b.log"

# tcp_intact SERVER_NS CLIENT_NS ADDR: 16 MiB over one TCP connection arrive byte for byte.
# peerlink cuts the tun's TCP super-packets and coalesces received segments into new ones whose
# checksum the kernel then trusts (tun/offload.rs, tun/coalesce.rs): a slip there corrupts data
# silently, which a ping cannot see.
head -c 16M /dev/urandom >"$LAB_TMP/blob"
BLOB_SHA=$(sha256sum <"$LAB_TMP/blob" | cut -d' ' -f1)
tcp_intact() {
    local srv=$1 cli=$2 addr=$3 port=$((${TCP_PORT:-5300} + LAB_PASSED + LAB_FAILED))
    ip netns exec "$srv" timeout 60 python3 -c '
import hashlib, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
s.bind((addr, port))
s.listen(1)
c, _ = s.accept()
h = hashlib.sha256()
while d := c.recv(1 << 16):
    h.update(d)
print(h.hexdigest())' "$addr" "$port" >"$LAB_TMP/got" &
    local pid=$!
    lab_wait 10 "TCP listener on $addr" bash -c "ip netns exec $srv ss -Hlnt | grep -q ':$port '"
    ip netns exec "$cli" timeout 60 python3 -c '
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2]))) as s, open(sys.argv[3], "rb") as f:
    s.sendall(f.read())' "$addr" "$port" "$LAB_TMP/blob"
    wait "$pid"
    echo "sent $BLOB_SHA, received $(cat "$LAB_TMP/got")"
    [[ $(cat "$LAB_TMP/got") == "$BLOB_SHA" ]]
}

lab_check "peerlink a -> b ping (IPv4)" ip netns exec "$A" ping -c 3 -i 0.2 -W 3 10.251.0.2
lab_check "peerlink b -> a ping (IPv4)" ip netns exec "$B" ping -c 3 -i 0.2 -W 3 10.251.0.1
lab_check "peerlink a -> b ping (IPv6)" ip netns exec "$A" ping -6 -c 3 -i 0.2 -W 3 fd51::2
lab_check "peerlink b learned a's endpoint by roaming" \
    bash -c "'$PEERLINK' status --interface pl-b | grep -q 'path: direct 10.250.1.1:51820'"
lab_check "peerlink status shows a completed handshake" \
    bash -c "'$PEERLINK' status --interface pl-a | grep -A2 '$pb' | grep -q 'latest handshake: [0-9]'"

# wireguard-go in namespace C, configured with wg from wireguard-tools.
echo "$kc" >"$LAB_TMP/c.key"
lab_bg "$C" "$LAB_TMP/c.log" env WG_PROCESS_FOREGROUND=1 "$PEERLINK_BIN/wireguard-go" -f wg-c
lab_wait 10 "wireguard-go's wg-c" ip -n "$C" link show wg-c
ip netns exec "$C" wg set wg-c private-key "$LAB_TMP/c.key" listen-port 51820 \
    peer "$pa" allowed-ips 10.251.0.1/32,fd51::1/128 endpoint 10.250.2.1:51820
ip -n "$C" addr add 10.251.0.3/24 dev wg-c
ip -n "$C" addr add fd51::3/64 dev wg-c
ip -n "$C" link set wg-c mtu 1280 up

lab_check "peerlink -> wireguard-go ping (IPv4)" ip netns exec "$A" ping -c 3 -i 0.2 -W 3 10.251.0.3
lab_check "wireguard-go -> peerlink ping (IPv4)" ip netns exec "$C" ping -c 3 -i 0.2 -W 3 10.251.0.1
lab_check "wireguard-go -> peerlink ping (IPv6)" ip netns exec "$C" ping -6 -c 3 -i 0.2 -W 3 fd51::1
lab_check "peerlink <-> wireguard-go large packets (1252-byte ICMP, full MTU)" \
    ip netns exec "$A" ping -c 3 -i 0.2 -W 3 -s 1252 -M do 10.251.0.3
lab_check "wg shows peerlink's handshake" \
    bash -c "ip netns exec '$C' wg show wg-c latest-handshakes | awk '{exit !(\$2 > 0)}'"

# Last, so the checks above keep their timing: A's watcher condemns its path to C if C comes up
# too long after A.
lab_check "peerlink a -> b TCP 16 MiB intact (IPv4)" tcp_intact "$B" "$A" 10.251.0.2
lab_check "peerlink b -> a TCP 16 MiB intact (IPv6)" tcp_intact "$A" "$B" fd51::1
lab_check "peerlink -> wireguard-go TCP 16 MiB intact (IPv4)" tcp_intact "$C" "$A" 10.251.0.3
lab_check "wireguard-go -> peerlink TCP 16 MiB intact (IPv6)" tcp_intact "$A" "$C" fd51::1

lab_summary
