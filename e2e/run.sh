#!/usr/bin/env bash
# The e2e suite against a real Kubernetes API server.
#
#   e2e/run.sh            start the local control plane (built with Go, cached; no container engine needed),
#                         install the chart, run the operator with the chart's ServiceAccount, run the tests
#   E2E_CLUSTER=existing e2e/run.sh
#                         use the cluster $KUBECONFIG points at (e.g. kind, after e2e/scripts/kind-up.sh)
#   E2E_KEEP=1            leave the control plane running afterwards
#
# With kwok nodes no container really runs, so the operator and its dependencies (PostgreSQL, Redis)
# run as local processes; the chart's objects (CRD, RBAC, Deployments whose pods kwok makes Ready) are real.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
run_dir=$root/.dev/e2e
mkdir -p "$run_dir"
log() { printf '[e2e +%ss] %s\n' "$SECONDS" "$*" >&2; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${E2E_CLUSTER:-local}" = local ] && [ "${E2E_KEEP:-0}" != 1 ]; then
    e2e/scripts/control-plane.sh stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

log "PostgreSQL and Redis"
eval "$(scripts/deps.sh start)"
e2e_db=tiketi_e2e
psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $e2e_db" -c "CREATE DATABASE $e2e_db" >/dev/null
DATABASE_URL=${DATABASE_URL%/*}/$e2e_db
export DATABASE_URL REDIS_URL
REDIS_PREFIX="e2e:$(date +%s)"
export REDIS_PREFIX

log "building the service and the operator"
cargo build -q -p tiketi-service -p tiketi-operator
bin=${CARGO_TARGET_DIR:-$root/target}/debug
LOG_FORMAT=pretty "$bin/tiketi-service" migrate >/dev/null

if [ "${E2E_CLUSTER:-local}" = local ]; then
  log "local control plane"
  eval "$(e2e/scripts/control-plane.sh start)"
else
  log "existing cluster at ${KUBECONFIG:-~/.kube/config}"
fi
for tool in kubectl helm; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done

log "chart: lint, deterministic renders, server-side dry run of every template, install"
ns=tiketi-system
# the chart never generates the JWT secret (renders must be deterministic): one per run
jwt_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
helm lint charts/tiketi --set secret.jwtSecret="$jwt_secret" >/dev/null
helm lint charts/tiketi -f charts/tiketi/values-kind.yaml >/dev/null
e2e/scripts/chart-render.sh
kubectl apply --server-side -f charts/tiketi/crds/ >/dev/null
kubectl wait --for=condition=Established crd/ticketevents.tiketi.io --timeout=60s >/dev/null
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
helm template tiketi charts/tiketi -n "$ns" --set externalDatabase.url="$DATABASE_URL" --set externalRedis.url="$REDIS_URL" \
  --set secret.jwtSecret="$jwt_secret" --set grafanaDashboard.enabled=true | kubectl apply --dry-run=server -n "$ns" -f - >/dev/null
helm template tiketi charts/tiketi -n "$ns" -f charts/tiketi/values-kind.yaml | kubectl apply --dry-run=server -n "$ns" -f - >/dev/null
helm upgrade --install tiketi charts/tiketi -n "$ns" --wait --timeout 3m \
  --set externalDatabase.url="$DATABASE_URL" --set externalRedis.url="$REDIS_URL" --set secret.jwtSecret="$jwt_secret" \
  --set migrations.job.enabled=false >/dev/null

log "the operator, with the chart's ServiceAccount (two replicas: one leads)"
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
for i in 0 1; do
  KUBECONFIG=$E2E_OPERATOR_KUBECONFIG POD_NAMESPACE=$ns POD_NAME="operator-$i" METRICS_ADDR="127.0.0.1:1808$i" \
    LOG_FORMAT=pretty "$bin/tiketi-operator" >"$run_dir/operator-$i.log" 2>&1 &
  pids+=($!)
done

log "tests"
cargo test -p tiketi-e2e -- --ignored --test-threads=4 --nocapture "$@"
log "passed"
