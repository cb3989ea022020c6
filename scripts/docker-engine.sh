#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's docker.io when dockerd is
# missing, start dockerd in the background when no engine answers, and wait (bounded) for it.
#
# Idempotent: does nothing when `docker info` already works. Exits non-zero with a clear message
# when the engine cannot be installed or started (CI must fail then, never skip silently).
#
#   KBROKER_DOCKERD_LOG   where dockerd's output goes (default /var/log/kbroker-dockerd.log)
#   KBROKER_DOCKERD_WAIT  seconds to wait for the socket (default 60)
set -euo pipefail

log_file="${KBROKER_DOCKERD_LOG:-/var/log/kbroker-dockerd.log}"
wait_s="${KBROKER_DOCKERD_WAIT:-60}"

answers() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answers; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker-engine: installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q >/dev/null
    # iptables: dockerd's bridge networking needs it; the CLI may come from another package.
    if ! $SUDO apt-get install -y -q --no-install-recommends docker.io iptables >/dev/null; then
        echo "docker-engine: ERROR: could not install docker.io with apt-get" >&2
        exit 1
    fi
fi

if pgrep -x dockerd >/dev/null 2>&1; then
    echo "docker-engine: dockerd is running but does not answer yet; waiting"
else
    echo "docker-engine: starting dockerd (log: $log_file)"
    $SUDO mkdir -p "$(dirname "$log_file")"
    # setsid: the engine outlives this script and gets no terminal signals.
    $SUDO setsid dockerd >>"$log_file" 2>&1 </dev/null &
fi

for _ in $(seq 1 "$wait_s"); do
    if [ -S /var/run/docker.sock ] && answers; then
        echo "docker-engine: engine answers ($(docker version --format '{{.Server.Version}}'))"
        exit 0
    fi
    sleep 1
done

echo "docker-engine: ERROR: no Docker engine answered within ${wait_s} s; last lines of $log_file:" >&2
tail -n 30 "$log_file" >&2 2>/dev/null || true
exit 1
