#!/usr/bin/env bash
# Install the Debian packages kbroker needs to run and test: ZooKeeper (and a JRE for it),
# Node.js with npm for the third-party REST Proxy client tests, and the chaos suite's fault
# tools (kbroker.testing.chaos.sandbox: iptables, loop-mounted ext4, libfaketime, strace).
# Idempotent; quiet when everything is present. Needs root (or sudo) only when installing.
set -euo pipefail
need=()
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
[ -f /usr/share/java/slf4j-simple.jar ] || need+=(libslf4j-java)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
command -v nc >/dev/null 2>&1 || need+=(netcat-openbsd)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v losetup >/dev/null 2>&1 || need+=(mount)
command -v strace >/dev/null 2>&1 || need+=(strace)
[ -f /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || need+=(libfaketime)  # chaos.nemesis.LIBFAKETIME
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
bash "$(dirname "$0")/apt-install.sh" "${need[@]}"
