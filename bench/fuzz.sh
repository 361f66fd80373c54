#!/usr/bin/env bash
# Fuzzes every capture parser for a while (default 60 s each; not part of CI): the record
# format, ftrace, trace-cmd and perf script text, and unescape. Seeds come from the
# checked-in captures and the malformed corpus. Needs the nightly toolchain and cargo-fuzz
# (installed with `cargo install cargo-fuzz` when missing).
#
#   bench/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
data=collapse-trace/tests/data
for target in record ftrace_text trace_cmd_text perf_text unescape; do
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus"
    case $target in
        record) cp "$data"/malformed/record-*.ndjson "$corpus"/ ;;
        ftrace_text) cp "$data"/capture/ftrace-trace.txt "$data"/malformed/ftrace-*.txt "$corpus"/ ;;
        trace_cmd_text) cp "$data"/capture/trace-cmd-report.txt "$data"/malformed/trace-cmd-*.txt "$corpus"/ ;;
        perf_text) cp "$data"/capture/perf-script.txt "$data"/malformed/perf-*.txt "$corpus"/ ;;
    esac
    echo "==> fuzzing $target for ${secs}s"
    (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 2>&1 | tail -3)
done
