#!/usr/bin/env bash
# Offline checks of the chart's renders (no cluster: `helm template`, as Argo CD and GitOps pipelines
# render it):
#   - rendering twice gives the same manifests (no value generated at render time, e.g. a JWT secret
#     that would differ between replicas started from different renders);
#   - outside dev mode the JWT secret is required; in dev mode the Secret has none (the service's dev
#     secret, the same on every replica);
#   - changing the secret changes the pod templates' checksum, so pods roll instead of running with
#     two secrets;
#   - the operator reconciles the release namespace only unless told otherwise, with a Role there
#     (a ClusterRole only for watchNamespaces ["*"]), and its rules carry pods list and HPA/ScaledObject
#     patch only when leadTimeAuto / allowCooperate ask for them;
#   - the dev Redis has a maxmemory (with noeviction).
# Usage: e2e/scripts/chart-render.sh   (helm on PATH, or HELM=/path/to/helm)
set -euo pipefail
cd "$(dirname "$0")/../.."
helm=${HELM:-helm}
chart=${CHART:-charts/tiketi}
fail() { echo "chart-render: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

secret_a=$(printf 'a%.0s' {1..40})
secret_b=$(printf 'b%.0s' {1..40})
prod=(--set externalDatabase.url=postgres://u:p@db:5432/tiketi --set externalRedis.url=redis://redis:6379)

render() { "$helm" template tiketi "$chart" -n tiketi "$@"; }

for values in "prod:${prod[*]} --set secret.jwtSecret=$secret_a" "dev:-f $chart/values-kind.yaml"; do
  name=${values%%:*}
  # shellcheck disable=SC2086 # the arguments are split on purpose
  render ${values#*:} >"$tmp/$name.1"
  # shellcheck disable=SC2086
  render ${values#*:} >"$tmp/$name.2"
  diff -u "$tmp/$name.1" "$tmp/$name.2" >&2 || fail "two renders of the $name values differ"
done

grep -q '^  JWT_SECRET:' "$tmp/dev.1" && fail "the dev render carries a JWT_SECRET (the service's dev secret is meant)"
grep -q "JWT_SECRET: \"$(printf '%s' "$secret_a" | base64 -w0)\"" "$tmp/prod.1" || fail "the prod render lacks secret.jwtSecret"

if out=$(render "${prod[@]}" 2>&1); then
  fail "rendered without a JWT secret outside dev mode"
fi
grep -q 'secret.jwtSecret' <<<"$out" || fail "the refusal does not name secret.jwtSecret: $out"
render "${prod[@]}" --set secret.existingSecret=mine >/dev/null || fail "secret.existingSecret is not enough"
# an external Redis Cluster, as docs/deployment.md documents it
render "${prod[@]}" --set secret.jwtSecret="$secret_a" \
  --set externalRedis.url='redis-cluster://r1:6379?node=r2:6379&node=r3:6379' >/dev/null ||
  fail "externalRedis.url refuses a redis-cluster:// URL"
render "${prod[@]}" --set secret.jwtSecret="$secret_a" --set externalRedis.url=http://r1:6379 >/dev/null 2>&1 &&
  fail "externalRedis.url takes a URL that is no Redis"

checksums() { grep 'checksum/secret' | sort -u; }
render "${prod[@]}" --set secret.jwtSecret="$secret_b" >"$tmp/prod.b"
[ "$(checksums <"$tmp/prod.1")" != "$(checksums <"$tmp/prod.b")" ] || fail "a new JWT secret does not change checksum/secret"
[ "$(checksums <"$tmp/prod.1" | wc -l)" -ge 1 ] || fail "no checksum/secret on the pod templates"
# tenancy and least privilege (the operator's rules in the default prod render)
prod1=$tmp/prod.1
grep -q 'kind: ClusterRole$' "$prod1" && fail "the default render grants cluster-wide rules (watchNamespaces is the release namespace)"
grep -A1 'name: WATCH_NAMESPACES' "$prod1" | grep -q 'value: "tiketi"' || fail "the operator does not watch the release namespace only by default"
grep -q 'name: tiketi-operator-reconcile' "$prod1" || fail "no Role for the watched namespace"
grep -q 'resources: \["pods"\]' "$prod1" && fail "pods list granted without operator.leadTimeAuto"
grep -A1 -E 'resources: \["(horizontalpodautoscalers|scaledobjects)"\]' "$prod1" | grep -q '"patch"' &&
  fail "HPA/ScaledObject patch granted without operator.allowCooperate"
# the actuator is one patch of the Deployment (replicas + the sale's wish annotation): nothing more on it,
# and nothing on its /scale subresource
grep -A1 'resources: \["deployments"\]' "$prod1" | grep -q 'verbs: \["get", "list", "watch", "patch"\]' ||
  fail "deployments is not exactly get, list, watch, patch"
grep -q 'deployments/scale' "$prod1" && fail "deployments/scale granted (the operator patches the Deployment)"
render "${prod[@]}" --set secret.jwtSecret="$secret_a" --set 'operator.watchNamespaces={a,b}' >"$tmp/two"
for ns in a b; do
  grep -B3 "namespace: $ns\$" "$tmp/two" | grep -q 'name: tiketi-operator-reconcile' || fail "no Role in watched namespace $ns"
done
grep -q 'kind: ClusterRole$' "$tmp/two" && fail "named namespaces got a ClusterRole"
render "${prod[@]}" --set secret.jwtSecret="$secret_a" --set 'operator.watchNamespaces={*}' \
  --set operator.allowCooperate=true --set operator.leadTimeAuto=true >"$tmp/all"
grep -q 'kind: ClusterRole$' "$tmp/all" || fail "watchNamespaces * without a ClusterRole"
grep -q 'resources: \["pods"\]' "$tmp/all" || fail "operator.leadTimeAuto without pods list"
[ "$(grep -A1 -E 'resources: \["(horizontalpodautoscalers|scaledobjects)"\]' "$tmp/all" | grep -c '"patch"')" -ge 2 ] ||
  fail "operator.allowCooperate without HPA and ScaledObject patch"
if out=$(render "${prod[@]}" --set secret.jwtSecret="$secret_a" --set 'operator.watchNamespaces={a,*}' 2>&1); then
  fail "watchNamespaces mixing * with names rendered"
fi
grep -q -- '"--maxmemory", "' "$tmp/dev.1" || fail "the dev Redis has no maxmemory"

echo "chart-render: renders deterministic, JWT secret required outside dev, checksum rolls pods, operator scoped and least-privilege"
