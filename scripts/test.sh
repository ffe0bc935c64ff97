#!/usr/bin/env bash
# Runs every test against the project-local PostgreSQL and Redis (scripts/deps.sh starts them).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/deps.sh env)"

# each API test creates its own database; drop those left by earlier runs
psql "$DATABASE_URL" -qAt -c "SELECT datname FROM pg_database WHERE datname LIKE 'tiketi_test_%'" |
  while read -r db; do psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null; done

cargo test --workspace --all-targets "$@"
