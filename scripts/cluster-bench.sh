#!/usr/bin/env bash
# Cluster benchmarks on loopback (three nodes from scripts/cluster.sh, in
# their own data dir):
#
#   forwarding   publish→ack latency of the same open-loop load sent to a
#                partition's leader directly and through a node that does
#                not lead it (forwarded over QUIC), alternating rounds so
#                machine noise hits both alike. Target: forwarding adds
#                < 200 µs at p50.
#   throughput   the same closed-loop load against one node (RF=1) and
#                against the 3-node cluster with replication factor 1 and 3
#                (acks=all: a majority's fdatasync), client straight to
#                leaders; then RF=3 open-loop at half its closed-loop rate
#                for the publish→ack p99. Targets: RF=3 ≥ 35% of the single
#                node, p99 < 5 ms at 50%.
#   failover     kill -9 of a replicated partition's leader → first
#                acks=all produce acknowledged through a survivor, TRIALS
#                trials. Targets: median < 1.5 s, max < 3 s.
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
$ctl topic create "$topic" --partitions 1 --replication-factor 1 --node "$(ip 1):7470" --ca "$ca" > /dev/null
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

# ---- throughput: one node alone vs the 3-node cluster, RF=1 and RF=3
# Same closed-loop load (4 producers, batch 100, 1 KiB, acks=durable, 8
# partitions) against a single node, then against the cluster (client
# straight to each partition's leader) with replication factor 1 and 3.
# All on this machine's two cores: three replicas share them, so this
# measures what replication costs here, not what it scales to.
spread_s="${SPREAD_SECONDS:-15}"
single_dir="$(mktemp -d)"
./target/release/sprawl --data-dir "$single_dir" --listen 127.0.0.1:7571 --admin 127.0.0.1:7581 \
    --shards 2 --no-load-forecast > "$out/single-node.log" 2>&1 &
single_pid=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7581/health > /dev/null && break; sleep 0.1; done
load=(--topics 1 --partitions 8 --producers 4 --batch 100 --size 1024 --acks durable --warmup 2
    --duration "$spread_s" --quiet)
./target/release/loadgen produce --node 127.0.0.1:7571 --ca "$single_dir/tls/cert.pem" \
    --topic-prefix spread "${load[@]}" --name single-node \
    --report "$out/throughput/single-node" > /dev/null
kill "$single_pid"; wait "$single_pid" 2>/dev/null || true
rm -rf "$single_dir"
for rf in 1 3; do
    ./target/release/loadgen produce --node "$(ip 1):7470" --ca "$ca" --replication-factor "$rf" \
        --topic-prefix "spread-rf$rf" "${load[@]}" --name "cluster-rf$rf" \
        --report "$out/throughput/cluster-rf$rf" > /dev/null
done
half=$(python3 -c "import json; print(int(json.load(open('$out/throughput/cluster-rf3/summary.json'))['results']['msgs_per_s'] / 2))")
./target/release/loadgen produce --node "$(ip 1):7470" --ca "$ca" --replication-factor 3 \
    --topic-prefix spread-rf3 "${load[@]}" --rate "$half" --name cluster-rf3-half \
    --report "$out/throughput/cluster-rf3-half" > /dev/null
./target/release/loadgen produce --node "$(ip 1):7470" --ca "$ca" --replication-factor 3 \
    --topic-prefix spread-rf3 "${load[@]}" --rate 1000 --name cluster-rf3-1k \
    --report "$out/throughput/cluster-rf3-1k" > /dev/null
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = {}
for name in ("single-node", "cluster-rf1", "cluster-rf3", "cluster-rf3-half", "cluster-rf3-1k"):
    s = json.load(open(f"{out}/throughput/{name}/summary.json"))
    l = s["latency"]["publish_ack"]
    rows[name] = (s["results"]["msgs_per_s"], l["p50_ms"], l["p99_ms"], l.get("p999_ms", float("nan")))
