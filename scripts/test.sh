#!/usr/bin/env bash
# Runs every test against the project-local PostgreSQL and Redis (scripts/deps.sh starts them).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/deps.sh env)"

# each API test creates its own database; drop those left by earlier runs, in one session (one psql
# process per database took minutes once hundreds had piled up)
psql "$DATABASE_URL" -qAt >/dev/null <<'SQL'
SELECT format('DROP DATABASE IF EXISTS %I', datname) FROM pg_database WHERE datname LIKE 'tiketi\_test\_%' \gexec
SQL

# the realtime tests drive the real socket.io-client (pinned by the lockfile)
if ! command -v node >/dev/null; then
  echo "[test] installing Node.js from apt" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
node_dir=service/tests/node
if [ ! -d "$node_dir/node_modules" ] || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
fi

# io-tests: the operator's tests against PostgreSQL and Redis (a plain `cargo test -p tiketi-operator`
# needs neither)
started=$SECONDS
cargo test --workspace --all-targets --features tiketi-operator/io-tests "$@"
echo "[test] single Redis: $((SECONDS - started)) s" >&2

# Everything that talks to Redis again on a Redis Cluster (3 primaries, 3 replicas; scripts/redis-cluster.sh):
# the API suite (realtime, queue, limits, faults) and the operator's Redis tests. A script or transaction
# whose keys span two slots, or a command a cluster routes differently, fails here.
# TIKETI_TEST_CLUSTER=0 skips it.
if [ "${TIKETI_TEST_CLUSTER:-1}" != 0 ]; then
  eval "$(scripts/redis-cluster.sh start)"
  started=$SECONDS
  cargo test -p tiketi-service --test api "$@"
  cargo test -p tiketi-operator --lib --features io-tests io_tests
  echo "[test] Redis Cluster: $((SECONDS - started)) s" >&2
fi
