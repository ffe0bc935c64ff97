#!/usr/bin/env bash
# The static checks, exactly as CI (.ci/run) runs them before the tests: formatting, lints, the docs,
# generated artefacts, forbidden dependencies, scripts. `make check` runs this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format and lints"
cargo fmt --all -- --check
# --all-features: the operator's database tests (feature io-tests, on in make test) are linted too
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== docs: links resolve, nothing cited from outside the repository, every setting documented"
scripts/check-docs.sh

echo "== generated artefacts match the code (CRD yaml)"
cargo run -q -p tiketi-crds --bin crdgen | diff -u crds/ticketevent.yaml - || {
  echo "crds/ticketevent.yaml is stale: make crd" >&2
  exit 1
}
# the chart's copy (Helm installs CRDs only from the chart's own crds/)
diff -u crds/ticketevent.yaml charts/tiketi/crds/ticketevent.yaml || {
  echo "charts/tiketi/crds/ticketevent.yaml differs from crds/ticketevent.yaml: make crd" >&2
  exit 1
}

echo "== the service builds without kube and without openssl/aws-lc"
if cargo tree -p tiketi-service -e normal | grep -qE '\b(kube|openssl-sys|aws-lc-sys|native-tls)\b'; then
  echo "forbidden dependency in tiketi-service" >&2
  exit 1
fi

echo "== scripts parse (the kind path cannot run here: no container engine)"
for f in scripts/*.sh e2e/run.sh e2e/scripts/*.sh; do bash -n "$f"; done
if command -v shellcheck >/dev/null; then shellcheck e2e/run.sh e2e/scripts/*.sh scripts/*.sh; fi
