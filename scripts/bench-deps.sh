#!/usr/bin/env bash
# Debian packages the benchmarks drive or compare against: wrk (the C HTTP load generator),
# redis-server and redis-tools (Redis Streams, redis-benchmark), nats-server (JetStream),
# golang-go and golang-github-nats-io-go-nats-dev (the Go NATS load client in bench/go, built
# offline from Debian's vendored nats.go), and the Python `bench` extra (matplotlib, redis-py,
# nats-py) in the project's venv. Idempotent and quiet when everything is present.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
bash "$here/system-deps.sh"
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/nats-io/nats.go ] || need+=(golang-github-nats-io-go-nats-dev)
if [ ${#need[@]} -gt 0 ]; then bash "$here/apt-install.sh" "${need[@]}"; fi
# Debian's redis-server package starts a system instance on 6379; the benchmarks start their
# own on free ports, so leave it alone (it does not take part in any measurement).
py="$root/.venv/bin/python"
if [ -x "$py" ] && ! "$py" -c "import matplotlib, redis, nats" >/dev/null 2>&1; then
  echo "installing the Python bench extra (matplotlib, redis, nats-py)"
  "$root/.venv/bin/pip" install -q -e "$root[bench]"
fi
