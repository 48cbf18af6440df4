#!/usr/bin/env bash
# The OCI runtime lifecycle benchmark: `run` of /bin/true on one busybox bundle, with
# capsa-runc (release build), runc, crun and youki (if installed), measured by hyperfine
# (warmup, many runs, medians) in one invocation. Prints a table of medians, the ratio of
# capsa to each, and peak RSS (GNU time %M). JSON lands in bench/results/ (gitignored).
#
# crun refuses this host's hybrid cgroup layout, so it runs inside
# `unshare -m sh -c 'umount /sys/fs/cgroup/unified; exec crun ...'`. That wrapper has a
# cost of its own, so the same wrapper is also measured around capsa-runc and around
# `true`: compare crun with "capsa (wrapped)" for a like-for-like ratio.
#
# Usage: sudo bench/lifecycle.sh [RUNS]   (env: CAPSA=path/to/capsa, WARMUP=N, GAP=seconds)
set -euo pipefail

RUNS=${1:-50}
WARMUP=${WARMUP:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
RESULTS="$HERE/results"
CAPSA=${CAPSA:-$REPO/target/release/capsa-runc}

[ "$(id -u)" = 0 ] || { echo "lifecycle.sh: needs root" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "lifecycle.sh: hyperfine is not installed" >&2; exit 1; }
# The release binary is static-pie (scripts/build-capsa-runc.sh); a plain
# `cargo build --release -p capsa-runc` would have relinked it dynamically.
if [ ! -x "$CAPSA" ] || { [ "$CAPSA" = "$REPO/target/release/capsa-runc" ] && \
    ! file -L "$CAPSA" | grep -q 'static-pie linked'; }; then
  echo "lifecycle.sh: building $CAPSA (scripts/build-capsa-runc.sh)" >&2
  sh "$REPO/scripts/build-capsa-runc.sh"
fi

WORK=$(mktemp -d /tmp/capsa-bench-XXXXXX)
cleanup() {
  for rt in capsa runc crun youki; do
    [ -d "$WORK/root-$rt" ] || continue
    for id in $(ls "$WORK/root-$rt" 2>/dev/null); do
      case $rt in
        capsa) "$WORK/bin/capsa-runc" --root "$WORK/root-$rt" delete --force "$id" ;;
        crun) unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun "$@"' crun \
                --root "$WORK/root-$rt" delete --force "$id" ;;
        *) "$rt" --root "$WORK/root-$rt" delete --force "$id" ;;
      esac >/dev/null 2>&1 || true
    done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$RESULTS" "$WORK/bin" "$WORK/bundle/rootfs"/{bin,proc,sys,dev,tmp,etc}
ln -s "$CAPSA" "$WORK/bin/capsa-runc"

# The bundle: busybox-static, and runc's `runc spec` with no terminal and args /bin/true.
cp /bin/busybox "$WORK/bundle/rootfs/bin/busybox"
ln -s busybox "$WORK/bundle/rootfs/bin/true"
ln -s busybox "$WORK/bundle/rootfs/bin/sh"
(cd "$WORK/bundle" && runc spec)
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"$/"\/bin\/true"/' "$WORK/bundle/config.json"
grep -q '"/bin/true"' "$WORK/bundle/config.json" || { echo "lifecycle.sh: cannot set args" >&2; exit 1; }

WRAP='umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"'
N=0
next_id() { N=$((N + 1)); echo "b$$-$N"; }

# name|command. {id} is replaced by hyperfine's parameter-free unique id via $RANDOM.
declare -a NAMES CMDS
add() { NAMES+=("$1"); CMDS+=("$2"); }
B="$WORK/bundle"
add "capsa-runc" "$WORK/bin/capsa-runc --root $WORK/root-capsa run --bundle $B bc\$RANDOM\$RANDOM"
add "runc" "runc --root $WORK/root-runc run --bundle $B br\$RANDOM\$RANDOM"
if command -v crun >/dev/null; then
  add "crun (wrapped)" "unshare -m sh -c '$WRAP' w crun --root $WORK/root-crun run --bundle $B bk\$RANDOM\$RANDOM"
  add "capsa-runc (wrapped)" "unshare -m sh -c '$WRAP' w $WORK/bin/capsa-runc --root $WORK/root-capsa run --bundle $B bw\$RANDOM\$RANDOM"
  add "wrapper + true" "unshare -m sh -c '$WRAP' w /bin/true"
fi
if command -v youki >/dev/null; then
  add "youki" "youki --root $WORK/root-youki run --bundle $B by\$RANDOM\$RANDOM"
fi

