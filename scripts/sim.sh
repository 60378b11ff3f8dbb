#!/usr/bin/env bash
# Deterministic cluster simulations (sans-IO membership and Raft metadata
# under a seeded simulated network and clock), with many seeds:
#
#   scripts/sim.sh [SEEDS]      default 1000
#
# CI runs the same tests with a few hundred seeds (`cargo test`). A failing
# seed prints its number; replay it alone with SPRAWL_SIM_SEED=N.
# Also runs the ignored-by-default large simulations (e.g. 1,000-node
# membership convergence).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-1000}"
SPRAWL_SIM_SEEDS="$seeds" cargo test -p sprawl-cluster --release -- --include-ignored sim --nocapture
# Data replication (one Raft group per partition, cluster/src/replica):
# its simulator for the same number of seeds (plus the 200 CI seeds and
# the focused scenarios). Replay a failing seed as the message says.
SIM_SEEDS="$seeds" cargo test -p sprawl-cluster --release --test replica_sim -- --include-ignored --nocapture
