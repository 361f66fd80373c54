#!/usr/bin/env bash
# Load benchmark (not a test): hit `collapse-trace serve`'s /metrics (and /json) on loopback
# with wrk while `provoke` makes the kernel produce events, and print wrk's latency figures.
# Bounded: each wrk run lasts $DURATION, the workload loop stops when wrk is done, everything
# started here is stopped on exit. Needs root, `wrk` (Debian package `wrk`) and a release build
# (`cargo xtask build` or `cargo build --release -p collapse-trace`).
#
#   sudo bench/serve_load.sh [DURATION=10s] [CONNECTIONS=8] [THREADS=2]
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10s}
CONNECTIONS=${2:-8}
THREADS=${3:-2}
BIN=${BIN:-target/release/collapse-trace}
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$BIN is missing: cargo build --release -p collapse-trace" >&2; exit 1; }

LOG=$(mktemp)
SERVE_PID=""
LOAD_PID=""
cleanup() {
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null || true
    [ -n "$SERVE_PID" ] && kill -TERM "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true
    rm -f "$LOG"
}
trap cleanup EXIT

# No --comm: the daemon counts everything, as in production; the workload is the only
# heavy producer here.
RUST_LOG=info "$BIN" serve --listen "127.0.0.1:$PORT" 2>"$LOG" &
SERVE_PID=$!
for _ in $(seq 100); do
    grep -q "listening on" "$LOG" && break
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.1
done
grep -q "listening on" "$LOG" || { echo "serve did not start" >&2; cat "$LOG" >&2; exit 1; }

scrape_once() { curl -fsS "http://127.0.0.1:$PORT/metrics" | wc -c; }
echo "collapse-trace serve on 127.0.0.1:$PORT; /metrics is $(scrape_once) bytes before load"

# The workload: page-filled races and full collapses, in a loop bounded by the wrk runs.
(
    end=$((SECONDS + 120))
    while [ $SECONDS -lt $end ]; do
        "$BIN" provoke all -n 200 >/dev/null 2>&1 || true
    done
) &
LOAD_PID=$!
sleep 1

events_now() {
    curl -fsS "http://127.0.0.1:$PORT/json" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"]["events"])'
}

for path in /metrics /json; do
    before=$(events_now)
    echo
    echo "== wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency http://127.0.0.1:$PORT$path (while provoke runs)"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 5s --latency "http://127.0.0.1:$PORT$path"
    after=$(events_now)
    echo "kernel events counted during this run: $((after - before))"
done

echo
echo "/metrics is $(scrape_once) bytes after load"
kill "$LOAD_PID" 2>/dev/null; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=""
kill -TERM "$SERVE_PID"; wait "$SERVE_PID" || true; SERVE_PID=""
tail -1 "$LOG"
