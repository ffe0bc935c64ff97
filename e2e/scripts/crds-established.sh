#!/usr/bin/env bash
# Waits until every CRD named is Established, polling its status condition. `kubectl wait
# --for=condition=Established` fails at once ("accessor error: .status.conditions ... <nil>") when it
# asks before the API server has written the CRD's first status, which a loaded machine shows.
#
# Usage: e2e/scripts/crds-established.sh [kubectl flags: --kubeconfig F | --context C] <timeout seconds> <crd>...
set -euo pipefail
flags=()
while [ $# -gt 0 ] && [[ $1 == --* ]]; do
  flags+=("$1" "$2")
  shift 2
done
[ $# -ge 2 ] || { echo "usage: $0 [--kubeconfig F | --context C] <timeout seconds> <crd>..." >&2; exit 2; }
timeout=$1
shift
deadline=$((SECONDS + timeout))
for crd in "$@"; do
  until [ "$(kubectl "${flags[@]}" get crd "$crd" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "crds-established: $crd is not Established after ${timeout}s" >&2
      kubectl "${flags[@]}" get crd "$crd" -o jsonpath='{.status}' >&2 || true
      exit 1
    fi
    sleep 0.2
  done
done
