#!/usr/bin/env bash
# The skewed-placement benchmark of predictive rebalancing: one node, two
# shards, two topics whose hot partitions all start on shard 0. The same
# load runs four ways, each on a fresh node:
#
#   off-noforecast  no load thread at all (reactor-lag baseline)
#   off             load thread on (history, forecasts), no rebalancing
#   reactive        auto rebalancing on current load
#   predictive      auto rebalancing on forecasts
#
# Load: `steady` — closed loop, 4 producers, batch 100, 1 KiB, acks=durable,
# 90% of messages to the partitions the default placement puts on shard 0
# (this run's throughput and publish→ack p99 are what is compared);
# `bursty` — open loop, 500 msgs/s with 15 s bursts at 20k msgs/s every 45 s,
# also hot on shard 0 (what a forecast can see coming).
#
#   scripts/rebalance-bench.sh [OUT_DIR]   default bench-results/<UTC date>-rebalance
#
# Environment: REBALANCE_SECONDS (per mode, default 90).
# Writes per mode: loadgen reports (steady/, bursty/), load.json (the node's
# per-shard message rate), metrics.txt; and OUT_DIR/report.md with the
# comparison and shard-load.svg (per-shard load over time, each mode).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${REBALANCE_SECONDS:-90}"
out="${1:-bench-results/$(date -u +%F)-rebalance}"
log() { echo "rebalance-bench: $*" >&2; }

log "building (release)"
cargo build --release -q -p sprawl-node -p sprawl-loadgen
mkdir -p "$out"
tmp="$(mktemp -d)"
node_pid=""
cleanup() {
    [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

{
    echo "# Machine"
    uname -a
    echo "cores: $(nproc)"
    lscpu | grep -m1 'Model name' || true
    free -g | head -2
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.txt"

admin=127.0.0.1:7581
quic=127.0.0.1:7571
for mode in off-noforecast off reactive predictive; do
    log "mode $mode: ${seconds}s"
    data="$tmp/$mode"
    mkdir -p "$out/$mode"
    flags=(--data-dir "$data" --listen "$quic" --admin "$admin" --shards 2
        --forecast-train-every-s 10 --rebalance-interval-s 5)
    case "$mode" in
        off-noforecast) flags+=(--no-load-forecast) ;;
        off) flags+=(--rebalance-auto off) ;;
        *) flags+=(--rebalance-auto "$mode") ;;
    esac
    ./target/release/sprawl "${flags[@]}" > "$out/$mode-node.log" 2>&1 &
    node_pid=$!
    for _ in $(seq 100); do
        curl -sf "http://$admin/health" > /dev/null && break
        sleep 0.1
    done
    common=(--node "$quic" --ca "$data/tls/cert.pem" --partitions 8 --size 1024
        --acks durable --duration "$seconds" --quiet --hot-on-shard 0 --node-shards 2)
    ./target/release/loadgen produce "${common[@]}" --topic-prefix bursty --topics 1 \
        --producers 1 --batch 10 --rate 500 --burst-period 45s --burst-duration 15s \
        --burst-rate 20000 --hot-share 0.9 --name "$mode-bursty" --report "$out/$mode/bursty" \
        > "$out/$mode/bursty.log" 2>&1 &
    bursty_pid=$!
    ./target/release/loadgen produce "${common[@]}" --topic-prefix steady --topics 1 \
        --producers 4 --batch 100 --hot-share 0.9 --name "$mode-steady" \
        --report "$out/$mode/steady" > "$out/$mode/steady.log" 2>&1
    wait "$bursty_pid" || log "bursty loadgen failed in $mode"
    window=$((seconds + 10))
    if [ "$mode" != off-noforecast ]; then
        curl -sf "http://$admin/load?scope=shard&resource=message_rate&window=$window" \
            > "$out/$mode/load.json" || true
        curl -sf "http://$admin/load?scope=node&resource=cpu&window=1" \
            > "$out/$mode/forecaster.json" || true
        curl -sf "http://$admin/rebalance/status" > "$out/$mode/rebalance-status.json" || true
        curl -sf "http://$admin/predictions?resource=message_rate&scope=partition&horizon=30s" \
            > "$out/$mode/predictions.json" || true
    fi
    curl -sf "http://$admin/topics" > "$out/$mode/topics.json" || true
    curl -sf "http://$admin/metrics" > "$out/$mode/metrics.txt" || true
    kill "$node_pid"
    wait "$node_pid" || true
    node_pid=""
    # ~12 GB per mode at full speed: never keep two modes' data at once.
    rm -rf "$data"
done

