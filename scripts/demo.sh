#!/usr/bin/env bash
# The walkthrough of capsa's main job. Usage: scripts/demo.sh [path/to/capsa]
# Each step shows the command, its output, and the lesson in one line.
set -euo pipefail
CAPSA=${1:-target/release/capsa}
CAPSA=$(readlink -f "$CAPSA")

step() { printf '\n\033[1m== %s\033[0m\n' "$1"; }
show() { printf '$ %s\n' "$*"; "$@"; }
lesson() { printf '\033[2m-> %s\033[0m\n' "$1"; }

step "1. What Docker grants by default"
show "$CAPSA" caps resolve --profile docker
lesson "14 capabilities, the same set every docker run starts with."

step "2. Least privilege for a web server"
show "$CAPSA" caps resolve --cap-drop=ALL --cap-add=NET_BIND_SERVICE
lesson "--cap-drop=ALL --cap-add=NET_BIND_SERVICE leaves exactly one capability."

step "3. Reading the truth from a live process"
setpriv --bounding-set=-all,+net_bind_service --inh-caps=-all sleep 30 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 0.2
show "$CAPSA" caps pid "$pid"
show getpcaps "$pid"
lesson "capsa reads /proc/$pid/status and prints what libcap's getpcaps prints."

step "4. What a capability allows, and how dangerous it is"
show "$CAPSA" caps explain SYS_ADMIN
lesson "Some capabilities are container escapes; capsa says which."
