#!/bin/sh
# Builds target/release/capsa-runc, the binary engines exec for every container operation, as a
# static-pie executable: glibc, libgcc and libseccomp linked in, no dynamic loader at start
# (docs/decisions.md, "capsa-runc is a static-pie binary"; docs/performance.md has the numbers).
#
# `-C target-feature=+crt-static` goes to the final crate only (`cargo rustc`), so the other
# packages and the `capsa` binary stay dynamically linked against glibc (capsa resolves registry
# names through glibc's NSS, which a static glibc cannot load reliably). A later
# `cargo build --release -p capsa-runc` relinks it dynamically; run this script again then.
set -eu
cd "$(dirname "$0")/.."
exec "${CARGO:-cargo}" rustc --release -p capsa-runc --bin capsa-runc -- -C target-feature=+crt-static
