#!/usr/bin/env bash
# Installs every Debian package that capsa's build, demo, tests and benchmarks need.
# Idempotent; run as root on Debian 12.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  # build
  build-essential pkg-config libseccomp-dev
  # capability tools the differential tests compare against
  libcap2-bin util-linux procps
  # container images and peers
  busybox-static runc crun containerd podman skopeo umoci docker-registry uidmap
  # networking and misc used by tests
  iproute2 iputils-ping jq psmisc hyperfine curl ca-certificates apache2-utils zstd file
  # user namespaces: useradd/usermod create the capsa user and its subordinate ranges
  passwd
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
# containerd and docker-registry start services on install on some hosts; tests start their own.
if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo (Rust 1.85 or newer) is required; this machine has none on PATH" >&2
  exit 1
fi
