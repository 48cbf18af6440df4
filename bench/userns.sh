#!/usr/bin/env bash
# Start latency of user-namespace remapping: `capsa run --rm --userns-remap=default IMAGE true`
# against the same without remapping, `capsa run --rm --userns=auto`, and `podman run
# --userns=auto` (runtime runc, private storage), all on one busybox-static rootfs, measured by
# hyperfine in one invocation (warmup, medians). Prints the medians, the ratio to capsa without
# remapping (target: remapping costs at most 30% more), and the disk the store uses after N
# remapped containers (no per-container copy of the image).
#
# podman's --userns=auto takes its ranges from the `containers` entries of /etc/subuid and
# /etc/subgid; when there are none the script adds `containers:3000000:1000000` for the run and
# removes exactly that line at the end. The `capsa` user is created by capsa itself on the first
# remapped run (and kept, as dockerd keeps `dockremap`).
#
# Usage: sudo bench/userns.sh [RUNS]   (env: CAPSA=path/to/capsa, WARMUP=N)
set -euo pipefail

RUNS=${1:-30}
. "$(dirname "$0")/lib.sh"
bench_setup userns.sh

WORK=$(mktemp -d /tmp/capsa-bench-userns-XXXXXX)
SUBLINE="containers:3000000:1000000"
ADDED_SUB=
CG_PARENT="capsa-bench-podman-$$"
cleanup() {
  podman --root "$WORK/podman-root" --runroot "$WORK/podman-run" rm -af >/dev/null 2>&1 || true
  podman --root "$WORK/podman-root" --runroot "$WORK/podman-run" system reset -f >/dev/null 2>&1 || true
  for id in $(CAPSA_ROOT="$WORK/capsa-root" "$CAPSA" ps -aq 2>/dev/null); do
    CAPSA_ROOT="$WORK/capsa-root" "$CAPSA" rm -f "$id" >/dev/null 2>&1 || true
  done
  grep -o "$WORK[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  if [ -n "$ADDED_SUB" ]; then
    sed -i "/^${SUBLINE}\$/d" /etc/subuid /etc/subgid
  fi
  remove_cgroup "$CG_PARENT"
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! grep -q '^containers:' /etc/subuid || ! grep -q '^containers:' /etc/subgid; then
  if grep -q '^containers:' /etc/subuid /etc/subgid; then
    echo "userns.sh: /etc/subuid and /etc/subgid disagree about 'containers'" >&2
    exit 1
  fi
  echo "$SUBLINE" >>/etc/subuid
  echo "$SUBLINE" >>/etc/subgid
  ADDED_SUB=1
fi

bench_image
# The first remapped run creates the capsa user and its range: not part of the measurement.
"$CAPSA" run --rm --userns-remap=default bench:1 true

# This host's bounding set lacks CAP_SYS_RESOURCE, so podman gets limits it may set.
PODMAN_ULIMITS="--ulimit nofile=20000:20000 --ulimit nproc=32768:32768"
PODMAN="podman --root $WORK/podman-root --runroot $WORK/podman-run --runtime runc --cgroup-manager cgroupfs --events-backend none"
$PODMAN import "$WORK/rootfs.tar" localhost/bench:1 >/dev/null

hyperfine --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/userns.json" \
  -n capsa "$CAPSA run --rm bench:1 true" \
  -n "capsa remap" "$CAPSA run --rm --userns-remap=default bench:1 true" \
  -n "capsa auto" "$CAPSA run --rm --userns=auto bench:1 true" \
  -n "podman" "$PODMAN run --rm --network none --cgroup-parent=/$CG_PARENT $PODMAN_ULIMITS localhost/bench:1 true" \
  -n "podman auto" "$PODMAN run --rm --network none --cgroup-parent=/$CG_PARENT --userns=auto $PODMAN_ULIMITS localhost/bench:1 true"

python3 - "$WORK/userns.json" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = res["capsa"]["median"]
print(f"\n{'':14}{'median':>12}{'vs capsa':>12}")
for name, r in res.items():
    print(f"{name:14}{r['median']*1000:>10.1f}ms{r['median']/base:>11.2f}x")
remap = res["capsa remap"]["median"] / base - 1
print(f"\nremapping costs {remap*100:+.0f}% (target: at most +30%)")
PY

# Disk: ten remapped containers (five remap, five auto) share the image's layers.
before=$(du -s -B1 -x "$CAPSA_ROOT" | cut -f1)
for i in $(seq 5); do
  "$CAPSA" create --userns-remap=default bench:1 true >/dev/null
  "$CAPSA" create --userns=auto bench:1 true >/dev/null
done
after=$(du -s -B1 -x "$CAPSA_ROOT" | cut -f1)
image=$(du -s -B1 -x "$CAPSA_ROOT/layers" | cut -f1)
echo "disk: image layers $image bytes; 10 remapped containers added $((after - before)) bytes"
