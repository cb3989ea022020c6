#!/bin/bash
# Write zoo.cfg from the environment, then run one ZooKeeper node in the foreground.
#
#   ZOO_MY_ID               this node's id (required with ZOO_SERVERS)
#   ZOO_SERVERS             "1=zk1:2888:3888 2=zk2:2888:3888 3=zk3:2888:3888"; empty: standalone
#   ZOO_TICK_TIME           ms (default 2000); sessions may last 2..20 ticks by default
#   ZOO_MAX_SESSION_TIMEOUT ms (default 20 x tickTime)
#   ZOO_CLIENT_PORT         default 2181
#   ZOO_HEAP                JVM heap (default 256m)
set -euo pipefail

tick="${ZOO_TICK_TIME:-2000}"
client_port="${ZOO_CLIENT_PORT:-2181}"
config=/tmp/zoo.cfg
mkdir -p /data

{
    echo "tickTime=${tick}"
    echo "initLimit=10"
    echo "syncLimit=5"
    echo "dataDir=/data"
    echo "clientPort=${client_port}"
    echo "admin.enableServer=false"
    echo "4lw.commands.whitelist=*"
    echo "maxClientCnxns=0"
    echo "minSessionTimeout=$((2 * tick))"
    echo "maxSessionTimeout=${ZOO_MAX_SESSION_TIMEOUT:-$((20 * tick))}"
    # Bind the quorum ports on every interface of the container, not only the one that the
    # server's own name resolves to (it can change when the container is reconnected).
    echo "quorumListenOnAllIPs=true"
    for server in ${ZOO_SERVERS:-}; do
        echo "server.${server}"
    done
} >"$config"

if [ -n "${ZOO_SERVERS:-}" ]; then
    : "${ZOO_MY_ID:?ZOO_MY_ID is required with ZOO_SERVERS}"
    echo "${ZOO_MY_ID}" >/data/myid
fi

exec java "-Xmx${ZOO_HEAP:-256m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.net.preferIPv4Stack=true -Dzookeeper.admin.enableServer=false \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    -Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.server.NIOServerCnxn=warn \
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS" \
    -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$config"
