#!/usr/bin/env bash
# Cluster benchmarks on loopback (three nodes from scripts/cluster.sh, in
# their own data dir):
#
#   forwarding   publish→ack latency of the same open-loop load sent to a
#                partition's leader directly and through a node that does
#                not lead it (forwarded over QUIC), alternating rounds so
#                machine noise hits both alike. Target: forwarding adds
#                < 200 µs at p50.
#   throughput   the same closed-loop load against one node and against
#                the 3-node cluster (replication factor 1, client straight
#                to leaders).
#   meta-failover  kill -9 of the metadata Raft leader → first topic change
#                committed through a survivor, over TRIALS trials (the
#                killed node is restarted between trials).
#
#   scripts/cluster-bench.sh [OUT_DIR]    default bench-results/<UTC date>-cluster
#
# Environment: ROUNDS (forwarding rounds per path, default 3), ROUND_SECONDS
# (default 10), SPREAD_SECONDS (default 15), RATE (msgs/s, default 300: one partition with batch 1 and an fdatasync per ack stays well below saturation), TRIALS (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-results/$(date -u +%F)-cluster}"
rounds="${ROUNDS:-3}"
round_s="${ROUND_SECONDS:-10}"
rate="${RATE:-300}"
trials="${TRIALS:-10}"
log() { echo "cluster-bench: $*" >&2; }

