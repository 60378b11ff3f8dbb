#!/usr/bin/env bash
# Starts a Sprawl node with its embedded defaults (data in ./data, a
# self-signed TLS certificate generated there, QUIC on 127.0.0.1:7470, admin
# HTTP on 127.0.0.1:7480, one shard per core) and exercises it with sprawlctl.
# The node keeps running afterwards; the script prints how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p sprawl-node -p sprawl-ctl
mkdir -p data
SPRAWL=./target/release/sprawl
CTL=./target/release/sprawlctl

if [ -f data/sprawl.pid ] && kill -0 "$(cat data/sprawl.pid)" 2>/dev/null; then
  echo "==> a node is already running (pid $(cat data/sprawl.pid)); reusing it"
else
  echo "==> starting the node: $SPRAWL (log: data/sprawl.log)"
  : > data/sprawl.log
  nohup "$SPRAWL" >> data/sprawl.log 2>&1 &
  echo $! > data/sprawl.pid
  for _ in $(seq 1 100); do
    grep -q " ready in " data/sprawl.log && break
    if ! kill -0 "$(cat data/sprawl.pid)" 2>/dev/null; then
      echo "the node exited:"; cat data/sprawl.log; exit 1
    fi
    sleep 0.1
  done
  grep " ready in \|self-signed" data/sprawl.log || { echo "the node did not become ready:"; cat data/sprawl.log; exit 1; }
fi

echo; echo "==> $CTL status"
"$CTL" status
echo; echo "==> $CTL topic create quickstart --partitions 4"
"$CTL" topic create quickstart --partitions 4 || echo "(it already exists)"
echo; echo "==> publishing 1000 lines (durable acks)"
seq 1 1000 | sed 's/^/hello sprawl /' | "$CTL" publish -t quickstart --file -
echo; echo "==> $CTL consume -t quickstart -p 0 --from earliest --count 5"
"$CTL" consume -t quickstart -p 0 --from earliest --count 5
echo; echo "==> $CTL topic describe quickstart"
"$CTL" topic describe quickstart
echo; echo "==> admin endpoint: curl -s http://127.0.0.1:7480/health"
curl -s http://127.0.0.1:7480/health || true
echo
echo "The node is running (pid $(cat data/sprawl.pid)). Stop it with: kill \$(cat data/sprawl.pid)"
