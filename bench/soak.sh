#!/usr/bin/env bash
# Soak: `collapse-trace serve` runs while `provoke all` runs in a loop for MINUTES; the
# daemon's RSS, open fds and threads are sampled every INTERVAL seconds and /metrics and /json
# are scraped each time. Prints every sample and a verdict: fds and threads must stay flat,
# RSS must not grow after the warm-up (the first fifth of the run). Bounded: at most 60
# minutes. Needs root and a release build (`cargo xtask build --release`).
#
#   sudo bench/soak.sh [MINUTES=2] [INTERVAL=5]
#
# The workload runs under a comm unique to this run (a symlink to the binary) and the daemon
# filters on it in the kernel, so khugepaged and other tests on the machine are not counted.
# Exit 0: flat; 1: growth; 2: could not run.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-2}
INTERVAL=${2:-5}
BIN=${BIN:-target/release/collapse-trace}
case $MINUTES in '' | *[!0-9]*) echo "MINUTES must be a whole number" >&2; exit 2 ;; esac
case $INTERVAL in '' | *[!0-9]* | 0) echo "INTERVAL must be a whole number > 0" >&2; exit 2 ;; esac
if (( MINUTES < 1 || MINUTES > 60 )); then echo "MINUTES must be 1..60" >&2; exit 2; fi
[[ -x $BIN ]] || { echo "no $BIN: run cargo xtask build --release" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 2; }

WORK=$(mktemp -d /tmp/ct-soak.XXXXXX)
COMM="ct-soak-$$"; COMM=${COMM:0:15}
ln -s "$(readlink -f "$BIN")" "$WORK/$COMM"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADDR=127.0.0.1:$PORT
SERVE=""; LOOP=""
cleanup() {
    [[ -n $LOOP ]] && kill "$LOOP" 2>/dev/null && wait "$LOOP" 2>/dev/null || true
    [[ -n $SERVE ]] && kill -TERM "$SERVE" 2>/dev/null && wait "$SERVE" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

RUST_LOG=warn "$BIN" serve --listen "$ADDR" --comm "$COMM" 2>"$WORK/serve.log" &
SERVE=$!
for _ in $(seq 100); do curl -sf "http://$ADDR/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "http://$ADDR/healthz" >/dev/null || { cat "$WORK/serve.log" >&2; exit 2; }

# The workload: provoke in a loop; each run's tally is appended (one line per run).
(
    trap 'exit 0' TERM
    while :; do "$WORK/$COMM" provoke all -n 20 --json 2>/dev/null | tr -d '\n' >>"$WORK/tallies"; echo >>"$WORK/tallies"; done
) &
LOOP=$!

sample() { # elapsed rss_kb fds threads events
    local rss fds thr ev
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVE/status")
    fds=$(ls "/proc/$SERVE/fd" | wc -l)
    thr=$(awk '/^Threads:/ {print $2}' "/proc/$SERVE/status")
    curl -sf "http://$ADDR/metrics" >/dev/null
    ev=$(curl -sf "http://$ADDR/json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"]["events"])')
    echo "$1 $rss $fds $thr $ev"
}

END=$(( SECONDS + MINUTES * 60 ))
START=$SECONDS
printf '%8s %10s %6s %8s %12s\n' ELAPSED_S RSS_KB FDS THREADS EVENTS
: >"$WORK/samples"
while (( SECONDS < END )); do
    sleep "$INTERVAL"
    kill -0 "$SERVE" 2>/dev/null || { echo "serve died:" >&2; cat "$WORK/serve.log" >&2; exit 2; }
    s=$(sample $(( SECONDS - START )))
    echo "$s" >>"$WORK/samples"
    printf '%8s %10s %6s %8s %12s\n' $s
done
kill "$LOOP"; wait "$LOOP" 2>/dev/null || true; LOOP=""
RUNS=$(grep -c . "$WORK/tallies" || true)
kill -TERM "$SERVE"; RC=0; wait "$SERVE" || RC=$?; SERVE=""

python3 - "$WORK/samples" "$RUNS" "$RC" <<'PY'
import sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
runs, rc = int(sys.argv[2]), int(sys.argv[3])
if len(rows) < 5:
    print("too few samples for a verdict (raise MINUTES or lower INTERVAL)"); sys.exit(2)
warm = max(1, len(rows) // 5)
base, rest = rows[:warm], rows[warm:]
tail = rows[-warm:]
rss_base = max(r[1] for r in base); rss_tail = max(r[1] for r in tail); rss_max = max(r[1] for r in rows)
fds = sorted({r[2] for r in rest}); thr = sorted({r[3] for r in rest})
ev = rows[-1][4] - rows[0][4]; secs = rows[-1][0] - rows[0][0]
print(f"\nprovoke runs: {runs}; events counted while sampling: {ev} ({ev / max(secs, 1):.0f}/s); serve exit {rc}")
print(f"RSS kB: after warm-up {rss_base}, last fifth {rss_tail}, max {rss_max} "
      f"({(rss_tail - rss_base) / rss_base * 100:+.1f}%)")
print(f"fds after warm-up: {fds}; threads: {thr}")
grow_rss = rss_tail - rss_base > max(1024, rss_base // 10)   # > 1 MiB and > 10%
bad = grow_rss or len(fds) > 1 or len(thr) > 1 or rc != 0 or ev <= 0
print("verdict:", "GROWTH or failure" if bad else "flat")
sys.exit(1 if bad else 0)
PY
