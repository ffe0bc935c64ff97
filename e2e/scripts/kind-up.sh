#!/usr/bin/env bash
# TIKETI on kind, for users with docker and kind: create the cluster, build and load both images, install
# the chart with the in-cluster dev PostgreSQL and Redis, wait until everything is ready, print the URLs.
#
#   e2e/scripts/kind-up.sh          # re-runnable: reuses the cluster, rebuilds the images, upgrades the release
#   e2e/scripts/kind-down.sh        # deletes the cluster
#
# Needs: docker (running), kind >= v0.23, kubectl, helm 3. Port 3001 on 127.0.0.1 must be free.
# Settings (environment): KIND_CLUSTER_NAME (tiketi), KIND_NODE_IMAGE (kind's default; Kubernetes >= 1.30),
# TIKETI_NAMESPACE (tiketi), TIKETI_RELEASE (tiketi), TIKETI_WAIT_TIMEOUT (600s), HELM_EXTRA_ARGS
# (extra `helm upgrade` arguments, e.g. "--set service.replicaCount=3").
# The first run builds both images from source (several minutes: a release build of the workspace);
# later runs reuse the docker layer cache of the dependencies.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

cluster=${KIND_CLUSTER_NAME:-tiketi}
node_image=${KIND_NODE_IMAGE:-}
namespace=${TIKETI_NAMESPACE:-tiketi}
release=${TIKETI_RELEASE:-tiketi}
wait_timeout=${TIKETI_WAIT_TIMEOUT:-600s}
context="kind-$cluster"
chart="$repo_root/charts/tiketi"

log() { printf '[kind-up] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
kc() { kubectl --context "$context" "$@"; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (needs docker, kind, kubectl and helm)"
done
docker info >/dev/null 2>&1 || die "the docker daemon is not reachable (is it running? can this user use it?)"

# ---- cluster ------------------------------------------------------------------------------------------
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "cluster $cluster exists: reusing it"
else
  log "creating kind cluster $cluster (kind-config.yaml: 1 control plane + 1 worker, host port 3001)"
  create_args=(create cluster --name "$cluster" --config "$repo_root/kind-config.yaml" --wait 180s)
  if [ -n "$node_image" ]; then
    create_args+=(--image "$node_image")
  fi
  kind "${create_args[@]}"
fi
kc cluster-info >/dev/null

# ---- images -------------------------------------------------------------------------------------------
# Each image is tagged with its content id, so a rebuilt image gets a new tag and `helm upgrade` rolls the
# pods; an unchanged one keeps its tag and nothing restarts. pullPolicy is Never (values-kind.yaml).
build_and_load() {
  local name=$1 dockerfile=$2 id tag
  log "building $name ($dockerfile)"
  docker build -f "$repo_root/$dockerfile" -t "$name:dev" "$repo_root" >&2
  id=$(docker image inspect -f '{{.Id}}' "$name:dev")
  id=${id#sha256:}
  tag="dev-${id:0:12}"
  docker tag "$name:dev" "$name:$tag"
  log "loading $name:$tag into kind cluster $cluster"
  kind load docker-image --name "$cluster" "$name:$tag" >&2
  printf '%s\n' "$tag"
}
service_tag=$(build_and_load tiketi-service Dockerfile.service)
operator_tag=$(build_and_load tiketi-operator Dockerfile.operator)

# ---- chart --------------------------------------------------------------------------------------------
# Helm installs crds/ only on first install and never upgrades it; apply it every time so a changed CRD
# reaches a reused cluster.
log "applying the TicketEvent CRD"
kc apply --server-side --force-conflicts -f "$chart/crds/" >&2
"$script_dir/crds-established.sh" --context "$context" 60 ticketevents.tiketi.io >&2

log "installing release $release in namespace $namespace (values-kind.yaml)"
helm_args=(upgrade --install "$release" "$chart" --kube-context "$context" --namespace "$namespace" --create-namespace
  -f "$chart/values-kind.yaml"
  --set "service.image.tag=$service_tag" --set "operator.image.tag=$operator_tag")
if [ -n "${HELM_EXTRA_ARGS:-}" ]; then
  read -r -a extra <<<"$HELM_EXTRA_ARGS"
  helm_args+=("${extra[@]}")
fi
helm "${helm_args[@]}" >&2

# ---- readiness ----------------------------------------------------------------------------------------
# Databases first (the service migrates at start and is Ready only when PostgreSQL and Redis answer).
mapfile -t workloads < <(kc -n "$namespace" get statefulset,deployment \
  -l "app.kubernetes.io/instance=$release" -o name | sort -r)
[ "${#workloads[@]}" -gt 0 ] || die "no workloads of release $release found in namespace $namespace"
for w in "${workloads[@]}"; do
  log "waiting for $w"
  if ! kc -n "$namespace" rollout status "$w" --timeout="$wait_timeout" >&2; then
    kc -n "$namespace" get pods -l "app.kubernetes.io/instance=$release" -o wide >&2 || true
    die "$w did not become ready; see: kubectl --context $context -n $namespace describe $w"
  fi
done

# ---- done ---------------------------------------------------------------------------------------------
url=http://localhost:3001
if command -v curl >/dev/null 2>&1; then
  for _ in $(seq 1 30); do
    curl -fsS "$url/health/all" >/dev/null 2>&1 && break
    sleep 1
  done
  curl -fsS "$url/health/all" >/dev/null 2>&1 || log "warning: $url/health/all does not answer yet (is host port 3001 taken?)"
fi

cat <<EOF

TIKETI is running on kind cluster "$cluster" (context $context), release "$release" in namespace "$namespace".

  API + Socket.IO   $url
  health            $url/health/all
  metrics           $url/metrics
  demo admin        admin@tiketi.gg / admin123   (dev mode, demo events)

  Frontend:  REACT_APP_API_URL=$url REACT_APP_SOCKET_URL=$url npm start

  kubectl --context $context -n $namespace get pods,ticketevents
  kubectl --context $context -n $namespace logs deploy/$(kc -n "$namespace" get deploy -l app.kubernetes.io/component=operator,app.kubernetes.io/instance="$release" -o jsonpath='{.items[0].metadata.name}')

  Remove everything:  e2e/scripts/kind-down.sh
EOF
