#!/usr/bin/env bash
# Smoke test of the loopback control plane started by control-plane.sh: proves that it behaves like a real cluster
# in the ways the e2e tests rely on. Run it after `control-plane.sh start`; it cleans up its own namespace.
#   readyz · Deployment → ReplicaSet → Pods scheduled on kwok nodes and Ready · scale subresource ·
#   RBAC enforced for a ServiceAccount (impersonated and with a real TokenRequest token) · CRD served and validated
set -euo pipefail

cp_sh="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/control-plane.sh"
eval "$("$cp_sh" env)"
ns=smoke-$$
passed=0

step() { printf '[smoke] %s\n' "$*" >&2; }
ok() {
  passed=$((passed + 1))
  printf '[smoke] ok: %s\n' "$*" >&2
}
fail() {
  printf '[smoke] FAILED: %s\n' "$*" >&2
  exit 1
}
ca_file=
cleanup() {
  [ -z "$ca_file" ] || rm -f "$ca_file"
  kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  kubectl delete crd "smokerooms.smoke.tiketi.dev" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "API server /readyz"
[ "$(kubectl get --raw /readyz)" = ok ] || fail "/readyz"
ok "/readyz"

step "Deployment with 2 replicas"
kubectl create namespace "$ns" >/dev/null
kubectl -n "$ns" create deployment web --image=registry.k8s.io/pause:3.9 --replicas=2 >/dev/null
kubectl -n "$ns" rollout status deploy/web --timeout=60s >&2
[ "$(kubectl -n "$ns" get deploy web -o jsonpath='{.status.readyReplicas}')" = 2 ] || fail "readyReplicas != 2"
ok "rollout complete, readyReplicas=2"

step "scale subresource to 3"
kubectl -n "$ns" scale deploy/web --replicas=3 >/dev/null
kubectl -n "$ns" wait deploy/web --for=jsonpath='{.status.readyReplicas}'=3 --timeout=60s >/dev/null
[ "$(kubectl -n "$ns" get --raw "/apis/apps/v1/namespaces/$ns/deployments/web/scale" |
  grep -o '"spec":{"replicas":[0-9]*}')" = '"spec":{"replicas":3}' ] || fail "scale subresource"
kubectl -n "$ns" get pods -o wide >&2
ok "readyReplicas=3"

step "RBAC"
kubectl -n "$ns" create serviceaccount nobody >/dev/null
sa="system:serviceaccount:$ns:nobody"
[ "$(kubectl auth can-i list pods -n "$ns" --as="$sa" || true)" = no ] || fail "SA without a role may list pods"
out=$(kubectl get pods -n "$ns" --as="$sa" 2>&1 || true)
case "$out" in *Forbidden*) ;; *) fail "impersonated request was not Forbidden: $out" ;; esac
# A real bound token, issued by the TokenRequest API and checked against the service-account key pair.
token=$(kubectl -n "$ns" create token nobody --duration=10m)
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
ca_file=$(mktemp)
kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$ca_file"
# Only the token authenticates here: no kubeconfig, so no admin client certificate.
as_token() { kubectl --kubeconfig=/dev/null --server="$server" --certificate-authority="$ca_file" --token="$token" "$@"; }
out=$(as_token get pods -n "$ns" 2>&1 || true)
case "$out" in *Forbidden*) ;; *) fail "token request was not Forbidden: $out" ;; esac
kubectl -n "$ns" create role pod-reader --verb=get,list,watch --resource=pods >/dev/null
kubectl -n "$ns" create rolebinding nobody-reads --role=pod-reader --serviceaccount="$ns:nobody" >/dev/null
for _ in $(seq 20); do as_token get pods -n "$ns" >/dev/null 2>&1 && break; sleep 0.25; done
as_token get pods -n "$ns" >/dev/null || fail "token with a RoleBinding may not list pods"
out=$(as_token delete deploy/web -n "$ns" 2>&1 || true)
case "$out" in *Forbidden*) ;; *) fail "delete was not Forbidden: $out" ;; esac
ok "Forbidden without a role, allowed with one, still Forbidden outside it"

step "CustomResourceDefinition"
kubectl apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: smokerooms.smoke.tiketi.dev
spec:
  group: smoke.tiketi.dev
  scope: Namespaced
  names: {plural: smokerooms, singular: smokeroom, kind: SmokeRoom}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              capacity: {type: integer, minimum: 1}
EOF
"$(dirname "${BASH_SOURCE[0]}")/crds-established.sh" 30 smokerooms.smoke.tiketi.dev
printf '{"apiVersion":"smoke.tiketi.dev/v1alpha1","kind":"SmokeRoom","metadata":{"name":"r1","namespace":"%s"},"spec":{"capacity":5}}' "$ns" |
  kubectl apply -f - >/dev/null
[ "$(kubectl -n "$ns" get smokeroom r1 -o jsonpath='{.spec.capacity}')" = 5 ] || fail "custom resource not served"
out=$(printf '{"apiVersion":"smoke.tiketi.dev/v1alpha1","kind":"SmokeRoom","metadata":{"name":"bad","namespace":"%s"},"spec":{"capacity":0}}' "$ns" |
  kubectl apply -f - 2>&1 || true)
case "$out" in *Invalid*) ;; *) fail "schema validation did not reject capacity=0: $out" ;; esac
ok "CRD established, custom resource served, schema enforced"

echo "control-plane smoke: $passed passed, 0 failed"
