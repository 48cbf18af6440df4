# Shared by the capsa-run benchmarks (bench/run.sh, bench/userns.sh): sourced, not run.

# bench_setup NAME: RUNS/WARMUP/REPO/CAPSA from the arguments and environment, then checks that
# we are root, that hyperfine exists, and that the release capsa is built.
bench_setup() {
  local name=$1
  HERE=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
  REPO=$(cd "$HERE/.." && pwd)
  CAPSA=${CAPSA:-$REPO/target/release/capsa}
  WARMUP=${WARMUP:-3}
  [ "$(id -u)" = 0 ] || { echo "$name: needs root" >&2; exit 1; }
  command -v hyperfine >/dev/null || { echo "$name: hyperfine is not installed" >&2; exit 1; }
  if [ ! -x "$CAPSA" ]; then (cd "$REPO" && cargo build --release -p capsa); fi
}

# bench_image: a busybox rootfs in $WORK/rootfs, tarred to $WORK/rootfs.tar (other engines
# import that too) and imported into a private capsa store ($CAPSA_ROOT) as bench:1.
bench_image() {
  R="$WORK/rootfs"
  mkdir -p "$R"/{bin,etc,tmp,proc,sys,dev}
  cp /bin/busybox "$R/bin/"
  for a in sh true; do ln -s busybox "$R/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
  printf 'root:x:0:\n' >"$R/etc/group"
  tar -C "$R" -cf "$WORK/rootfs.tar" .
  export CAPSA_ROOT="$WORK/capsa-root"
  "$CAPSA" import "$WORK/rootfs.tar" bench:1 >/dev/null
}

# remove_cgroup NAME: removes a cgroup left by podman or containerd under NAME in every
# hierarchy (deepest first; rmdir only removes empty cgroups, so nothing in use is touched).
remove_cgroup() {
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$h$1" ] && find "$h$1" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  return 0
}
