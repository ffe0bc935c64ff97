#!/usr/bin/env bash
# A project-local Redis Cluster for the tests: 3 primaries and 3 replicas from Debian's redis-server,
# under .dev/redis-cluster/, on ports 27001-27006 (TIKETI_CLUSTER_PORT: the first; the cluster bus on
# the port - 10000). Both stay below the ephemeral range (32768-60999): there an outgoing
# connection's local end can hold the port first, and a node's bind fails.
# TIKETI_CLUSTER_HOST: an address the nodes also listen on and give clients as their endpoint (in
# CLUSTER SLOTS and MOVED), default 127.0.0.1. The real-node e2e sets the node's address, which pods
# reach; the nodes still talk to each other over the loopback (on this machine the host's own
# connections to the node address do not reach it).
#   scripts/redis-cluster.sh start          start (idempotent) and wait until every slot is served
#   scripts/redis-cluster.sh stop           stop the six nodes and forget the cluster
#   scripts/redis-cluster.sh env            print the REDIS_URL that points the service at it
#   scripts/redis-cluster.sh primary-of K   the port of the online primary serving key K (none
#                                           while a failover is under way)
# A node is killed with `kill -9 $(cat .dev/redis-cluster/<port>/redis.pid)`; its replica takes over
# after cluster-node-timeout (1 s here). repl-diskless-sync-delay 0: a primary starts a replica's
# sync at once instead of waiting 5 s for more replicas (with REDIS_WAIT_REPLICAS the waiting room
# answers again only once the new primary has a replica in sync: docs/deployment.md#redis-cluster).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.dev/redis-cluster"
first=${TIKETI_CLUSTER_PORT:-27001}
host=${TIKETI_CLUSTER_HOST:-127.0.0.1}
ports=()
for i in 0 1 2 3 4 5; do ports+=($((first + i))); done

log() { printf '[redis-cluster] %s\n' "$*" >&2; }

cluster_ok() {
  redis-cli -p "$first" cluster info 2>/dev/null | grep -q '^cluster_state:ok' &&
    [ "$(redis-cli -p "$first" cluster info | sed -n 's/^cluster_slots_assigned:\([0-9]*\).*/\1/p')" = 16384 ]
}

start_node() {
  local port=$1 d="$dir/$1"
  mkdir -p "$d"
  if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then return; fi
  local bind=(127.0.0.1) announce=()
  if [ "$host" != 127.0.0.1 ]; then
    bind+=("$host")
    # no password on these test nodes: protected mode would refuse every client but the loopback
    announce=(--cluster-announce-hostname "$host" --cluster-preferred-endpoint-type hostname --protected-mode no)
  fi
  redis-server --port "$port" --bind "${bind[@]}" "${announce[@]}" --dir "$d" --daemonize yes \
    --pidfile "$d/redis.pid" --logfile "$d/redis.log" \
    --cluster-enabled yes --cluster-port $((port - 10000)) --cluster-config-file nodes.conf --cluster-node-timeout 1000 \
    --cluster-replica-validity-factor 0 --cluster-allow-reads-when-down no --repl-diskless-sync-delay 0 \
    --appendonly yes --appendfsync everysec --save "" --maxmemory-policy noeviction >/dev/null
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return
    sleep 0.1
  done
  log "node $port did not start (see $d/redis.log)"; exit 1
}

start() {
  scripts_dir=$(dirname "$0")
  "$scripts_dir/deps.sh" start >/dev/null # installs redis-server when missing
  for p in "${ports[@]}"; do start_node "$p"; done
  if cluster_ok; then log "Redis Cluster already serving on $first-${ports[5]}"; return; fi
  if [ "$(redis-cli -p "$first" cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')" = 1 ]; then
    log "creating a Redis Cluster on $host:$first-${ports[5]} (3 primaries, 3 replicas)"
    local addrs=()
    for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  fi
  for _ in $(seq 1 300); do
    cluster_ok && { log "Redis Cluster serving on $first-${ports[5]}"; return; }
    sleep 0.1
  done
  log "the cluster did not reach cluster_state:ok"; redis-cli -p "$first" cluster info >&2; exit 1
}

stop() {
  for p in "${ports[@]}"; do
    redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "${dir:?}/$p"
  done
  log "stopped"
}

print_env() {
  local nodes=""
  for p in "${ports[@]:1}"; do nodes+="${nodes:+&}node=$host:$p"; done
  echo "export REDIS_URL='redis-cluster://$host:$first?$nodes'"
}

case "${1:-start}" in
  start) start; print_env ;;
  stop) stop ;;
  env) print_env ;;
  primary-of)
    slot=$(redis-cli -p "$first" cluster keyslot "$2")
    redis-cli -p "$first" cluster shards | awk -v s="$slot" '
      /^slots$/ { getline a; getline b; lo=a; hi=b; next }
      /^port$/ { getline port }
      /^role$/ { getline role }
      /^health$/ { getline health; if (role=="master" && health=="online" && s>=lo && s<=hi) { print port; exit } }' ;;
  *) echo "usage: $0 start|stop|env|primary-of KEY" >&2; exit 2 ;;
esac