text = "# Throughput: one node vs the 3-node cluster, RF=1 and RF=3\n\n"
text += ("Closed loop, 4 producers, batch 100, 1 KiB, acks=durable (RF=3: committed on a majority's "
         "disks), 8 partitions; the cluster's client sends to each partition's leader. The last rows are "
         "RF=3 open loop at half its closed-loop rate and at 1,000 msgs/s. One 2-core machine for everything.\n\n")
text += "| run | msgs/s | p50 ms | p99 ms | p99.9 ms |\n|---|---|---|---|---|\n"
for n, (m, p50, p99, p999) in rows.items():
    text += f"| {n} | {m:.0f} | {p50:.2f} | {p99:.2f} | {p999:.2f} |\n"
single = rows["single-node"][0]
text += (f"\nCluster RF=1 / single node: **{rows['cluster-rf1'][0] / single:.2f}x**; "
         f"cluster RF=3 / single node: **{rows['cluster-rf3'][0] / single:.2f}x** (target ≥ 0.35); "
         f"RF=3 at 50%: p99 **{rows['cluster-rf3-half'][2]:.2f} ms** (target < 5 ms); "
         f"at 1,000 msgs/s: p99 **{rows['cluster-rf3-1k'][2]:.2f} ms**.\n")
open(f"{out}/throughput.md", "w").write(text)
print(text)
PY

# ---- partition failover (replication factor 3)
replica_leader() { # node $1's view of the leader of topic $2 partition 0
    curl -sf "http://$(ip "$1"):7480/topics" | python3 -c "
import json,sys
for t in json.load(sys.stdin)['topics']:
    if t['name'] == '$2':
        for p in t['partition_state']:
            r = p.get('replica') or {}
            if p['partition'] == 0 and r.get('leader') and len(r.get('in_sync') or []) == 3:
                print(r['leader'])"
}
$ctl topic create pfail --partitions 1 --replication-factor 3 --node "$(ip 1):7470" --ca "$ca" > /dev/null
echo "trial,killed,failover_ms" > "$out/failover.csv"
for t in $(seq 1 "$trials"); do
    leader=""
    for _ in $(seq 1 200); do
        for n in 1 2 3; do
            l=$(replica_leader "$n" pfail 2>/dev/null || true)
            [ "$l" = "$n" ] && leader=$n
        done
        [ -n "$leader" ] && break
        $ctl publish -t pfail -m warm --node "$(ip 1):7470" --ca "$ca" --timeout 1s > /dev/null 2>&1 || true
        sleep 0.1
    done
    [ -n "$leader" ] || { log "no in-sync partition leader"; exit 1; }
    survivor=$(( leader % 3 + 1 ))
    start=$(date +%s%N)
    scripts/cluster.sh kill "$leader" > /dev/null
    until $ctl publish -t pfail -m "after-kill-$t" --node "$(ip "$survivor"):7470" --ca "$ca" \
        --timeout 300ms > /dev/null 2>&1; do
        sleep 0.02
    done
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    echo "$t,$leader,$ms" >> "$out/failover.csv"
    log "trial $t: killed partition leader $leader, acks=all produce acknowledged after $ms ms"
    scripts/cluster.sh start "$leader" > /dev/null
    sleep 2
done
python3 - "$out" <<'PY'
import csv, statistics, sys
out = sys.argv[1]
ms = [int(r["failover_ms"]) for r in csv.DictReader(open(f"{out}/failover.csv"))]
text = (
    "# Partition failover (RF=3, acks=all)\n\n"
    f"kill -9 of the partition's Raft leader → first acks=all produce acknowledged through a "
    f"survivor (sprawlctl publish, 300 ms per attempt), {len(ms)} trials (50 ms ticks, election "
    f"after 10–20 ticks, pre-vote and check-quorum; forwarding links drop a dead node after 1 s): "
    f"median **{statistics.median(ms):.0f} ms**, max **{max(ms)} ms**, min {min(ms)} ms "
    "(targets: median < 1.5 s, max < 3 s).\n"
)
open(f"{out}/failover.md", "w").write(text)
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