export SPRAWL_CLUSTER_DIR
SPRAWL_CLUSTER_DIR="$(mktemp -d)"
cleanup() {
    scripts/cluster.sh down > /dev/null 2>&1 || true
    rm -rf "$SPRAWL_CLUSTER_DIR"
}
trap cleanup EXIT
log "building (release)"
cargo build --release -q -p sprawl-node -p sprawl-ctl -p sprawl-loadgen
mkdir -p "$out"
{
    echo "# Machine"
    uname -a
    echo "cores: $(nproc)"
    lscpu | grep -m1 'Model name' || true
    free -g | head -2
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.txt"

ctl=./target/release/sprawlctl
ca="$SPRAWL_CLUSTER_DIR/certs/ca.pem"
ip() { echo "127.0.0.$(($1 + 1))"; }
meta() { curl -sf "http://$(ip "$1"):7480/cluster" | python3 -c "import json,sys; m=json.load(sys.stdin)['metadata']; print(m['$2'] if m else '')"; }

scripts/cluster.sh up 3 > "$out/cluster-up.txt"
for _ in $(seq 1 100); do
    [ "$(meta 1 voters 2>/dev/null)" = "[1, 2, 3]" ] && break
    sleep 0.2
done
[ "$(meta 1 voters)" = "[1, 2, 3]" ] || { log "the metadata group did not form"; exit 1; }

# ---- forwarding overhead
topic=fwd-0   # the name loadgen gives --topic-prefix fwd's only topic
$ctl topic create "$topic" --partitions 1 --node "$(ip 1):7470" --ca "$ca" > /dev/null
leader=$($ctl topic describe "$topic" --node "$(ip 1):7470" --ca "$ca" --format json |
    python3 -c "import json,sys; print(json.load(sys.stdin)['partitions'][0]['leader_node_id'])")
other=$(( leader % 3 + 1 ))
log "partition $topic/0 is led by node $leader; forwarding through node $other"
for r in $(seq 1 "$rounds"); do
    for path in direct forwarded; do
        n=$leader
        [ "$path" = forwarded ] && n=$other
        ./target/release/loadgen produce --node "$(ip "$n"):7470" --ca "$ca" --via-node \
            --topic-prefix fwd --topics 1 --partitions 1 --producers 1 --batch 1 \
            --rate "$rate" --size 1024 --acks durable --warmup 2 --duration "$round_s" --quiet \
            --name "$path-$r" --report "$out/forwarding/$path-$r" > /dev/null
        log "round $r $path: p50 $(python3 -c "import json; print(json.load(open('$out/forwarding/$path-$r/summary.json'))['latency']['publish_ack']['p50_ms'])") ms"
    done
done
python3 - "$out" "$rounds" "$rate" "$round_s" <<'PY'
import json, statistics, sys
out, rounds, rate, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows, ratio = [], {}
for path in ("direct", "forwarded"):
    for r in range(1, rounds + 1):
        s = json.load(open(f"{out}/forwarding/{path}-{r}/summary.json"))
        l = s["latency"]["publish_ack"]
        rows.append((path, r, s["target"]["address"], s["results"]["msgs_per_s"], l["p50_ms"], l["p99_ms"], l["p999_ms"]))
def med(path, i):
    return statistics.median(x[i] for x in rows if x[0] == path)
lines = [
    "# Forwarding overhead",
    "",
    f"One partition, open loop {rate} msgs/s, 1 KiB, batch 1, acks=durable, {secs} s per round,",
    "rounds alternating direct (to the leader) and forwarded (through a node that",
    "does not lead it). Same run, same machine, three nodes on loopback.",
    "",
    "| path | round | node | msgs/s | p50 ms | p99 ms | p99.9 ms |",
    "|---|---|---|---|---|---|---|",
]
for p, r, a, m, p50, p99, p999 in rows:
    lines.append(f"| {p} | {r} | {a} | {m:.0f} | {p50:.3f} | {p99:.3f} | {p999:.3f} |")
d50, f50 = med("direct", 4), med("forwarded", 4)
d99, f99 = med("direct", 5), med("forwarded", 5)
lines += [
    "",
    f"Median over rounds: p50 direct {d50:.3f} ms, forwarded {f50:.3f} ms: forwarding adds **{(f50 - d50) * 1000:.0f} µs** at p50 (target < 200 µs);",
    f"p99 direct {d99:.3f} ms, forwarded {f99:.3f} ms.",
]
open(f"{out}/forwarding.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines[-3:]))
PY

# ---- throughput: one node alone vs the 3-node cluster (replication factor 1)
# Same closed-loop load (4 producers, batch 100, 1 KiB, acks=durable, 8
# partitions) against a single node, then against the cluster with a client
# that sends straight to each partition's leader. All on this machine's two
# cores, so this measures what the cluster costs here, not what it scales to.
spread_s="${SPREAD_SECONDS:-15}"
single_dir="$(mktemp -d)"
./target/release/sprawl --data-dir "$single_dir" --listen 127.0.0.1:7571 --admin 127.0.0.1:7581 \
    --shards 2 --no-load-forecast > "$out/single-node.log" 2>&1 &
single_pid=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7581/health > /dev/null && break; sleep 0.1; done
./target/release/loadgen produce --node 127.0.0.1:7571 --ca "$single_dir/tls/cert.pem" \
    --topic-prefix spread --topics 1 --partitions 8 --producers 4 --batch 100 --size 1024 \
    --acks durable --warmup 2 --duration "$spread_s" --quiet --name single-node \
    --report "$out/throughput/single-node" > /dev/null
kill "$single_pid"; wait "$single_pid" 2>/dev/null || true
rm -rf "$single_dir"
./target/release/loadgen produce --node "$(ip 1):7470" --ca "$ca" \
    --topic-prefix spread --topics 1 --partitions 8 --producers 4 --batch 100 --size 1024 \
    --acks durable --warmup 2 --duration "$spread_s" --quiet --name cluster-rf1 \
    --report "$out/throughput/cluster-rf1" > /dev/null
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = []
for name in ("single-node", "cluster-rf1"):
    s = json.load(open(f"{out}/throughput/{name}/summary.json"))
    l = s["latency"]["publish_ack"]
    rows.append((name, s["results"]["msgs_per_s"], l["p50_ms"], l["p99_ms"]))
text = "# Throughput: one node vs the 3-node cluster (RF=1)\n\n"
text += "Closed loop, 4 producers, batch 100, 1 KiB, acks=durable, 8 partitions; the cluster's client sends to each partition's leader. One 2-core machine for everything.\n\n"
text += "| run | msgs/s | p50 ms | p99 ms |\n|---|---|---|---|\n"
for n, m, p50, p99 in rows:
    text += f"| {n} | {m:.0f} | {p50:.2f} | {p99:.2f} |\n"
text += f"\nCluster / single node: **{rows[1][1] / rows[0][1]:.2f}x** throughput.\n"
open(f"{out}/throughput.md", "w").write(text)
print(text)
PY

# ---- metadata failover
echo "trial,killed,new_leader,failover_ms" > "$out/meta-failover.csv"
for t in $(seq 1 "$trials"); do
    old=$(meta 1 leader)
    [ -n "$old" ] && [ "$old" != "None" ] || old=$(meta 2 leader)
    survivor=$(( old % 3 + 1 ))
    start=$(date +%s%N)
    scripts/cluster.sh kill "$old" > /dev/null
    # The first topic change committed through a survivor.
    until $ctl topic create "failover-$t" --partitions 1 --node "$(ip "$survivor"):7470" --ca "$ca" \
        --timeout 300ms > /dev/null 2>&1; do
        sleep 0.02
    done
    end=$(date +%s%N)
    new=$(meta "$survivor" leader)
    ms=$(( (end - start) / 1000000 ))
    echo "$t,$old,$new,$ms" >> "$out/meta-failover.csv"
    log "trial $t: killed metadata leader $old, node $new leads, change committed after $ms ms"
    scripts/cluster.sh start "$old" > /dev/null
    for _ in $(seq 1 100); do
        [ "$(meta "$old" leader 2>/dev/null)" = "$new" ] && break
        sleep 0.1
    done
    sleep 1
done
python3 - "$out" <<'PY'
import csv, statistics, sys
out = sys.argv[1]
ms = [int(r["failover_ms"]) for r in csv.DictReader(open(f"{out}/meta-failover.csv"))]
text = (
    "# Metadata failover\n\n"
    f"kill -9 of the metadata Raft leader → first topic change committed through a survivor, "
    f"{len(ms)} trials (100 ms ticks, election after 10–20 ticks, pre-vote and check-quorum on): "
    f"median **{statistics.median(ms):.0f} ms**, max **{max(ms)} ms**, min {min(ms)} ms.\n"
)
open(f"{out}/meta-failover.md", "w").write(text)
print(text)
PY
log "done: $out"
