#!/usr/bin/env bash
# Live forecasting: loadgen drives a node with a periodic-burst scenario and
# with every real trace in ../shared/data/load-traces (time-compressed), and
# the node's own forecasters are scored on what they saw: at the end of each
# scenario, /predictions gives every forecaster's rolling MAPE/MASE on the
# node's message rate (the last 96 forecasts at each horizon) and which one
# the node uses.
#
#   scripts/forecast-live-bench.sh [OUT_DIR]   default bench-results/<UTC date>-forecast-live
#
# Environment: LIVE_SECONDS per scenario (default 180), TRACES_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${LIVE_SECONDS:-180}"
traces="${TRACES_DIR:-../shared/data/load-traces}"
out="${1:-bench-results/$(date -u +%F)-forecast-live}"
log() { echo "forecast-live-bench: $*" >&2; }

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
    uname -a
    echo "cores: $(nproc)"
    lscpu | grep -m1 'Model name' || true
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.txt"

admin=127.0.0.1:7582
quic=127.0.0.1:7572
run() {
    local name="$1"
    shift
    log "$name: ${seconds}s"
    mkdir -p "$out/$name"
    ./target/release/sprawl --data-dir "$tmp/$name" --listen "$quic" --admin "$admin" \
        --shards 2 --forecast-train-every-s 10 > "$out/$name/node.log" 2>&1 &
    node_pid=$!
    for _ in $(seq 100); do
        curl -sf "http://$admin/health" > /dev/null && break
        sleep 0.1
    done
    ./target/release/loadgen produce --node "$quic" --ca "$tmp/$name/tls/cert.pem" \
        --topics 1 --partitions 4 --producers 2 --batch 10 --size 256 --acks leader \
        --duration "$seconds" --quiet --name "$name" --report "$out/$name/loadgen" "$@" \
        > "$out/$name/loadgen.log" 2>&1 || log "loadgen failed in $name (see loadgen.log)"
    sleep 2
    for h in 10 60; do
        curl -sf "http://$admin/predictions?resource=message_rate&scope=node&horizon=${h}s" \
            > "$out/$name/predictions-${h}s.json" || true
    done
    curl -sf "http://$admin/load?scope=node&resource=message_rate&window=$((seconds + 10))" \
        > "$out/$name/load.json" || true
    kill "$node_pid"
    wait "$node_pid" || true
    node_pid=""
    rm -rf "${tmp:?}/$name"
}

run periodic-20s --rate 2000 --burst-period 20s --burst-duration 5s --burst-rate 10000
for trace in "$traces"/*.csv; do
    name="trace-$(basename "$trace" .csv)"
    # 5-minute samples at 3000x: a day of trace in ~29 s, so the daily
    # pattern repeats within a run.
    run "$name" --rate-trace "$trace" --trace-speedup 3000 --trace-peak-rate 10000
done

python3 - "$out" <<'EOF'
import glob, json, math, os, sys
out = sys.argv[1]
lines = ["# Live forecasting: the node's forecasters on loadgen scenarios and replayed traces", "",
         "Command: `scripts/forecast-live-bench.sh`. Each scenario runs on a fresh node; the node's "
         "message rate (per second) is forecast online and every forecaster is scored on the same "
         "rolling window (the newest 96 forecasts at each horizon). Ratio: the model's error over the "
         "best baseline's; the node uses the model only when it is strictly better.", "",
         "| scenario | horizon | best baseline (MAPE %) | model MAPE % | MAPE ratio | best baseline MASE | model MASE | MASE ratio | used by the node | its MAPE / best baseline's |",
         "|---|---:|---|---:|---:|---:|---:|---:|---|---:|"]
for d in sorted(glob.glob(os.path.join(out, "*/"))):
    name = os.path.basename(os.path.normpath(d))
    for h in (10, 60):
        path = os.path.join(d, f"predictions-{h}s.json")
        if not os.path.exists(path):
            continue
        preds = json.load(open(path)).get("predictions", [])
        if not preds:
            continue
        p = preds[0]
        scores = {s["name"]: s for s in p["rolling_errors"]}
        model = scores.get("model(mlp)")
        base = [s for n, s in scores.items() if not n.startswith("model") and s["mape"] is not None]
        if not model or not base or model["mape"] is None:
            continue
        best_mape = min(base, key=lambda s: s["mape"])
        best_mase = min(base, key=lambda s: s["mase"] if s["mase"] is not None else math.inf)
        lines.append(f"| {name} | {h}s | {best_mape['name']} ({best_mape['mape']:.1f}) | {model['mape']:.1f} | "
                     f"{model['mape'] / best_mape['mape']:.2f} | {best_mase['mase']:.3f} | {model['mase']:.3f} | "
                     f"{model['mase'] / best_mase['mase']:.2f} | {p['forecaster']} | "
                     f"{scores[p['forecaster']]['mape'] / best_mape['mape']:.2f} |")
open(os.path.join(out, "report.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
