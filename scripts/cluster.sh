#!/usr/bin/env bash
# A local Sprawl cluster on loopback, one process per node:
#
#   scripts/cluster.sh up N      start nodes 1..N (builds the release binary first)
#   scripts/cluster.sh status    each node's view of the membership
#   scripts/cluster.sh kill I    kill -9 node I (it is declared down in ~1-2 s)
#   scripts/cluster.sh start I   restart node I on its data dir
#   scripts/cluster.sh down      stop every node (SIGTERM)
#
# Node I (node id I) listens on 127.0.0.(I+1): client QUIC :7470, admin
# HTTP :7480, gossip UDP :7946, node-to-node QUIC :7490, with data in
# ./data/cluster/node-I, one shard, rack rI%2, and joins through node 1's
# gossip address. Node 1 founds the metadata Raft group (--bootstrap); the
# others join it as learners and the first two become voters. Gossip is
# sealed with a cluster key generated once into ./data/cluster/cluster.key;
# node-to-node QUIC uses mutual TLS from a cluster CA made once with
# `sprawlctl cert` into ./data/cluster/certs (clients verify nodes with
# --ca-file ./data/cluster/certs/ca.pem).
#
# Topics are placed on the nodes by rendezvous hashing (3 replicas per
# partition on 3 or more nodes, each partition one Raft group) and every
# node forwards requests for partitions it does not lead.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${SPRAWL_CLUSTER_DIR:-./data/cluster}"
bin=./target/release/sprawl
ctl=./target/release/sprawlctl
certs=$dir/certs
ip() { echo "127.0.0.$(($1 + 1))"; }

start_node() {
    local i=$1 a bootstrap=()
    a=$(ip "$i")
    mkdir -p "$dir/node-$i"
    [ -f "$certs/ca.pem" ] || "$ctl" cert ca --dir "$certs" > /dev/null
    [ -f "$certs/node-$i.pem" ] ||
        "$ctl" cert node --ca-dir "$certs" --node-id "$i" --name "$a" --name localhost > /dev/null
    [ "$i" = 1 ] && bootstrap=(--bootstrap)
    "$bin" --node-id "$i" --data-dir "$dir/node-$i" --listen "$a:7470" --admin "$a:7480" \
        --gossip "$a:7946" --join "$(ip 1):7946" --cluster-key "$(cat "$dir/cluster.key")" \
        --cluster-ca "$certs/ca.pem" --tls-cert "$certs/node-$i.pem" \
        --tls-key "$certs/node-$i-key.pem" --peer-listen "$a:7490" "${bootstrap[@]}" \
        --rack "r$((i % 2))" --shards 1 --no-pin > "$dir/node-$i.log" 2>&1 &
    echo $! > "$dir/node-$i.pid"
    echo "node $i: quic $a:7470  admin http://$a:7480  gossip $a:7946  peer $a:7490  data $dir/node-$i  (pid $!)"
}

case "${1:-}" in
    up)
        n="${2:?usage: scripts/cluster.sh up N}"
        cargo build --release -q -p sprawl-node -p sprawl-ctl
        mkdir -p "$dir"
        [ -f "$dir/cluster.key" ] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$dir/cluster.key"
        for i in $(seq 1 "$n"); do start_node "$i"; done
        # Ready once node 1's metadata group has every node as a member.
        members='import json,sys; m=json.load(sys.stdin)["metadata"] or {}; print(len(m.get("voters",[]))+len(m.get("learners",[])))'
        for _ in $(seq 1 150); do
            got=$(curl -sf "http://$(ip 1):7480/cluster" | python3 -c "$members" 2>/dev/null || echo 0)
            [ "$got" -ge "$n" ] && break
            sleep 0.2
        done
        "$0" status
        ;;
    start)
        start_node "${2:?usage: scripts/cluster.sh start I}"
        ;;
    status)
        summary='import json,sys; d=json.load(sys.stdin); m=d.get("metadata") or {}; print(", ".join("%s@%s %s" % (m["node_id"], m["gossip"], m["state"]) for m in [d["local"]] + d["members"]) + "; metadata: %s, leader %s, term %s" % (m.get("role"), m.get("leader"), m.get("term")))'
        for pidfile in "$dir"/node-*.pid; do
            [ -e "$pidfile" ] || { echo "no cluster running (scripts/cluster.sh up N)"; exit 0; }
            i=$(basename "$pidfile" .pid)
            i=${i#node-}
            if kill -0 "$(cat "$pidfile")" 2>/dev/null; then
                view=$(curl -sf "http://$(ip "$i"):7480/cluster" | python3 -c "$summary" || echo "starting")
                echo "== node $i ($(ip "$i")): $view"
            else
                echo "== node $i ($(ip "$i")): not running"
            fi
        done
        ;;
    kill)
        i="${2:?usage: scripts/cluster.sh kill I}"
        kill -9 "$(cat "$dir/node-$i.pid")" && echo "killed node $i"
        ;;
    down)
        for pidfile in "$dir"/node-*.pid; do
            [ -e "$pidfile" ] || continue
            kill "$(cat "$pidfile")" 2>/dev/null || true
            rm -f "$pidfile"
        done
        echo "stopped"
        ;;
    *)
        sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
