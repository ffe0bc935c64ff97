#!/usr/bin/env bash
# The e2e suite against a real Kubernetes API server.
#
#   e2e/run.sh            start the local control plane (built with Go, cached; no container engine needed),
#                         install the chart, run the operator with the chart's ServiceAccount, run the tests
#   E2E_CLUSTER=existing e2e/run.sh
#                         use the cluster $KUBECONFIG points at (e.g. kind, after e2e/scripts/kind-up.sh)
#   e2e/run.sh rehearsal  (make rehearsal; needs E2E_REAL_NODE=1) the full-dress sale opening instead of the tests:
#                         report in target/rehearsal-report.md, non-zero exit on any broken invariant
#   E2E_KEEP=1            leave the control plane running afterwards
#   E2E_REPEAT=N          run the selected tests N times on the same cluster (a soak, e.g.
#                         E2E_REPEAT=10 e2e/run.sh e2e_two_sales); stops at the first failing round
#   E2E_REAL_NODE=1|0|auto (default 0; auto: 1 when run as root)
#                         the local control plane with a real node as well (kubelet, kube-proxy, containerd; root):
#                         the service and operator images are built with Docker (e2e/scripts/images.sh), imported
#                         into the node, and the chart is installed as a user would (migration Job, probes, PDBs)
#                         with the service and the operator as real pods; e2e/tests/real_pods.rs runs against them.
#
# With the local control plane KEDA's operator runs too (e2e/scripts/keda.sh, a host process like the control plane), so
# the cooperation tests meet a real ScaledObject and the HPA KEDA makes for it. On an existing cluster the KEDA tests
# run when KEDA's ScaledObject API is served there (install KEDA first), and skip otherwise.
#
# Without the real node (kwok nodes only) no container really runs, so the operator runs as two local processes
# with the chart's ServiceAccount token; the chart's objects (CRD, RBAC, Deployments whose pods kwok makes Ready)
# are real. PostgreSQL and Redis are host processes either way (scripts/deps.sh); pods reach them through
# forwarders on the node address.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
run_dir=$root/.dev/e2e
mkdir -p "$run_dir"
# the tests write the logs of the operator processes they start there, and print them on failure
export E2E_RUN_DIR=$run_dir
log() { printf '[e2e +%ss] %s\n' "$SECONDS" "$*" >&2; }

# The real node needs root (bridges, iptables, containerd): opt-in (E2E_REAL_NODE=1, or auto = when root); the
# default stays the kwok-only run with the operator as local processes, which needs neither.
real_node=${E2E_REAL_NODE:-0}
if [ "$real_node" = auto ]; then
  if [ "$(id -u)" = 0 ] && [ -d /sys/fs/cgroup ]; then real_node=1; else real_node=0; fi
fi
[ "${E2E_CLUSTER:-local}" = local ] || real_node=0
[ "$real_node" = 1 ] || log "no real node (E2E_REAL_NODE=1 as root adds it): kwok nodes only, the real-pod tests skip"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${E2E_CLUSTER:-local}" = local ] && [ "${E2E_KEEP:-0}" != 1 ]; then
    e2e/scripts/keda.sh stop >/dev/null 2>&1 || true
    e2e/scripts/control-plane.sh stop >/dev/null 2>&1 || true
    e2e/scripts/redis.sh stop >/dev/null 2>&1 || true
    if [ "$real_node" = 1 ]; then
      e2e/scripts/nginx.sh stop >/dev/null 2>&1
      e2e/scripts/images.sh stop >/dev/null 2>&1
    fi
  fi
  return 0
}
trap cleanup EXIT

