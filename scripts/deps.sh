#!/usr/bin/env bash
# Project-local PostgreSQL and Redis for development and tests.
#   scripts/deps.sh start   install (apt, if missing) and start both under .dev/, idempotent
#   scripts/deps.sh stop    stop both (and the tests' Redis Cluster, scripts/redis-cluster.sh)
#   scripts/deps.sh env     print the exports that point the service at them
# Ports default to 55432/56379 so a system-wide PostgreSQL or Redis is never touched.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dev="$root/.dev"
pg_port=${TIKETI_PG_PORT:-55432}
redis_port=${TIKETI_REDIS_PORT:-56379}
db_user=tiketi
db_name=tiketi

log() { printf '[deps] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_bindir() {
  local d
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
}

install_missing() {
  local pkgs=()
  [ -n "$(pg_bindir)" ] || pkgs+=(postgresql postgresql-contrib)
  command -v redis-server >/dev/null || pkgs+=(redis-server)
  if [ ${#pkgs[@]} -gt 0 ]; then
    log "installing ${pkgs[*]} from apt"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
  local v
  v=$(redis-server --version | sed -n 's/.*v=\([0-9]*\)\..*/\1/p')
  if [ "${v:-0}" -lt 7 ]; then
    log "redis-server >= 7 is required (found ${v:-unknown})"; exit 1
  fi
}

# PostgreSQL refuses to run as root: run it as the 'postgres' system user then.
pg_run() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_answers() {
  psql -h 127.0.0.1 -p "$pg_port" -U "$db_user" -d postgres -tAc 'SELECT 1' >/dev/null 2>&1
}

start_pg() {
  local bin; bin=$(pg_bindir)
  mkdir -p "$dev"
  # another checkout's (or an earlier run's) PostgreSQL may already serve the port: use it
  if pg_answers; then
    log "PostgreSQL already running on $pg_port"
    ensure_db
    return
  fi
  if [ ! -f "$dev/pg/PG_VERSION" ]; then
    log "initialising PostgreSQL in $dev/pg"
    mkdir -p "$dev/pg" "$dev/pg-run"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dev/pg" "$dev/pg-run"
    chmod 700 "$dev/pg"
    pg_run "$bin/initdb" -D "$dev/pg" -U "$db_user" --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dev/pg-run"
  if pg_run "$bin/pg_ctl" -D "$dev/pg" status >/dev/null 2>&1; then
    log "PostgreSQL already running on $pg_port"
  else
    log "starting PostgreSQL on 127.0.0.1:$pg_port"
    pg_run "$bin/pg_ctl" -D "$dev/pg" -l "$dev/pg-run/postgres.log" -w -t 60 \
      -o "-p $pg_port -k $dev/pg-run -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c timezone=UTC" start >/dev/null
  fi
  ensure_db
}

ensure_db() {
  if ! psql -h 127.0.0.1 -p "$pg_port" -U "$db_user" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db_name'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$pg_port" -U "$db_user" -d postgres -qc "CREATE DATABASE $db_name" >/dev/null
  fi
}

start_redis() {
  mkdir -p "$dev/redis"
  if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
    log "Redis already running on $redis_port"
    return
  fi
  log "starting Redis on 127.0.0.1:$redis_port"
  launch_redis && return
  # a crash or a full disk can leave the append-only file cut mid-command; Redis then refuses to
  # start ("Bad file format reading the append only file"). It is development data: keep what is
  # readable (redis-check-aof --fix truncates at the first bad command) and start again, loudly.
  local manifest=$dev/redis/appendonlydir/appendonly.aof.manifest
  if [ -f "$manifest" ] && tail -n 5 "$dev/redis/redis.log" | grep -q 'append only file'; then
    log "Redis's append-only file is damaged; repairing it with redis-check-aof --fix (the damaged tail is lost)"
    yes | redis-check-aof --fix "$manifest" >&2 || true
    launch_redis && return
  fi
  log "Redis did not start (see $dev/redis/redis.log)"; exit 1
}

launch_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dev/redis" --daemonize yes \
    --pidfile "$dev/redis/redis.pid" --logfile "$dev/redis/redis.log" \
    --appendonly yes --appendfsync everysec --save "" --maxmemory-policy noeviction >/dev/null
  # loading a large append-only file takes seconds; stop waiting as soon as the process is gone
  for _ in $(seq 1 300); do
    # "LOADING" answers the ping too: only PONG means ready
    [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && return 0
    if [ -f "$dev/redis/redis.pid" ] && ! kill -0 "$(cat "$dev/redis/redis.pid")" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

stop_all() {
  local bin; bin=$(pg_bindir)
  if [ -f "$dev/pg/PG_VERSION" ]; then
    pg_run "$bin/pg_ctl" -D "$dev/pg" -m fast stop >/dev/null 2>&1 || true
  fi
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  # the Redis Clusters of the tests, the bench and the real-node e2e (one directory per node port)
  for node in "$dev"/redis-cluster/*/; do
    [ -d "$node" ] && redis-cli -p "$(basename "$node")" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$dev/redis-cluster"
  log "stopped"
}

print_env() {
  echo "export DATABASE_URL=postgres://$db_user@127.0.0.1:$pg_port/$db_name"
  echo "export REDIS_URL=redis://127.0.0.1:$redis_port"
}

case "${1:-start}" in
  start) install_missing; start_pg; start_redis; print_env ;;
  stop) stop_all ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
