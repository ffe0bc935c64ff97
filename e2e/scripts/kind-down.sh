#!/usr/bin/env bash
# Delete the kind cluster made by e2e/scripts/kind-up.sh (with everything in it: release, databases, CRD).
# The docker images tiketi-service:* and tiketi-operator:* stay in the local docker image store
# (remove them with `docker image rm`).
#
#   e2e/scripts/kind-down.sh        # KIND_CLUSTER_NAME (tiketi) selects the cluster
set -euo pipefail

cluster=${KIND_CLUSTER_NAME:-tiketi}

command -v kind >/dev/null 2>&1 || {
  printf '[kind-down] error: kind is not installed\n' >&2
  exit 1
}
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  printf '[kind-down] deleting kind cluster %s\n' "$cluster" >&2
  kind delete cluster --name "$cluster"
else
  printf '[kind-down] no kind cluster named %s: nothing to do\n' "$cluster" >&2
fi
