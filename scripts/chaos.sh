#!/usr/bin/env bash
# Runs only the chaos suite (service/tests/chaos): three real tiketi-service replicas, a private
# redis-server, the project-local PostgreSQL. Prints the report and leaves it in target/chaos-report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/deps.sh env)"

# the suite drives the frontend's socket.io-client (pinned by the lockfile), as the API tests do
node_dir=service/tests/node
if [ ! -d "$node_dir/node_modules" ] || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
fi

# --nocapture: the suite prints its report (and its progress on stderr)
cargo test -p tiketi-service --test chaos "$@" -- --nocapture
