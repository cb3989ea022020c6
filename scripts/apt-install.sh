#!/usr/bin/env bash
# Install the given Debian packages quietly (sudo when not root). The one place the scripts
# call apt-get: system-deps.sh and bench-deps.sh decide what is missing, this installs it.
set -euo pipefail
[ $# -gt 0 ] || exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing Debian packages: $*"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null