# The chart on the real node, as a user installs it: migration Job (pre-install hook), probes, PDBs; images from
# the node's containerd; PostgreSQL and Redis at the node address (forwarders to the loopback-only host processes).
real_node_install() {
  log "real node: importing the images, forwarders to PostgreSQL and Redis"
  e2e/scripts/control-plane.sh node-import "$TIKETI_SERVICE_IMAGE_TAR" "$TIKETI_OPERATOR_IMAGE_TAR"
  local pg_port=${DATABASE_URL##*:} redis_port=${REDIS_URL##*:}
  pg_port=${pg_port%%/*}
  e2e/scripts/control-plane.sh forward postgres 25432 "127.0.0.1:$pg_port"
  e2e/scripts/control-plane.sh forward redis 26379 "127.0.0.1:$redis_port"
  local pod_db_url pod_redis_url
  pod_db_url=$(sed -E "s#@127\.0\.0\.1:$pg_port/#@$TIKETI_K8S_NODE_IP:25432/#" <<<"$DATABASE_URL")
  pod_redis_url=redis://$TIKETI_K8S_NODE_IP:26379
  export E2E_POD_DATABASE_URL=$pod_db_url E2E_POD_REDIS_URL=$pod_redis_url
  # a Redis Cluster the pods reach at the node address (its nodes announce it, so MOVED leads there too)
  # for the test that installs the chart on one
  local cluster_env=(TIKETI_CLUSTER_PORT=27101 "TIKETI_CLUSTER_HOST=$TIKETI_K8S_NODE_IP")
  env "${cluster_env[@]}" scripts/redis-cluster.sh start >/dev/null
  E2E_POD_REDIS_CLUSTER_URL=$(REDIS_URL= && eval "$(env "${cluster_env[@]}" scripts/redis-cluster.sh env)" && echo "$REDIS_URL")
  export E2E_POD_REDIS_CLUSTER_URL E2E_REDIS_CLUSTER_PORT=27101
  # kubectl logs reaches the kubelet, which asks the API server whether the API server's client may
  # (webhook authorization): grant it as kubeadm does, so failing tests can print the operator pods' logs
  kubectl create clusterrolebinding e2e-apiserver-kubelet-client --clusterrole=system:kubelet-api-admin \
    --user=kube-apiserver-kubelet-client --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  log "real node: helm install (migration Job, service and operator pods)"
  local t0=$SECONDS
  helm upgrade --install tiketi charts/tiketi -n "$ns" --wait --wait-for-jobs --timeout 5m \
    -f e2e/values/real-node.yaml "${operator_values[@]}" \
    --set service.image.repository="${TIKETI_SERVICE_IMAGE%:*}" --set service.image.tag="${TIKETI_SERVICE_IMAGE##*:}" \
    --set operator.image.repository="${TIKETI_OPERATOR_IMAGE%:*}" --set operator.image.tag="${TIKETI_OPERATOR_IMAGE##*:}" \
    --set externalDatabase.url="$pod_db_url" --set externalRedis.url="$pod_redis_url" \
    --set secret.jwtSecret="$jwt_secret" --set service.config.redisPrefix="$REDIS_PREFIX" \
    --set service.config.trustedProxies="$TIKETI_K8S_NODE_POD_GATEWAY/32" >/dev/null ||
    {
      kubectl -n "$ns" get pods -o wide >&2 || true
      kubectl -n "$ns" get events --sort-by=.lastTimestamp >&2 | tail -n 30 || true
      exit 1
    }
  log "real node: chart installed, pods Ready in $((SECONDS - t0)) s"
  kubectl -n "$ns" get pods -o wide >&2
  local svc nginx_env
  svc=$(kubectl -n "$ns" get service -l app.kubernetes.io/component=service \
    -o jsonpath='{.items[?(@.spec.type=="ClusterIP")].metadata.name}')
  nginx_env=$(e2e/scripts/nginx.sh start "$ns" "$svc")
  while IFS='=' read -r key value; do export "$key=$value"; done <<<"$nginx_env"
}

# wait_for_leader CHECK: until the operator Lease is held by an identity CHECK accepts (a live operator pod, or
# one of our local processes). After an upgrade, or a switch between the kwok and the real-node runs on a kept
# cluster, the old leader's Lease must run out first (15 s); the tests need a leading operator, as users do.
wait_for_leader() {
  local deadline=$((SECONDS + 90)) holder
  while :; do
    holder=$(kubectl -n "$ns" get lease tiketi-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
    if [ -n "$holder" ] && "$@" "$holder"; then
      log "operator $holder leads"
      return 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || { log "no operator took the lease (holder: ${holder:-none})"; exit 1; }
    sleep 1
  done
}
is_live_operator_pod() {
  [ "$(kubectl -n "$ns" get pod "$1" -o jsonpath='{.metadata.labels.app\.kubernetes\.io/component}:{.metadata.deletionTimestamp}' 2>/dev/null)" = operator: ]
}
is_local_operator() { [[ "$1" == operator-[01] ]]; }

log "PostgreSQL and Redis"
eval "$(scripts/deps.sh start)"
# the suite's own Redis (the rehearsal restarts it), not the development one
suite_redis=$(e2e/scripts/redis.sh start) # fails the run (set -e) if it does not start
eval "$suite_redis"
e2e_db=tiketi_e2e
psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $e2e_db WITH (FORCE)" -c "CREATE DATABASE $e2e_db" >/dev/null
DATABASE_URL=${DATABASE_URL%/*}/$e2e_db
export DATABASE_URL REDIS_URL
REDIS_PREFIX="e2e:$(date +%s)"
export REDIS_PREFIX

if [ "$real_node" = 1 ]; then
  log "images (Docker, from the release binaries)"
  images_env=$(e2e/scripts/images.sh build)
  while IFS='=' read -r key value; do export "$key=$value"; done <<<"$images_env"
else
  log "building the service and the operator"
  cargo build -q -p tiketi-service -p tiketi-operator
  bin=${CARGO_TARGET_DIR:-$root/target}/debug
  LOG_FORMAT=pretty "$bin/tiketi-service" migrate >/dev/null
  # the tenancy test runs two more installs of the operator, one per namespace
  export E2E_OPERATOR_BIN=$bin/tiketi-operator
fi

if [ "${E2E_CLUSTER:-local}" = local ]; then
  if [ "$real_node" = 1 ]; then log "local control plane with a real node"; else log "local control plane"; fi
  eval "$(TIKETI_K8S_REAL_NODE=$real_node e2e/scripts/control-plane.sh start)"
  log "KEDA (keda-operator, KEDA's CRDs and RBAC)"
  e2e/scripts/keda.sh start
  export E2E_KEDA=1
else
  log "existing cluster at ${KUBECONFIG:-~/.kube/config}"
fi
for tool in kubectl helm; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done

log "chart: lint, deterministic renders, server-side dry run of every template, install"
ns=tiketi-system
# the tests make a namespace each and cooperate with HPAs and KEDA, and measure pod start-up: this
# install watches every namespace with those features on (a narrower one is tested in tenancy)
# (but not the TicketEvents labelled tiketi.io/tenant: the tenancy test's own installs own those)
operator_values=(--set 'operator.watchNamespaces={*}' --set 'operator.ticketEventSelector=!tiketi.io/tenant'
  --set operator.allowCooperate=true --set operator.leadTimeAuto=true)
# the chart never generates the JWT secret (renders must be deterministic): one per run
jwt_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
helm lint charts/tiketi --set secret.jwtSecret="$jwt_secret" >/dev/null
helm lint charts/tiketi -f charts/tiketi/values-kind.yaml >/dev/null
e2e/scripts/chart-render.sh
kubectl apply --server-side -f charts/tiketi/crds/ >/dev/null
e2e/scripts/crds-established.sh 60 ticketevents.tiketi.io
if [ "${E2E_CLUSTER:-local}" != local ]; then
  if kubectl get crd scaledobjects.keda.sh >/dev/null 2>&1; then export E2E_KEDA=1; else export E2E_KEDA=0; fi
fi
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
helm template tiketi charts/tiketi -n "$ns" --set externalDatabase.url="$DATABASE_URL" --set externalRedis.url="$REDIS_URL" \
  --set secret.jwtSecret="$jwt_secret" --set grafanaDashboard.enabled=true | kubectl apply --dry-run=server -n "$ns" -f - >/dev/null
helm template tiketi charts/tiketi -n "$ns" -f charts/tiketi/values-kind.yaml | kubectl apply --dry-run=server -n "$ns" -f - >/dev/null
if [ "$real_node" = 1 ]; then
  real_node_install
else
  helm upgrade --install tiketi charts/tiketi -n "$ns" --wait --timeout 3m \
    --set externalDatabase.url="$DATABASE_URL" --set externalRedis.url="$REDIS_URL" --set secret.jwtSecret="$jwt_secret" \
    --set migrations.job.enabled=false "${operator_values[@]}" >/dev/null
fi

log "the operator's ServiceAccount token (for the RBAC test)"
sa=$(kubectl -n "$ns" get serviceaccount -l app.kubernetes.io/component=operator -o jsonpath='{.items[0].metadata.name}')
token=$(kubectl -n "$ns" create token "$sa" --duration=2h)
server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
export E2E_OPERATOR_KUBECONFIG=$run_dir/operator.kubeconfig
cat >"$E2E_OPERATOR_KUBECONFIG" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: operator, user: {token: "$token"}}]
contexts: [{name: operator, context: {cluster: e2e, user: operator, namespace: $ns}}]
current-context: operator
KUBECONFIG
export E2E_OPERATOR_NAMESPACE=$ns
# With the real node the chart's operator pods run the TicketEvents; else two local processes do (one leads).
for i in 0 1; do
  [ "$real_node" = 1 ] && break
  KUBECONFIG=$E2E_OPERATOR_KUBECONFIG POD_NAMESPACE=$ns POD_NAME="operator-$i" METRICS_ADDR="127.0.0.1:1808$i" \
    WATCH_NAMESPACES='*' TICKET_EVENT_SELECTOR='!tiketi.io/tenant' ALLOW_COOPERATE=true LEAD_TIME_AUTO=true \
    LOG_FORMAT=pretty "$bin/tiketi-operator" >"$run_dir/operator-$i.log" 2>&1 &
  pids+=($!)
done
if [ "$real_node" = 1 ]; then wait_for_leader is_live_operator_pod; else wait_for_leader is_local_operator; fi

export E2E_REAL_NODE=$real_node
if [ "${1:-}" = rehearsal ]; then
  # make rehearsal: the full-dress sale opening on the real node instead of the tests (report in target/)
  [ "$real_node" = 1 ] || { log "the rehearsal needs the real node (E2E_REAL_NODE=1, root)"; exit 1; }
  log "rehearsal (${REHEARSAL_USERS:-1000} users)"
  E2E_REHEARSAL=1 cargo test -p tiketi-e2e --test real_pods -- --ignored --exact --nocapture \
    rehearsal::rehearsal_full_dress_sale_opening
  log "rehearsal passed: target/rehearsal-report.md"
  exit 0
fi
log "tests"
# --no-fail-fast: a failure in the kwok tests still runs the real-pod tests (every failure in one run)
repeat=${E2E_REPEAT:-1}
for ((round = 1; round <= repeat; round++)); do
  [ "$repeat" = 1 ] || log "round $round of $repeat"
  cargo test -p tiketi-e2e --no-fail-fast -- --ignored --test-threads=4 --nocapture "$@"
done
log "passed"