# Check each command works once before timing it; a failing runtime is reported, not timed.
declare -a OK_NAMES OK_CMDS
for i in "${!NAMES[@]}"; do
  if bash -c "${CMDS[$i]}" >/dev/null 2>"$WORK/err"; then
    OK_NAMES+=("${NAMES[$i]}"); OK_CMDS+=("${CMDS[$i]}")
  else
    echo "lifecycle.sh: ${NAMES[$i]} failed, not timed: $(tail -n1 "$WORK/err")" >&2
  fi
done
[ "${#OK_NAMES[@]}" -gt 0 ] || { echo "lifecycle.sh: nothing ran" >&2; exit 1; }

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
JSON="$RESULTS/lifecycle-$STAMP.json"
ARGS=(--shell=bash --warmup "$WARMUP" --runs "$RUNS" --export-json "$JSON" --style basic)
# GAP=S: sleep S seconds before each run (hyperfine --prepare), as engines start containers with
# pauses between them rather than back to back. Runs within a few ms of each other share the
# kernel's RCU grace periods (a v1 cgroup.procs write after a quiet moment waits for one), so
# back-to-back runs understate what a runtime that writes cgroup.procs pays.
if [ -n "${GAP:-}" ]; then ARGS+=(--prepare "sleep $GAP"); fi
for i in "${!OK_NAMES[@]}"; do ARGS+=(-n "${OK_NAMES[$i]}" "${OK_CMDS[$i]}"); done
hyperfine "${ARGS[@]}" >&2

# Peak RSS (max over 5 runs, KiB) of each command, through GNU time. time runs inside the
# shell, not around it: a process's peak RSS (ru_maxrss) survives exec, so timing `bash -c CMD`
# would report bash's own ~3 MB for any command smaller than bash.
rss() {
  local max=0 v
  for _ in 1 2 3 4 5; do
    rm -f "$WORK/rss"
    bash -c "/usr/bin/time -f %M -o '$WORK/rss' $1" >/dev/null 2>&1 || true
    v=$(tail -n1 "$WORK/rss" 2>/dev/null)
    [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -gt "$max" ] && max=$v
  done
  echo "$max"
}

echo
echo "OCI runtime lifecycle: run of /bin/true, $RUNS runs, $WARMUP warmup${GAP:+, ${GAP} s pause before each} ($(uname -r), $(nproc) cpus)"
python3 - "$JSON" "${OK_NAMES[@]}" <<'PY' > "$WORK/medians"
import json, sys
data = json.load(open(sys.argv[1]))
for r in data["results"]:
    print(f'{r["command"]}\t{r["median"] * 1000:.2f}\t{r["mean"] * 1000:.2f}\t{r["stddev"] * 1000:.2f}')
PY
capsa_med=$(awk -F'\t' '$1=="capsa-runc"{print $2}' "$WORK/medians")
capsa_w=$(awk -F'\t' '$1=="capsa-runc (wrapped)"{print $2}' "$WORK/medians")
printf '%-22s %10s %10s %10s %14s %12s\n' runtime "median ms" "mean ms" "stddev" "capsa/this" "peak RSS KiB"
while IFS=$'\t' read -r name med mean sd; do
  ref=$capsa_med
  case "$name" in "crun (wrapped)") ref=${capsa_w:-$capsa_med} ;; esac
  ratio=$( [ -n "$ref" ] && awk -v a="$ref" -v b="$med" 'BEGIN{printf "%.2f", a/b}' || echo "n/a")
  for i in "${!OK_NAMES[@]}"; do [ "${OK_NAMES[$i]}" = "$name" ] && cmd=${OK_CMDS[$i]}; done
  printf '%-22s %10s %10s %10s %14s %12s\n' "$name" "$med" "$mean" "$sd" "$ratio" "$(rss "$cmd" </dev/null)"
done < "$WORK/medians"
# The target's ratio three ways: as the issue defines it (capsa-runc as engines run it, crun in
# the wrapper it needs on this host), like for like (both in the wrapper), and with the wrapper's
# own cost taken out of both.
wrap=$(awk -F'\t' '$1=="wrapper + true"{print $2}' "$WORK/medians")
crun_w=$(awk -F'\t' '$1=="crun (wrapped)"{print $2}' "$WORK/medians")
if [ -n "$crun_w" ] && [ -n "$capsa_med" ] && [ -n "$capsa_w" ] && [ -n "$wrap" ]; then
  awk -v c="$capsa_med" -v cw="$capsa_w" -v k="$crun_w" -v w="$wrap" 'BEGIN {
    printf "capsa-runc / crun (wrapped), the target (<= 0.5):      %.2f\n", c / k
    printf "like for like, both in the wrapper:                   %.2f\n", cw / k
    printf "wrapper (wrapper + true) taken out of both:           %.2f\n", (cw - w) / (k - w)
  }'
fi
echo "(the capsa/this column compares crun with capsa-runc (wrapped); JSON: $JSON)"
