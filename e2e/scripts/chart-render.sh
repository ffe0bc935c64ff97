#!/usr/bin/env bash
# Offline checks of the chart's renders (no cluster: `helm template`, as Argo CD and GitOps pipelines
# render it):
#   - rendering twice gives the same manifests (no value generated at render time, e.g. a JWT secret
#     that would differ between replicas started from different renders);
#   - outside dev mode the JWT secret is required; in dev mode the Secret has none (the service's dev
#     secret, the same on every replica);
#   - changing the secret changes the pod templates' checksum, so pods roll instead of running with
#     two secrets.
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

checksums() { grep 'checksum/secret' | sort -u; }
render "${prod[@]}" --set secret.jwtSecret="$secret_b" >"$tmp/prod.b"
[ "$(checksums <"$tmp/prod.1")" != "$(checksums <"$tmp/prod.b")" ] || fail "a new JWT secret does not change checksum/secret"
[ "$(checksums <"$tmp/prod.1" | wc -l)" -ge 1 ] || fail "no checksum/secret on the pod templates"
echo "chart-render: renders deterministic, JWT secret required outside dev, checksum rolls pods"
