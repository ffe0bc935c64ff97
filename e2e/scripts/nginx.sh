#!/usr/bin/env bash
# nginx (Debian's) in front of the chart's service pods, as an ingress controller puts it: it proxies straight to
# the pods' endpoints (read from the Service's EndpointSlices, re-read while it runs, like ingress-nginx), upgrades
# WebSockets, sets X-Forwarded-For to the client's address and drops a client's Forwarded (TRUSTED_PROXIES names the
# address nginx connects from) and keeps a client on one pod (hash of the client address: Engine.IO long-polling
# needs every request of a session to reach the pod that holds it; WebSocket clients do not care).
#
#   e2e/scripts/nginx.sh start NAMESPACE SERVICE   render the config, start nginx, and a loop that follows the
#                                                  endpoints (reloads nginx when they change); prints E2E_NGINX_URL
#   e2e/scripts/nginx.sh stop                      stop both
#
# Listens on 127.0.0.1:${TIKETI_NGINX_PORT:-20280}. Needs kubectl on PATH with KUBECONFIG set (control-plane.sh env).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
dir=${TIKETI_NGINX_RUN:-$repo_root/.dev/e2e/nginx}
port=${TIKETI_NGINX_PORT:-20280}

log() { printf '[nginx +%ss] %s\n' "$SECONDS" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

ensure_nginx() {
  command -v nginx >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "nginx is missing (apt-get install nginx-light)"
  log "installing nginx (apt)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >&2
}

# The ready endpoints of the Service, one "server IP:PORT;" per line (sorted, so unchanged sets compare equal).
endpoints() {
  local ns=$1 svc=$2
  kubectl -n "$ns" get endpointslices -l "kubernetes.io/service-name=$svc" \
    -o jsonpath='{range .items[*]}{range .endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{" "}{end}{"|"}{.ports[0].port}{"\n"}{end}' |
    awk -F'|' '{ n = split($1, a, " "); for (i = 1; i <= n; i++) printf "server %s:%s max_fails=1 fail_timeout=2s;\n", a[i], $2 }' |
    sort
}

write_upstream() {
  local list
  list=$(endpoints "$1" "$2")
  # nginx refuses an empty upstream: a placeholder that refuses connections (answers 502) until pods are ready.
  [ -n "$list" ] || list="server 127.0.0.1:9 down;"
  if [ "$list" != "$(cat "$dir/upstream.conf" 2>/dev/null)" ]; then
    printf '%s\n' "$list" >"$dir/upstream.conf.tmp"
    mv "$dir/upstream.conf.tmp" "$dir/upstream.conf"
    return 0
  fi
  return 1
}

write_config() {
  mkdir -p "$dir/tmp"
  chown -R www-data "$dir/tmp" 2>/dev/null || true
  cat >"$dir/nginx.conf" <<EOF
# Sized as ingress-nginx is (16384 connections): a proxied request or socket takes two (client and
# upstream), and the rehearsal's opening (1000 live sockets + 1000 waiting-room checks) outgrew 4096
# ("worker_connections are not enough, reusing connections": 46 checks got no answer).
worker_processes 2;
worker_rlimit_nofile 16384;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
$([ "$(id -u)" = 0 ] && echo "user www-data;")
events { worker_connections 8192; }
http {
  access_log $dir/access.log;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  upstream tiketi {
    # One client, one pod (polling sessions live in the pod's memory).
    hash \$remote_addr consistent;
    include $dir/upstream.conf;
  }
  server {
    listen 127.0.0.1:$port;
    client_max_body_size 6m;
    location / {
      proxy_pass http://tiketi;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      # The edge proxy: the client's address is the peer it sees. It owns X-Forwarded-For (set, not
      # appended: nothing in front of it is trusted) and drops a client's Forwarded, which the service
      # ignores anyway (TRUSTED_PROXY_HEADER=x-forwarded-for) but a proxy must not pass on as if vouched.
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header Forwarded "";
      proxy_set_header X-Forwarded-Proto \$scheme;
      # ingress-nginx's defaults: a request in flight to a pod killed without a goodbye (its address just
      # vanishes, no RST) is answered 504 (or retried elsewhere if idempotent) after 60 s instead of hanging
      proxy_connect_timeout 5s;
      proxy_read_timeout 60s;
      proxy_buffering off;
      proxy_next_upstream error timeout http_502;
    }
  }
}
EOF
}

nginx_pid() { cat "$dir/nginx.pid" 2>/dev/null || true; }

cmd_start() {
  local ns=${1:?namespace} svc=${2:?service}
  ensure_nginx
  mkdir -p "$dir"
  cmd_stop
  write_upstream "$ns" "$svc" || true
  write_config
  nginx -t -q -c "$dir/nginx.conf" -g "daemon on;" 2>"$dir/config-test.log" || {
    cat "$dir/config-test.log" >&2
    die "nginx rejects $dir/nginx.conf"
  }
  nginx -c "$dir/nginx.conf" -g "daemon on;"
  # The endpoint follower: what an ingress controller does, once a second.
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c '
    echo $$ >"$0/follower.pid"
    while sleep 1; do
      "$1" _sync "$2" "$3" || true
    done' "$dir" "${BASH_SOURCE[0]}" "$ns" "$svc" >"$dir/follower.log" 2>&1 </dev/null &
  log "nginx on 127.0.0.1:$port in front of $ns/$svc ($(wc -l <"$dir/upstream.conf") endpoints)"
  echo "E2E_NGINX_URL=http://127.0.0.1:$port"
  echo "E2E_NGINX_UPSTREAM=$dir/upstream.conf"
}

cmd_sync() {
  if write_upstream "$1" "$2"; then
    nginx -c "$dir/nginx.conf" -s reload 2>>"$dir/error.log" && log "endpoints: $(tr '\n' ' ' <"$dir/upstream.conf")"
  fi
}

cmd_stop() {
  local pid
  pid=$(cat "$dir/follower.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    rm -f "$dir/follower.pid"
  fi
  pid=$(nginx_pid)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -QUIT "$pid"
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid"
    log "stopped nginx"
  fi
  rm -f "$dir/nginx.pid"
}

case "${1:-}" in
  start)
    shift
    cmd_start "$@"
    ;;
  _sync)
    shift
    cmd_sync "$@"
    ;;
  stop) cmd_stop ;;
  *)
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
