#!/bin/bash
# Healthy when this node serves clients: in a quorum (leader or follower) or standalone.
set -euo pipefail
echo srvr | nc -q1 -w3 127.0.0.1 "${ZOO_CLIENT_PORT:-2181}" | grep -Eq '^Mode: (leader|follower|standalone)'
