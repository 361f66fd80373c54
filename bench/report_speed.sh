#!/usr/bin/env bash
# `report` throughput on a generated record (default 2 million events; about 260 bytes each).
# Writes the record with the example `report_speed` (which also times the library's read
# path), then times the installed binary end to end: `report --json` to /dev/null, plain and
# zstd. Target: at least 2 million events/s.
#
#   bench/report_speed.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo build --release -p collapse-trace --example report_speed 2>/dev/null
bin=target/release/collapse-trace
target/release/examples/report_speed "$n" "$dir/bench.ndjson"
zstd -q -T0 "$dir/bench.ndjson" -o "$dir/bench.ndjson.zst" 2>/dev/null || true
for f in "$dir/bench.ndjson" "$dir/bench.ndjson.zst"; do
    [ -f "$f" ] || continue
    start=$(date +%s.%N)
    "$bin" report "$f" --json >/dev/null
    end=$(date +%s.%N)
    awk -v n="$n" -v s="$start" -v e="$end" -v f="$(basename "$f")" \
        'BEGIN { t = e - s; printf "report --json %s: %d events in %.2f s = %.2f M events/s\n", f, n, t, n / t / 1e6 }'
done
