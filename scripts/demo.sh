#!/usr/bin/env bash
# The walkthrough of capsa's main job: a web server that can bind port 80 and do nothing else.
# Usage: scripts/demo.sh [path/to/capsa]   (root; `make demo` builds and runs it)
# Each step shows the command before its output, then the lesson in one line. Everything runs
# in a private capsa root in a temp dir, which is removed at the end.
set -euo pipefail
CAPSA=${1:-target/release/capsa}
CAPSA=$(readlink -f "$CAPSA")

step() { printf '\n\033[1m== %s\033[0m\n' "$1"; }
show() {
    local line='$' a
    for a in "$@"; do
        a=${a//$CAPSA/capsa}
        case $a in *[[:space:]\{\}\'\"]*) a="'$a'" ;; esac
        line+=" $a"
    done
    printf '%s\n' "$line"
    "$@"
}
lesson() { printf '\033[2m-> %s\033[0m\n' "$1"; }
# Only the capability lines of a process, as the kernel reports them.
caps_of() { grep -E '^(Uid|Cap(Inh|Prm|Eff|Bnd|Amb)):' "/proc/$1/status"; }
pid_of() { "$CAPSA" inspect --format '{{.State.Pid}}' "$1"; }

if [ "$(id -u)" != 0 ]; then echo "demo: run as root (containers need it)" >&2; exit 1; fi
WORK=$(mktemp -d /tmp/capsa-demo.XXXXXX)
export CAPSA_ROOT="$WORK/root"
cleanup() {
    for c in $("$CAPSA" ps -a -q 2>/dev/null); do "$CAPSA" rm -f "$c" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

step "0. A tiny image: busybox-static with httpd, wget, id and grep"
mkdir -p "$WORK/rootfs"/{bin,etc,www,tmp,proc,sys,dev,root}
cp /bin/busybox "$WORK/rootfs/bin/"
for a in sh httpd wget id grep sleep cat true echo; do ln -s busybox "$WORK/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$WORK/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$WORK/rootfs/etc/group"
echo 'hello from capsa' >"$WORK/rootfs/www/index.html"
chmod 1777 "$WORK/rootfs/tmp"
tar -C "$WORK/rootfs" -cf "$WORK/web.tar" .
show "$CAPSA" import "$WORK/web.tar" web:demo
show "$CAPSA" images
lesson "capsa import turns a rootfs tarball into an image, like docker import."

step "1. What a container gets by default"
show "$CAPSA" run --rm web:demo grep Cap /proc/self/status
show "$CAPSA" caps decode 00000000a80425fb
lesson "The 14 capabilities Docker grants every container, by name."

step "2. --privileged: everything this host can grant"
show "$CAPSA" run --rm --privileged web:demo grep CapEff /proc/self/status
show grep CapBnd /proc/self/status
lesson "All the host's bounding set (no more, so it works where Docker with runc fails)."

step "3. No capabilities: port 80 is refused"
show "$CAPSA" run --rm --cap-drop=ALL web:demo httpd -f -p 80 -h /www || true
lesson "Binding below 1024 needs CAP_NET_BIND_SERVICE (capsa does not lower ip_unprivileged_port_start)."

step "4. Exactly one capability: the web server works"
show "$CAPSA" run -d --name web --cap-drop=ALL --cap-add=NET_BIND_SERVICE web:demo httpd -f -p 80 -h /www
sleep 0.3
show "$CAPSA" exec web wget -qO- http://127.0.0.1/
lesson "--cap-drop=ALL --cap-add=NET_BIND_SERVICE is all a web server needs."

step "5. What the kernel says the server holds"
show "$CAPSA" inspect --format 'CapAdd={{json .HostConfig.CapAdd}} CapDrop={{json .HostConfig.CapDrop}} Privileged={{.HostConfig.Privileged}}' web
show "$CAPSA" inspect --format 'live effective={{json .Capsa.Live.Capabilities.Effective}} seccomp={{.Capsa.Live.Seccomp}} no_new_privs={{.Capsa.Live.NoNewPrivs}}' web
PID=$(pid_of web)
show "$CAPSA" caps pid "$PID"
caps_of "$PID"
lesson "inspect shows Docker's CapAdd/CapDrop plus the live sets; only cap_net_bind_service."

step "6. The same server as an unprivileged user"
show "$CAPSA" run -d --name web-nobody --user 65534 --cap-drop=ALL --cap-add=NET_BIND_SERVICE web:demo httpd -f -p 80 -h /www
sleep 0.3
show "$CAPSA" exec web-nobody wget -qO- http://127.0.0.1/
caps_of "$(pid_of web-nobody)"
lesson "An explicit --cap-add becomes ambient for a non-root user (Docker's moby#8460 gap); defaults never do."

step "7. Clean up"
show "$CAPSA" rm -f web web-nobody
show "$CAPSA" ps -a
lesson "rm -f removes the process, its cgroup, its overlay mount and its state."

step "8. Which capabilities does the web server need? Ask the kernel"
show "$CAPSA" profile --probe 'wget -qO- http://127.0.0.1/ | grep -q hello' web:demo httpd -f -p 80 -h /www
show "$CAPSA" profile --probe 'wget -qO- http://127.0.0.1/ | grep -q hello' --format json -o "$WORK/web-caps.json" web:demo httpd -f -p 80 -h /www
show "$CAPSA" run -d --name web-profiled --cap-profile "$WORK/web-caps.json" web:demo httpd -f -p 80 -h /www
sleep 0.3
show "$CAPSA" exec web-profiled wget -qO- http://127.0.0.1/
show "$CAPSA" rm -f web-profiled
lesson "capsa profile records the kernel's capability checks, proposes NET_BIND_SERVICE alone, verifies it, and run --cap-profile applies it."
