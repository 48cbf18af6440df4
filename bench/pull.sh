#!/usr/bin/env bash
# Pull-and-unpack benchmark: a ~100 MB, 5-layer image (made here) in a private local registry
# (Debian docker-registry on a loopback port), pulled and unpacked by
#   capsa pull                              (fresh store each run)
#   skopeo copy docker://... oci:DIR + umoci unpack   (fresh dirs each run)
#   podman pull                             (private --root/--runroot, emptied each run)
# Prints hyperfine medians and the ratios against capsa from one run.
# Usage: sudo bench/pull.sh [RUNS]   (default 5; CAPSA=target/release/capsa; needs root)
set -euo pipefail
RUNS=${1:-5}
cd "$(dirname "$0")/.."
CAPSA=${CAPSA:-target/release/capsa}
[ -x "$CAPSA" ] || cargo build --release -p capsa
CAPSA=$(realpath "$CAPSA")
for t in docker-registry skopeo umoci podman hyperfine python3 gzip; do
  command -v "$t" >/dev/null || { echo "bench/pull.sh: $t is required (scripts/install-deps.sh)" >&2; exit 1; }
done
W=$(mktemp -d /tmp/capsa-bench-pull.XXXXXX)
REG_PID=
cleanup() {
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null || true
  grep -o " $W[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
mkdir -p "$W/reg"
cat > "$W/reg/config.yml" <<YML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $W/reg/data}
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$W/reg/config.yml" > "$W/reg/log" 2>&1 & REG_PID=$!
for _ in $(seq 100); do python3 -c "import socket;socket.create_connection(('127.0.0.1',$PORT))" 2>/dev/null && break; sleep 0.1; done

# --- the image: busybox base + 4 layers of ~24 MB (half random, half text-like) ---
L=$W/layout; mkdir -p "$L/blobs/sha256"; echo '{"imageLayoutVersion":"1.0.0"}' > "$L/oci-layout"
blob() { local h; h=$(sha256sum "$1" | cut -d' ' -f1); mv "$1" "$L/blobs/sha256/$h"; echo "$h"; }
DIFFS=(); LAYERS=()
for i in 0 1 2 3 4; do
  d=$W/l$i; mkdir -p "$d"
  if [ $i = 0 ]; then
    mkdir -p "$d/bin"; cp /bin/busybox "$d/bin/"; for a in sh ls cat; do ln -s busybox "$d/bin/$a"; done
  else
    mkdir -p "$d/data$i/r" "$d/data$i/t"
    for f in 1 2 3 4; do head -c 3M /dev/urandom > "$d/data$i/r/f$f"; done
    for f in $(seq 1 400); do base64 -w 76 < <(head -c 22000 /dev/urandom | tr -dc 'a-z ' | head -c 20000; seq 1 2000) > "$d/data$i/t/doc$f.txt"; done
  fi
  tar --numeric-owner --sort=name -C "$d" -cf "$W/l$i.tar" .
  DIFFS+=("sha256:$(sha256sum "$W/l$i.tar" | cut -d' ' -f1)")
  gzip -n -6 -c "$W/l$i.tar" > "$W/l$i.tgz"; size=$(stat -c %s "$W/l$i.tgz")
  LAYERS+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$(blob "$W/l$i.tgz")\",\"size\":$size}")
  rm -f "$W/l$i.tar"; rm -rf "$d"
done
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
  "$(IFS=,; echo "${DIFFS[*]}" | sed 's/,/","/g')" > "$W/config.json"
csize=$(stat -c %s "$W/config.json"); cdig=$(blob "$W/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
  "$cdig" "$csize" "$(IFS=,; echo "${LAYERS[*]}")" > "$W/manifest.json"
msize=$(stat -c %s "$W/manifest.json"); mdig=$(blob "$W/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' \
  "$mdig" "$msize" > "$L/index.json"
IMG=127.0.0.1:$PORT/bench/img:1
skopeo copy -q --dest-tls-verify=false "oci:$L:1" "docker://$IMG"
echo "image: $(du -sb "$L/blobs" | cut -f1) bytes compressed in 5 layers; $(nproc) cores; $(uname -r)"

PODMAN="podman --root $W/podman-root --runroot $W/podman-run --events-backend none"
mkdir -p "$(dirname "$0")/results" 2>/dev/null || true
OUT=$(realpath "$(dirname "$0")")/results/pull.json
hyperfine --runs "$RUNS" --warmup 1 --export-json "$OUT" \
  --prepare "rm -rf $W/capsa-store" -n "capsa pull" \
  "$CAPSA --root $W/capsa-store pull -q $IMG" \
  --prepare "rm -rf $W/oci $W/bundle" -n "skopeo copy + umoci unpack" \
  "skopeo copy -q --src-tls-verify=false docker://$IMG oci:$W/oci:img && umoci unpack --image $W/oci:img $W/bundle >/dev/null" \
  --prepare "$PODMAN rmi -af >/dev/null 2>&1 || true" -n "podman pull" \
  "$PODMAN pull -q --tls-verify=false $IMG >/dev/null"
$PODMAN rmi -af >/dev/null 2>&1 || true
python3 - "$OUT" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
base = r["capsa pull"]["median"]
print(f"{'':32} {'median':>9} {'vs capsa':>9}")
for name, x in r.items():
    print(f"{name:32} {x['median']:8.3f}s {x['median']/base:8.2f}x")
PY
