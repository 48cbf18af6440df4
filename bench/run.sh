#!/usr/bin/env bash
# `capsa run --rm IMAGE true` against `podman run --rm --network none` (runtime runc) and
# `ctr run --rm` on the same busybox-static rootfs, measured by hyperfine in one invocation
# (warmup, medians). Prints the medians and the ratio of each to capsa. Everything lives in a
# temp dir: a private capsa root, a private podman store (--root/--runroot), and a private
# containerd (its own socket, root and state), all removed at the end.
#
# Usage: sudo bench/run.sh [RUNS]   (env: CAPSA=path/to/capsa, WARMUP=N)
set -euo pipefail

RUNS=${1:-30}
. "$(dirname "$0")/lib.sh"
bench_setup run.sh

WORK=$(mktemp -d /tmp/capsa-bench-run-XXXXXX)
CTD_PID=
CG_PARENT="capsa-bench-podman-$$"
CTD_NS="capsa-bench-$$"
cleanup() {
  [ -n "$CTD_PID" ] && kill "$CTD_PID" 2>/dev/null && wait "$CTD_PID" 2>/dev/null || true
  podman --root "$WORK/podman-root" --runroot "$WORK/podman-run" rm -af >/dev/null 2>&1 || true
  podman --root "$WORK/podman-root" --runroot "$WORK/podman-run" system reset -f >/dev/null 2>&1 || true
  grep -o "$WORK[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  remove_cgroup "$CG_PARENT"
  remove_cgroup "$CTD_NS"
  rm -rf "$WORK"
}
trap cleanup EXIT

# One rootfs for all three.
bench_image

# Podman raises RLIMIT_NOFILE/NPROC to its defaults, which needs CAP_SYS_RESOURCE; this host's
# bounding set lacks it, so give podman limits it may set (lowering needs no capability).
PODMAN_ULIMITS="--ulimit nofile=1024:1024 --ulimit nproc=4096:4096"
PODMAN="podman --root $WORK/podman-root --runroot $WORK/podman-run --runtime runc --cgroup-manager cgroupfs --events-backend none"
$PODMAN import "$WORK/rootfs.tar" localhost/bench:1 >/dev/null

mkdir -p "$WORK/ctd-root" "$WORK/ctd-state"
cat >"$WORK/ctd.toml" <<CONF
version = 2
# ctr needs no CRI; without it containerd sits idle instead of competing for the 2 cores.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
root = "$WORK/ctd-root"
state = "$WORK/ctd-state"
[grpc]
  address = "$WORK/ctd.sock"
[ttrpc]
  address = "$WORK/ctd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
CONF
containerd --config "$WORK/ctd.toml" >"$WORK/containerd.log" 2>&1 &
CTD_PID=$!
for _ in $(seq 50); do [ -S "$WORK/ctd.sock" ] && break; sleep 0.1; done
sleep 2 # let containerd finish starting up before anything is measured
CTR="ctr --address $WORK/ctd.sock --namespace $CTD_NS"

hyperfine --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/run.json" \
  -n capsa "$CAPSA run --rm bench:1 true" \
  -n "podman (runc)" "$PODMAN run --rm --network none --cgroup-parent=/$CG_PARENT $PODMAN_ULIMITS localhost/bench:1 true" \
  -n "ctr (runc)" "$CTR run --rm --rootfs $R bench-\$\$ /bin/true"

python3 - "$WORK/run.json" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = res["capsa"]["median"]
print(f"\n{'':16}{'median':>12}{'vs capsa':>12}")
for name, r in res.items():
    print(f"{name:16}{r['median']*1000:>10.1f}ms{r['median']/base:>11.1f}x")
PY
