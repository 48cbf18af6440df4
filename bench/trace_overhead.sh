#!/bin/sh
# Tracing overhead of capsa-trace: a shell loop of N execs of `true`, with and without recording
# (capability:cap_capable with the stacktrace trigger, sched exec/fork, execve syscall events).
# Prints the medians, their ratio and the number of dropped events. Target: ratio <= 1.10, 0 drops.
#
# Usage: bench/trace_overhead.sh [N]   (root; builds capsa-trace-record in release mode)
set -eu
N=${1:-2000}
cd "$(dirname "$0")/.."
cargo build --release -q -p capsa-trace --bin capsa-trace-record
REC=$PWD/target/release/capsa-trace-record
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
LOOP="i=0; while [ \$i -lt $N ]; do /bin/true; i=\$((i+1)); done"

hyperfine --warmup 1 --runs 8 -N --export-json "$OUT/h.json" \
    -n untraced "sh -c '$LOOP'" \
    -n traced "$REC --format json -o $OUT/last.json -- sh -c '$LOOP'" >&2

jq -r '.results[] | "\(.command)\t\(.median)"' "$OUT/h.json" > "$OUT/medians"
U=$(awk -F'\t' '$1=="untraced"{print $2}' "$OUT/medians")
T=$(awk -F'\t' '$1=="traced"{print $2}' "$OUT/medians")
LOST=$(jq '.lost_events' "$OUT/last.json")
EVENTS=$(jq '.events' "$OUT/last.json")
awk -v u="$U" -v t="$T" -v n="$N" -v lost="$LOST" -v ev="$EVENTS" 'BEGIN {
    printf "execs of true:     %d\n", n
    printf "untraced median:   %.3f s\n", u
    printf "traced median:     %.3f s\n", t
    printf "ratio:             %.3f (%+.1f%%)\n", t / u, (t / u - 1) * 100
    printf "cap_capable events: %d (last traced run)\n", ev
    printf "dropped events:    %d\n", lost
}'
