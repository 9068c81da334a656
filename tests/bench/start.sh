#!/usr/bin/env bash
# Start → first reply through the tunnel (DESIGN §9), root, network namespaces: two `peerlink up`
# started one after the other, finding each other through NetBird's signal server on a hub (with
# its relay and coturn), A pinging B until the first reply (lib.sh's nb_connect), RUNS times on:
#   lan      both peers on one LAN behind one NAT router, ICE only (no relay to answer first);
#   nat      each peer behind its own NAT router, ICE only;
#   relay    each behind its own NAT router, relay only (ICE off).
# One `sample` line per run (tests/bench/figures.py), then the figures (medians). A run without a
# reply within nb_connect's 20 s counts as `fail`.
# Environment: RUNS (10), TOPOLOGIES ("lan nat relay").
# Usage: tests/bench/start.sh   (the release CLI must be built: cargo build --release -p peerlink-cli)
source "$(dirname "$0")/../lab/lib.sh"
source "$(dirname "$0")/../lab/nat.sh"
source "$(dirname "$0")/../lab/coturn.sh"
source "$(dirname "$0")/../lab/servers.sh"
lab_require_root
nb_lab_require
trap 'stop_servers; coturn_stop; lab_cleanup' EXIT
RUNS=${RUNS:-10}
TOPOLOGIES=${TOPOLOGIES:-lan nat relay}

nb_lab_servers "stsrv$LAB_TAG"
LA=stla$LAB_TAG LB=stlb$LAB_TAG
nat_same_lan "$LA" "$LB" 1
NA=stna$LAB_TAG NB=stnb$LAB_TAG
nat_behind "$NA" 2
nat_behind "$NB" 3
: >"$LAB_TMP/samples"

for topo in $TOPOLOGIES; do
    case $topo in
        lan) a=$LA b=$LB relay=no ice=yes ;;
        nat) a=$NA b=$NB relay=no ice=yes ;;
        relay) a=$NA b=$NB relay=yes ice=no ;;
        *) echo "start.sh: unknown topology $topo" >&2; exit 2 ;;
    esac
    for ((run = 1; run <= RUNS; run++)); do
        tag=s${topo:0:1}$run
        # Not in $(...): nb_connect records the peers' pids for nb_stop_peers in this shell.
        if nb_connect "$tag" "$a" "$b" "$relay" "$ice" >"$LAB_TMP/connect.out" 2>&1; then
            ms=$(sed -n 's/^figure start -> first reply, .*: \([0-9]*\) ms$/\1/p' "$LAB_TMP/connect.out")
        else
            ms=fail
            tail -n 5 "$LAB_TMP/connect.out" | sed 's/^/# /'
        fi
        echo "sample start_reply_${topo}$([[ $topo == relay ]] || echo _ice) ${ms:-fail} ms" | tee -a "$LAB_TMP/samples"
        nb_stop_peers
    done
done

echo
python3 "$(dirname "$0")/figures.py" summarize <"$LAB_TMP/samples"
