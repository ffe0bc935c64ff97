#!/usr/bin/env bash
# The e2e suite's own Redis (not the development one of scripts/deps.sh), so a test can restart it for
# real without disturbing anything else on the machine. Persistent like a production Redis (append-only
# file, fsync every second) with the policy the service requires (noeviction).
#   e2e/scripts/redis.sh start     start it if it is not running; prints REDIS_URL=...
#   e2e/scripts/redis.sh restart   SHUTDOWN (the append-only file is flushed) and start again on the same data
#   e2e/scripts/redis.sh stop
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# below 32768: a port in the ephemeral range (32768-60999) can be taken by any outgoing connection's
# local end, and the bind then fails
port=${TIKETI_E2E_REDIS_PORT:-26380}
dir=$root/target/e2e-redis

log() { printf '[e2e-redis] %s\n' "$*" >&2; }
ready() { [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; }

start() {
  mkdir -p "$dir"
  ready && return 0
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --appendonly yes --appendfsync everysec --save "" --maxmemory-policy noeviction >/dev/null
  # "LOADING" answers the ping too while the append-only file is read: only PONG means ready
  for _ in $(seq 1 300); do
    ready && return 0
    sleep 0.1
  done
  log "Redis on $port did not start (see $dir/redis.log)"; return 1
}

stop() {
  redis-cli -p "$port" shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do
    [ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null || return 0
    sleep 0.1
  done
  log "Redis on $port did not stop"; return 1
}

case "${1:-}" in
  start) start; echo "REDIS_URL=redis://127.0.0.1:$port" ;;
  restart) stop; start; log "restarted on $port" ;;
  stop) stop ;;
  *) echo "usage: $0 start|restart|stop" >&2; exit 2 ;;
esac
