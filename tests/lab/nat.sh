# shellcheck shell=bash
# NAT topologies for the lab suites. Source it after lib.sh (it uses lab_ns and lab_link, so
# every namespace it makes is removed by lab_cleanup).
#
#   server namespace (the "internet" hub; coturn and NetBird's servers run here)
#     service address  NAT_SERVER_IP (10.200.0.1/32 on its lo)
#     default route    to a sink namespace that drops everything (no dummy interfaces on
#                      these machines), so nothing leaves and coturn keeps its allocations
#                      when a peer address is unreachable (DESIGN 8)
#     WAN link i       10.201.i.1/24  <->  router i  10.201.i.2/24
#   router i           MASQUERADE (or MASQUERADE --random-fully: a symmetric NAT) out of its
#                      WAN; drops unsolicited inbound to itself on the WAN (DESIGN 8: without
#                      that, a peer's first check clashes with the local mapping and hole
#                      punching fails every time)
#     LAN              10.202.i.0/24: the router is .1, peers are .2, .3, ...
#
# The peers' private LANs are not routed on the hub: only NAT mappings reach them.
# Functions set NAT_* variables the suite reads (addresses, interface names).

NAT_SERVER_IP=10.200.0.1

# nat_server NS: make NS the server namespace (hub). Sets NAT_SERVER_NS.
nat_server() {
    local ns=$1
    lab_ns "$ns"
    NAT_SERVER_NS=$ns
    ip -n "$ns" addr add "$NAT_SERVER_IP/32" dev lo
    lab_ns "$ns-sink"
    lab_link "$ns" 10.200.255.1/30 "$ns-sink" 10.200.255.2/30
    ip -n "$ns" route add default via 10.200.255.2
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
}

# nat_router NS INDEX [--random-fully]: a NAT router joined to the server's hub on WAN link
# INDEX (1-250). Sets NAT_WAN_IF (its WAN interface) and NAT_WAN_IP.
nat_router() {
    local ns=$1 i=$2 mode=${3:-}
    local random=()
    case "$mode" in
        "") ;;
        --random-fully) random=(--random-fully) ;;
        *) echo "nat_router: unknown option $mode" >&2; return 1 ;;
    esac
    : "${NAT_SERVER_NS:?nat_server first}"
    lab_ns "$ns"
    lab_link "$NAT_SERVER_NS" "10.201.$i.1/24" "$ns" "10.201.$i.2/24"
    NAT_WAN_IF="v${LAB_TAG}b${_LAB_LINKS}"
    NAT_WAN_IP=10.201.$i.2
    ip -n "$ns" route add default via "10.201.$i.1"
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
    ip netns exec "$ns" iptables -t nat -A POSTROUTING -o "$NAT_WAN_IF" -j MASQUERADE "${random[@]}"
    ip netns exec "$ns" iptables -A INPUT -i "$NAT_WAN_IF" -m conntrack --ctstate NEW,INVALID -j DROP
}

# nat_peer NS ROUTER INDEX: a peer namespace alone on router INDEX's LAN at 10.202.INDEX.2,
# default route through the router. Sets NAT_PEER_IP.
nat_peer() {
    local ns=$1 router=$2 i=$3
    lab_ns "$ns"
    lab_link "$router" "10.202.$i.1/24" "$ns" "10.202.$i.2/24"
    ip -n "$ns" route add default via "10.202.$i.1"
    NAT_PEER_IP=10.202.$i.2
}

# nat_behind NAME INDEX [--random-fully]: the common case, one peer behind its own NAT router:
# namespaces NAME (the peer) and NAME-r (its router). Sets NAT_PEER_IP and NAT_WAN_IP.
nat_behind() {
    local name=$1 i=$2 mode=${3:-}
    nat_router "$name-r" "$i" "$mode"
    nat_peer "$name" "$name-r" "$i"
}

# nat_same_lan NAME_A NAME_B INDEX: two peers on one LAN (a bridge in the router NAME_A-r),
# behind one NAT router: they should meet on host candidates.
nat_same_lan() {
    local a=$1 b=$2 i=$3
    nat_router "$a-r" "$i"
    ip -n "$a-r" link add nat-br type bridge
    ip -n "$a-r" addr add "10.202.$i.1/24" dev nat-br
    ip -n "$a-r" link set nat-br up
    lab_ns "$a"
    lab_ns "$b"
    _nat_join_lan "$a-r" "$i" "$a" 2
    _nat_join_lan "$a-r" "$i" "$b" 3
}

# nat_block_udp_between_peers: the hub drops UDP between NAT routers' WAN addresses (peer to
# peer, srflx to srflx), while STUN and TURN to the server still pass.
nat_block_udp_between_peers() {
    ip netns exec "${NAT_SERVER_NS:?nat_server first}" \
        iptables -I FORWARD -p udp -s 10.201.0.0/16 -d 10.201.0.0/16 -j DROP
}

nat_unblock_udp_between_peers() {
    ip netns exec "${NAT_SERVER_NS:?nat_server first}" \
        iptables -D FORWARD -p udp -s 10.201.0.0/16 -d 10.201.0.0/16 -j DROP
}

# nat_count_udp NS IFACE: UDP packets forwarded through IFACE in NS, both directions, since
# the counting rules were added (added on first call). Measures what an idle ICE pair sends.
nat_count_udp() {
    local ns=$1 ifc=$2 dir
    for dir in -i -o; do
        ip netns exec "$ns" iptables -C FORWARD "$dir" "$ifc" -p udp -j ACCEPT 2>/dev/null ||
            ip netns exec "$ns" iptables -I FORWARD "$dir" "$ifc" -p udp -j ACCEPT
    done
    ip netns exec "$ns" iptables -L FORWARD -v -x -n |
        awk -v i="$ifc" '$3 == "ACCEPT" && ($4 == "udp" || $4 == "17") && ($6 == i || $7 == i) { n += $1 } END { print n + 0 }'
}

# _nat_join_lan ROUTER INDEX NS HOST: a veth from NS into ROUTER's LAN bridge (made on demand).
_nat_join_lan() {
    local router=$1 i=$2 ns=$3 host=$4
    if ! ip -n "$router" link show nat-br >/dev/null 2>&1; then
        echo "_nat_join_lan: $router has no LAN bridge" >&2
        return 1
    fi
    _LAB_LINKS=$((${_LAB_LINKS:-0} + 1))
    local ir="v${LAB_TAG}a${_LAB_LINKS}" ip_="v${LAB_TAG}b${_LAB_LINKS}"
    ip link add "$ir" netns "$router" type veth peer name "$ip_" netns "$ns"
    ip -n "$router" link set "$ir" master nat-br up
    ip -n "$ns" addr add "10.202.$i.$host/24" dev "$ip_"
    ip -n "$ns" link set "$ip_" up
    ip -n "$ns" route add default via "10.202.$i.1"
}
