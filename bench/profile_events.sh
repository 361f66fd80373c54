#!/usr/bin/env bash
# Profile evidence for the kernel-side cost of full events (not a test): system-wide perf
# sampling (software cpu-clock: this VM exposes no hardware counters) while `collapse-trace stat`
# (full events, filtered by the storm's pid) watches an empty-range MADV_COLLAPSE storm. Prints
# the top kernel symbols, where the eBPF program and its helpers show up by name.
# Needs root, Debian `linux-perf` and a release build. Bounded: the storm lasts $SECS seconds.
#
#   sudo bench/profile_events.sh [SECS=4] [MODE=events|counting]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-4}
MODE=${2:-events}
BIN=${BIN:-target/release/collapse-trace}
command -v perf >/dev/null || { echo "perf is missing: apt-get install -y linux-perf" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$BIN is missing: cargo xtask build --release" >&2; exit 1; }
OUT=$(mktemp -d)
STAT_PID=""
STORM_PID=""
cleanup() {
    [ -n "$STORM_PID" ] && kill "$STORM_PID" 2>/dev/null || true
    [ -n "$STAT_PID" ] && kill -INT "$STAT_PID" 2>/dev/null && wait "$STAT_PID" 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT

# The storm waits on a fifo-less gate: a shell that reads a line before exec'ing (same pid).
mkfifo "$OUT/gate"
sh -c 'read -r _ < "$0"; exec "$@"' "$OUT/gate" "$BIN" provoke storm --range empty --duration "${SECS}s" >/dev/null &
STORM_PID=$!
extra=()
[ "$MODE" = counting ] && extra=(--no-events)
"$BIN" stat --pid "$STORM_PID" "${extra[@]}" >/dev/null 2>"$OUT/stat.err" &
STAT_PID=$!
for _ in $(seq 200); do grep -q "attached to" "$OUT/stat.err" && break; sleep 0.05; done
grep -q "attached to" "$OUT/stat.err" || { cat "$OUT/stat.err" >&2; exit 1; }
echo go > "$OUT/gate"
perf record -q -a -e cpu-clock -F 2999 -o "$OUT/perf.data" -- sleep "$SECS" 2>/dev/null
wait "$STORM_PID" || true; STORM_PID=""
echo "== top kernel+BPF symbols during an empty-range storm, collapse-trace stat ($MODE) attached"
perf report -i "$OUT/perf.data" --stdio --sort sym --percent-limit 0.05 2>/dev/null \
    | grep -v "^#" | grep -v "^$" | grep -Ei "bpf|ringbuf|irq_work|strncpy|copy_from_kernel|get_current|ktime|cgroup|perf_trace|trace_event" | head -25
echo "(total samples: all CPUs, both idle and busy; the BPF share is what matters)"
