#!/usr/bin/env bash
# Benchmarks (docs/design.md §6, docs/benchmarks.md): installs what is missing (wrk from apt, the Node
# reference server's pinned packages), builds the release binaries, runs tiketi-bench against
# servers it starts itself on loopback, prints the table and writes target/bench/results.{json,md}.
# Flags pass through, e.g. `scripts/bench.sh --clients 19000 --scenarios connections`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh start >/dev/null
eval "$(scripts/deps.sh env)"
# the queue joins run again on a Redis Cluster (3 primaries, 3 replicas); TIKETI_BENCH_CLUSTER=0 skips it
if [ "${TIKETI_BENCH_CLUSTER:-1}" != 0 ]; then
  scripts/redis-cluster.sh start >/dev/null
  REDIS_CLUSTER_URL=$(REDIS_URL=; eval "$(scripts/redis-cluster.sh env)"; echo "$REDIS_URL")
  export REDIS_CLUSTER_URL
fi

if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
apt_install() {
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if ! command -v wrk >/dev/null; then
  echo "[bench] installing wrk from apt" >&2
  apt_install wrk || echo "[bench] wrk unavailable: the REST figures use the built-in client" >&2
fi
if ! command -v node >/dev/null; then
  echo "[bench] installing Node.js from apt" >&2
  apt_install nodejs npm
fi
node_dir=bench/node
if [ ! -d "$node_dir/node_modules" ] || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
fi

cargo build --release -q -p tiketi-service -p tiketi-bench
status=0
target/release/tiketi-bench "$@" || status=$?

# the runs' Redis keys (service prefix tiketi-bench-<run>, Node adapter channels are not stored)
redis_port=${REDIS_URL##*:}
redis_port=${redis_port%%/*}
if command -v redis-cli >/dev/null; then
  redis-cli -p "$redis_port" --scan --pattern 'tiketi-bench-*' | xargs -r -n 500 redis-cli -p "$redis_port" del >/dev/null
  if [ -n "${REDIS_CLUSTER_URL:-}" ]; then
    # every primary of the cluster (-c follows MOVED for the keys of other slots)
    for p in $(redis-cli -p "${TIKETI_CLUSTER_PORT:-27001}" cluster nodes | awk '/master/ {split($2, a, "[:@]"); print a[2]}'); do
      redis-cli -p "$p" --scan --pattern 'tiketi-bench-*' | xargs -r -n 1 redis-cli -c -p "$p" del >/dev/null
    done
  fi
fi
exit "$status"
