#!/usr/bin/env bash
# Load-forecasting benchmark: the learned model against every baseline on
# the real load traces, by rolling-origin evaluation (`sprawlctl forecast
# eval`), plus what the model costs a node (examples/model_timing.rs).
#
#   scripts/forecast-bench.sh [OUT_DIR]   default bench-results/<UTC date>-forecast
#
# Environment: FORECAST_TRACES (directory of `timestamp,value` CSVs, default
# /work/shared/data/load-traces), FORECAST_HORIZONS (steps, default "1 12":
# 5 minutes and an hour at the traces' 5-minute step). Every trace is scored
# with its default warm-up (a quarter of it); nothing is tuned per trace.
# Writes OUT_DIR/report.md, OUT_DIR/raw/<trace>-h<H>.json (the command's
# JSON) and OUT_DIR/model-timing.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-bench-results/$(date -u +%F)-forecast}"
traces="${FORECAST_TRACES:-/work/shared/data/load-traces}"
horizons="${FORECAST_HORIZONS:-1 12}"
command_line="scripts/forecast-bench.sh $*"
# candle would start a thread per core; the node gives the model one.
export RAYON_NUM_THREADS=1

log() { echo "forecast-bench: $*" >&2; }

log "building (release)"
cargo build --release --locked -p sprawl-ctl
cargo build --release --locked -p sprawl-forecast --example model_timing
sprawlctl="$PWD/target/release/sprawlctl"

mkdir -p "$out/raw"
shopt -s nullglob
csvs=("$traces"/*.csv)
if [ ${#csvs[@]} -eq 0 ]; then
  log "no .csv trace in $traces"
  exit 1
fi

started=$(date +%s)
timings="$out/raw/eval-seconds.tsv"
: > "$timings"
for csv in "${csvs[@]}"; do
  name=$(basename "$csv" .csv)
  for horizon in $horizons; do
    log "$name, horizon $horizon"
    t0=$(date +%s.%N)
    "$sprawlctl" forecast eval --csv "$csv" --horizon "$horizon" --format json \
      > "$out/raw/$name-h$horizon.json"
    t1=$(date +%s.%N)
    printf '%s\t%s\t%.2f\n' "$name" "$horizon" "$(echo "$t1 - $t0" | bc)" >> "$timings"
  done
done
elapsed=$(( $(date +%s) - started ))

log "model timing"
./target/release/examples/model_timing > "$out/model-timing.txt"

log "report"
python3 - "$out" "$command_line" "$elapsed" "$traces" <<'PY'
import json, pathlib, platform, subprocess, sys

out, command_line, elapsed, traces = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
MODEL = "model(mlp)"

def sh(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except Exception as error:
        return f"({error})"

cpu = next((line.split(":", 1)[1].strip() for line in sh("lscpu").splitlines()
            if line.startswith("Model name")), "?")
memory = next((line.split()[1] for line in sh("free", "-g").splitlines() if line.startswith("Mem:")), "?")
seconds = {}
for line in (out / "raw" / "eval-seconds.tsv").read_text().splitlines():
    name, horizon, secs = line.split("\t")
    seconds[(name, int(horizon))] = float(secs)

def number(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"

runs = []
for path in sorted((out / "raw").glob("*.json")):
    result = json.loads(path.read_text())
    runs.append((path.stem.rsplit("-h", 1)[0], result))

lines = [
    "# Load forecasting: the learned model against the baselines",
    "",
    f"Command: `{command_line}` (RAYON_NUM_THREADS=1), traces from `{traces}` "
    "(NAB corpus, see its README). Each trace is scored by rolling-origin evaluation "
    "(`sprawlctl forecast eval --format json`, default warm-up: a quarter of the trace): "
    "at every origin each forecaster has seen only the past, and the model retrains on it "
    "(300 Adam steps once 64 values are seen and each time the values seen double, 30 every 256 values).",
    "",
    "## Machine",
    "",
    f"- `uname -a`: `{sh('uname', '-a')}`",
    f"- CPU: {cpu}, `nproc`: {sh('nproc')}, memory: {memory} GiB",
    f"- Sprawl commit: `{sh('git', 'rev-parse', '--short', 'HEAD')}`, forecast code "
    + ("as committed" if not sh('git', 'status', '--porcelain', 'forecast', 'ctl/src/forecast.rs')
       else "with uncommitted changes"),
    f"- evaluation wall time, all traces and horizons: {elapsed} s (shared 2-core VM: compare ratios, not times)",
    "",
    "## Summary",
    "",
    "Ratio: the model's error over the best baseline's on the same trace and horizon "
    "(the best by that metric); below 1 the model is better. Selected: lowest MASE, "
    "ties to the simpler, so the model only when it beats every baseline.",
    "",
    "| trace | horizon | values | best baseline (MASE) | model MASE | MASE ratio | best baseline MAPE % | model MAPE % | MAPE ratio | selected | eval s |",
    "|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
]
details = []
for name, result in runs:
    scores = result["forecasters"]
    baselines = [s for s in scores if s["name"] != MODEL]
    model = next((s for s in scores if s["name"] == MODEL), None)
    best_mase = min(baselines, key=lambda s: s["mase"] if s["mase"] is not None else float("inf"))
    mapes = [s["mape"] for s in baselines if s["mape"] is not None]
    best_mape = min(mapes) if mapes else None
    mase_ratio = model["mase"] / best_mase["mase"] if model and best_mase["mase"] else None
    mape_ratio = model["mape"] / best_mape if model and model["mape"] is not None and best_mape else None
    horizon = result["horizon"]
    lines.append(
        f"| {name} | {horizon} | {result['values']} | {best_mase['name']} {number(best_mase['mase'], 3)} "
        f"| {number(model and model['mase'], 3)} | {number(mase_ratio, 3)} | {number(best_mape, 2)} "
        f"| {number(model and model['mape'], 2)} | {number(mape_ratio, 3)} | {result['selected']} "
        f"| {number(seconds.get((name, horizon)), 1)} |"
    )
    details.append((name, result))

lines += [
    "",
    "Notes: the model's size, learning rate (1e-3), seasons averaged (8) and retraining "
    "schedule were chosen on the synthetic series of the forecast crate's tests, not on "
    "these traces. A trace without a `seasonal_naive(P)` row had no period detected in its "
    "warm-up, so the model got no seasonal features on it either. MAPE skips zero actuals.",
]
lines += ["", "## Per trace", ""]
for name, result in details:
    lines += [
        f"### {name}, horizon {result['horizon']}",
        "",
        f"{result['values']} values, warm-up {result['warmup']}; selected: **{result['selected']}**",
        "",
        "| forecaster | MAPE % | MASE |",
        "|---|---:|---:|",
    ]
    for score in result["forecasters"]:
        lines.append(f"| {score['name']} | {number(score['mape'], 2)} | {number(score['mase'], 4)} |")
    lines.append("")

lines += [
    "## What the model costs a node",
    "",
    "`target/release/examples/model_timing` (synthetic series, one thread):",
    "",
    "```",
    (out / "model-timing.txt").read_text().rstrip(),
    "```",
    "",
]
(out / "report.md").write_text("\n".join(lines))
PY
log "wrote $out/report.md"
