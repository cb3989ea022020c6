#!/usr/bin/env bash
# Install the Debian packages kbroker needs to run and test: ZooKeeper (and a JRE for it), and
# Node.js with npm for the third-party REST Proxy client tests.
# Idempotent; quiet when everything is present. Needs root (or sudo) only when installing.
set -euo pipefail
need=()
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
[ -f /usr/share/java/slf4j-simple.jar ] || need+=(libslf4j-java)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
command -v nc >/dev/null 2>&1 || need+=(netcat-openbsd)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
bash "$(dirname "$0")/apt-install.sh" "${need[@]}"
