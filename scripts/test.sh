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
cargo test --workspace --all-targets --features tiketi-operator/io-tests "$@"
