#!/bin/bash
# Start the loopback forwarders to the other brokers, then run the broker (kbroker serve).
#
# Every broker advertises http://127.0.0.1:PORT, the URL host clients use through the port
# published on the host's 127.0.0.1:PORT. Inside a container 127.0.0.1 is the container itself,
# so for every other broker this script listens on 127.0.0.1:ITS_PORT and forwards to that
# broker's container on the network (socat): the advertised URLs then work from the host and
# from every broker alike. Each broker listens on the same port in and out of its container.
#
#   PEER_FORWARDS   "8081=broker1:8081 8082=broker2:8082 ..."; the entry for this broker's own
#                   port (KBROKER_LISTEN) is skipped. Empty: no forwarders.
#   KBROKER_*       the broker's settings (docs/operations.md), e.g. KBROKER_BROKER_ID.
set -euo pipefail

own_port="${KBROKER_LISTEN##*:}"
for entry in ${PEER_FORWARDS:-}; do
    port="${entry%%=*}"
    target="${entry#*=}"
    if [ "$port" = "$own_port" ]; then
        continue
    fi
    socat -lf /dev/null "TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr" \
        "TCP:${target},connect-timeout=5" &
done

exec kbroker serve "$@"