python3 - "$out" <<'EOF'
import json, os, re, sys
out = sys.argv[1]
modes = ["off-noforecast", "off", "reactive", "predictive"]
rows, series = [], {}
def summary(mode, which):
    with open(os.path.join(out, mode, which, "summary.json")) as f:
        return json.load(f)
def reactor_lag(mode):
    try:
        text = open(os.path.join(out, mode, "metrics.txt")).read()
    except OSError:
        return None
    vals = [float(v) for v in re.findall(r'sprawl_reactor_lag_seconds\{shard="\d+",quantile="0.99"\} ([0-9.e-]+)', text)]
    return max(vals) * 1e3 if vals else None
def excess(load):
    # mean over seconds with traffic of (max/mean - 1) across shards
    per_shard = [s["values"] for s in load["series"]]
    n = min(len(v) for v in per_shard)
    ex = []
    for i in range(n):
        vals = [v[i] for v in per_shard]
        if any(x is None for x in vals):
            continue
        mean = sum(vals) / len(vals)
        if mean > 100:
            ex.append(max(vals) / mean - 1)
    return sum(ex) / len(ex) if ex else None
for mode in modes:
    steady = summary(mode, "steady")
    r, lat = steady["results"], steady["latency"]["publish_ack"]
    load_path = os.path.join(out, mode, "load.json")
    ex = None
    if os.path.exists(load_path):
        load = json.load(open(load_path))
        ex = excess(load)
        series[mode] = {s["scope"]: s["values"] for s in load["series"]}
    moves = None
    status_path = os.path.join(out, mode, "rebalance-status.json")
    if os.path.exists(status_path):
        moves = json.load(open(status_path))["moves"]["moves_done"]
    cpu = None
    fpath = os.path.join(out, mode, "forecaster.json")
    if os.path.exists(fpath):
        cpu = json.load(open(fpath))["forecaster"]["cpu_share_of_one_core"]
    rows.append((mode, r["msgs_per_s"], lat["p99_ms"], lat["p999_ms"], ex, moves, reactor_lag(mode), cpu))
base = rows[1]
with open(os.path.join(out, "report.md"), "w") as f:
    f.write("# Skewed placement: no rebalancing vs reactive vs predictive\n\n")
    f.write("Command: `scripts/rebalance-bench.sh`. Machine: see machine.txt. Same machine, same run; "
            "the steady topic's closed-loop throughput and publish→ack latency are compared.\n\n")
    f.write("| mode | steady msgs/s | vs off | p99 ms | p99.9 ms | mean excess imbalance | moves | reactor lag p99 ms (worst shard) | forecaster CPU (share of one core) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    fmt = lambda v, p="{:.2f}": "–" if v is None else p.format(v)
    for (mode, tput, p99, p999, ex, moves, lag, cpu) in rows:
        f.write(f"| {mode} | {tput:,.0f} | {tput / base[1]:.2f}× | {p99:.1f} | {p999:.1f} | {fmt(ex)} | {fmt(moves, '{}')} | {fmt(lag)} | {fmt(cpu, '{:.2%}')} |\n")
    f.write("\nExcess imbalance: per second with traffic, max/mean − 1 of the shards' message rates, averaged over the run.\n")
    f.write("\n![per-shard load](shard-load.svg)\n")
# SVG: one panel per mode, one polyline per shard.
w, h, pad = 900, 160, 30
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{(h + pad) * len(series) + pad}" font-family="sans-serif" font-size="12">']
colors = ["#1f77b4", "#d62728"]
for k, (mode, shards) in enumerate(series.items()):
    top = pad + k * (h + pad)
    ymax = max((v for vals in shards.values() for v in vals if v is not None), default=1) or 1
    svg.append(f'<text x="10" y="{top - 8}">{mode}: messages/s per shard (max {ymax:,.0f})</text>')
    svg.append(f'<rect x="40" y="{top}" width="{w - 60}" height="{h}" fill="none" stroke="#999"/>')
    for j, (scope, vals) in enumerate(sorted(shards.items())):
        pts = []
        for i, v in enumerate(vals):
            if v is None:
                continue
            x = 40 + (w - 60) * i / max(1, len(vals) - 1)
            y = top + h - h * v / ymax
            pts.append(f"{x:.1f},{y:.1f}")
        svg.append(f'<polyline fill="none" stroke="{colors[j % 2]}" stroke-width="1.5" points="{" ".join(pts)}"/>')
        svg.append(f'<text x="{w - 120}" y="{top + 15 + 15 * j}" fill="{colors[j % 2]}">{scope}</text>')
svg.append("</svg>")
open(os.path.join(out, "shard-load.svg"), "w").write("\n".join(svg))
print(open(os.path.join(out, "report.md")).read())
EOF
