#!/bin/sh
# Puts promtool at $1 (tests/test_observability.py checks and unit-tests the alert rules with it).
#
# promtool comes from Debian's `prometheus` package, unpacked rather than installed: installing
# it would start a Prometheus server from the package's postinst (on port 9090, as a service that
# later starts with the machine), add a system user and pull in its web UI's JavaScript packages;
# the tests need none of that. promtool is one binary that needs only libc.
set -eu
target=$(realpath -m "$1")
if command -v promtool >/dev/null 2>&1; then
    ln -sf "$(command -v promtool)" "$target"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# As root, apt downloads as root: its sandbox user (_apt) may not write into this directory.
sandbox=""
if [ "$(id -u)" = 0 ]; then sandbox="-o APT::Sandbox::User=root"; fi
# shellcheck disable=SC2086
if ! apt-get download -qq $sandbox prometheus 2>/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-promtool: cannot download Debian's prometheus package (no package lists?);" \
             "run 'make install' as root or 'apt-get install prometheus'" >&2
        exit 1
    fi
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get download -qq $sandbox prometheus
fi
dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool > "$target.part"
chmod 755 "$target.part"
mv "$target.part" "$target"
"$target" --version | head -1
