#!/usr/bin/env bash
# KEDA's operator for the e2e suite, built from source with Go and run as a host process against the local
# control plane (e2e/scripts/control-plane.sh), so the operator's cooperation with a real ScaledObject (and the HPA
# KEDA creates for it) is tested against KEDA itself, not a CRD nobody reconciles.
#
#   e2e/scripts/keda.sh build    build (once, cached by version) keda-operator; KEDA's CRDs and RBAC go beside it
#   e2e/scripts/keda.sh start    build if needed, install the CRDs and RBAC, start keda-operator, wait until ready
#   e2e/scripts/keda.sh stop     stop keda-operator (the cache, the CRDs and the run directory stay)
#   e2e/scripts/keda.sh status   show whether it runs
#
# `start` needs the local control plane (e2e/scripts/control-plane.sh start) and its exports (kubectl on PATH): it
# uses its admin kubeconfig, and its CA signs keda-operator's client certificate. Progress goes to stderr.
#
# Only keda-operator runs: no metrics API server and no admission webhooks. For a ScaledObject with a cpu or memory
# trigger the HPA KEDA creates uses a Resource metric, which never goes through KEDA's metrics API, and that HPA
# is what the e2e checks. Certificate rotation is off (it would patch webhook and APIService objects that are not
# installed); the operator's gRPC metrics service gets a self-signed certificate from the run directory instead.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

# ---- versions ---------------------------------------------------------------------------------------------------
# KEDA v2.20 is the line built against client-go 0.35 and supports Kubernetes 1.33-1.35, so the control plane's
# 1.34; it needs Go 1.26 (v2.21 needs Go 1.27). v2.20.2 is the newest v2.20 patch on the Go proxy.
keda_version=${TIKETI_KEDA_VERSION:-v2.20.2}
# Bump when the build recipe (flags, layout) changes, so old cache entries are not reused.
recipe_rev=2

# ---- locations and ports ----------------------------------------------------------------------------------------
cache=${TIKETI_K8S_CACHE:-$HOME/.cache/tiketi-k8s}
run=${TIKETI_KEDA_RUN:-$repo_root/.dev/keda}
keda_dir="$cache/keda-$keda_version-r$recipe_rev"
# Loopback only, below 32768 like the control plane's ports.
metrics_port=${TIKETI_KEDA_METRICS_PORT:-20680}
probe_port=${TIKETI_KEDA_PROBE_PORT:-20681}
grpc_port=${TIKETI_KEDA_GRPC_PORT:-20682}
start_timeout=${TIKETI_KEDA_START_TIMEOUT:-60}
# KEDA's namespace: leader election and its cluster-scoped objects' namespace live there.
keda_ns=keda

log() { printf '[keda +%ss] %s\n' "$SECONDS" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ================================================================================================================
# build
# ================================================================================================================

# GOTOOLCHAIN=local: never download another toolchain behind our back. -mod=mod: the throw-away build module below
# is resolved on the fly. CGO off: a static binary, no C toolchain.
go_env() {
  command -v go >/dev/null || die "Go is not installed (needed once to build KEDA; then it is cached)"
  export GOTOOLCHAIN=${TIKETI_GOTOOLCHAIN:-local}
  export GOFLAGS="-mod=mod -buildvcs=false"
  export GOWORK=off
  export CGO_ENABLED=0
}

is_built() { [ -f "$keda_dir/.complete" ]; }

# KEDA's go.mod pins k8s.io/* and controller-runtime with replace directives, which only apply inside that module.
# So a local module requires KEDA and repeats every replace of a published version (read from the downloaded
# go.mod, so it follows the version); without them Go would pick newer k8s.io modules KEDA does not build with.
build_keda() {
  local ws="$cache/src/keda-$keda_version"
  rm -rf "$ws"
  mkdir -p "$ws"
  (
    cd "$ws"
    go mod init tiketi.local/build >/dev/null 2>&1
    local upstream_mod src
    upstream_mod=$(go list -m -f '{{.GoMod}}' "github.com/kedacore/keda/v2@$keda_version")
    [ -f "$upstream_mod" ] || die "could not download the go.mod of github.com/kedacore/keda/v2@$keda_version"
    {
      echo "require github.com/kedacore/keda/v2 $keda_version"
      echo "replace ("
      awk '/^replace \(/ { on = 1; next } on && /^\)/ { on = 0 } on && $2 == "=>" && $3 !~ /^\./ { print "\t" $0 }' \
        "$upstream_mod" | sed 's/^\t\t/\t/'
      echo ")"
      echo "tool github.com/kedacore/keda/v2/cmd/operator"
    } >>go.mod
    grep -q 'k8s.io/client-go => k8s.io/client-go' go.mod || die "no k8s.io replace directives found in $upstream_mod"
    go mod tidy
    rm -rf bin.tmp
    go build -trimpath -ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=${keda_version#v}" \
      -o bin.tmp/keda-operator github.com/kedacore/keda/v2/cmd/operator
    # The CRDs of the very same version (the ScaledObject's schema and status the operator reads), every one of
    # them: keda-operator watches CloudEventSources too, and exits when one of its kinds is not served once its
    # caches' sync timeout (2 min) has passed.
    src=$(go list -m -f '{{.Dir}}' github.com/kedacore/keda/v2)/config/crd/bases
    mkdir -p bin.tmp/crds bin.tmp/rbac
    cp "$src"/keda.sh_*.yaml "$src"/eventing.keda.sh_*.yaml bin.tmp/crds/
    # And its RBAC: keda-operator runs with exactly the rights a real install gives it.
    cp "$src"/../../rbac/role.yaml "$src"/../../rbac/role_binding.yaml bin.tmp/rbac/
    chmod -R u+w bin.tmp/crds bin.tmp/rbac
    rm -rf "${keda_dir:?}"
    mkdir -p "$(dirname "$keda_dir")"
    mv bin.tmp "$keda_dir"
    go version >"$keda_dir/.complete"
  )
}

cmd_build() {
  mkdir -p "$cache"
  if is_built; then
    log "cached: $keda_dir"
    return 0
  fi
  go_env
  # Two builds at once (two CI steps, two terminals) would trample each other's work directory. Its own lock, not
  # the control plane's: the two builds share nothing but Go's module cache, which is safe to share.
  exec 9>"$cache/.keda-build.lock"
  if command -v flock >/dev/null; then flock 9; fi
  local t0=$SECONDS
  log "building KEDA $keda_version (keda-operator)"
  build_keda
  log "built in $((SECONDS - t0)) s: $keda_dir"
  exec 9>&-
}

# ================================================================================================================
# run
# ================================================================================================================

k8s_run=${TIKETI_K8S_RUN:-$repo_root/.dev/k8s}
admin_kubeconfig="$k8s_run/kubeconfig"
kc() { kubectl --kubeconfig "$admin_kubeconfig" "$@"; }

pid_of() { cat "$run/keda-operator.pid" 2>/dev/null || true; }

# running: the recorded pid is alive, not a zombie, and still our binary (guards against a recycled pid).
running() {
  local pid state
  pid=$(pid_of)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  state=$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || return 1
  [ "$state" != Z ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$keda_dir/keda-operator"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# keda-operator's credentials, made once per run directory (and again when the control plane's CA changes):
# a client certificate from the control plane's CA whose user name is its ServiceAccount's
# (system:serviceaccount:keda:keda-operator), so KEDA's own role_binding.yaml grants it KEDA's own roles and
# nothing more, and it never expires mid-run as a token would; and the self-signed certificate its gRPC metrics
# service serves (nothing dials it here, but it does not start without one).
ensure_credentials() {
  [ -f "$run/.credentials" ] && [ "$run/.credentials" -nt "$k8s_run/pki/ca.crt" ] && return 0
  command -v openssl >/dev/null || die "openssl is needed for keda-operator's certificates"
  [ -f "$k8s_run/pki/ca.key" ] || die "no control plane CA in $k8s_run/pki: start it first (e2e/scripts/control-plane.sh start)"
  local pki="$run/pki" certs="$run/certs"
  rm -rf "${pki:?}" "${certs:?}"
  mkdir -p "$pki" "$certs"
  chmod 700 "$pki" "$certs"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/client.key" -out "$pki/client.csr" \
    -subj "/O=system:serviceaccounts/O=system:serviceaccounts:$keda_ns/CN=system:serviceaccount:$keda_ns:keda-operator" \
    2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
    >"$pki/client.ext"
  openssl x509 -req -in "$pki/client.csr" -CA "$k8s_run/pki/ca.crt" -CAkey "$k8s_run/pki/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 -extfile "$pki/client.ext" -out "$pki/client.crt" 2>/dev/null
  local server
  server=$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  cat >"$run/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: tiketi-e2e, cluster: {server: "$server", certificate-authority-data: $(base64 -w0 <"$k8s_run/pki/ca.crt")}}]
users: [{name: keda-operator, user: {client-certificate-data: $(base64 -w0 <"$pki/client.crt"), client-key-data: $(base64 -w0 <"$pki/client.key")}}]
contexts: [{name: keda-operator, context: {cluster: tiketi-e2e, user: keda-operator}}]
current-context: keda-operator
EOF
  chmod 600 "$run/kubeconfig"
  # KEDA reads ca.crt, tls.crt and tls.key from --cert-dir; one self-signed certificate plays CA and server.
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$certs/tls.key" -out "$certs/tls.crt" -days 3650 -sha256 \
    -subj "/CN=keda-operator" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
  cp "$certs/tls.crt" "$certs/ca.crt"
  rm -f "$pki/client.csr" "$pki/client.ext"
  touch "$run/.credentials"
}

# The CRDs and RBAC of the built version, applied server-side (idempotent; an upgrade replaces the old ones).
install_apis() {
  kc create namespace "$keda_ns" --dry-run=client -o yaml | kc apply -f - >/dev/null
  kc apply --server-side --force-conflicts -f "$keda_dir/crds/" >/dev/null
  kc apply --server-side --force-conflicts -f "$keda_dir/rbac/" >/dev/null
  "$script_dir/crds-established.sh" --kubeconfig "$admin_kubeconfig" 60 scaledobjects.keda.sh scaledjobs.keda.sh \
    triggerauthentications.keda.sh clustertriggerauthentications.keda.sh \
    cloudeventsources.eventing.keda.sh clustercloudeventsources.eventing.keda.sh
}

ready() { curl -fsS "http://127.0.0.1:$probe_port/readyz" >/dev/null 2>&1; }

cmd_start() {
  cmd_build
  command -v kubectl >/dev/null || die "kubectl is not on PATH: eval \"\$(e2e/scripts/control-plane.sh env)\" first"
  mkdir -p "$run"
  local t0=$SECONDS
  ensure_credentials
  install_apis
  if running; then
    log "keda-operator already running (pid $(pid_of))"
  else
    local port
    for port in "$metrics_port" "$probe_port" "$grpc_port"; do
      ! port_in_use "$port" || die "port $port is taken by another process; pick others with the TIKETI_KEDA_*_PORT variables"
    done
    local logfile="$run/keda-operator.log" pidfile="$run/keda-operator.pid"
    [ -f "$logfile" ] && mv -f "$logfile" "$logfile.1"
    rm -f "$pidfile"
    # Its own session (setsid), like the control plane's processes: a Ctrl-C in the caller's terminal does not
    # take it down; `stop` signals the whole group. The pid is written by the process itself just before exec.
    # WATCH_NAMESPACE empty: every namespace (it must be set). KEDA_CLUSTER_OBJECT_NAMESPACE: where it looks for
    # ClusterTriggerAuthentication secrets (a pod reads it from its ServiceAccount mount). No leader election: one
    # replica.
    # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
    setsid env KUBECONFIG="$run/kubeconfig" POD_NAMESPACE="$keda_ns" KEDA_CLUSTER_OBJECT_NAMESPACE="$keda_ns" \
      WATCH_NAMESPACE= bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$keda_dir/keda-operator" \
      --metrics-bind-address="127.0.0.1:$metrics_port" --health-probe-bind-address="127.0.0.1:$probe_port" \
      --metrics-service-bind-address="127.0.0.1:$grpc_port" --cert-dir="$run/certs" --ca-dir="$run/certs" \
      --enable-cert-rotation=false --leader-elect=false \
      --zap-log-level=info --zap-encoder=console --zap-time-encoding=rfc3339 \
      >"$logfile" 2>&1 </dev/null &
    for _ in $(seq 50); do
      [ -s "$pidfile" ] && break
      sleep 0.1
    done
    log "started keda-operator (pid $(pid_of), log $logfile)"
  fi
  local deadline=$((SECONDS + start_timeout))
  until ready; do
    if ! running; then
      tail -n 30 "$run/keda-operator.log" >&2 || true
      die "keda-operator exited while starting (log: $run/keda-operator.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$run/keda-operator.log" >&2 || true
      die "timed out after ${start_timeout}s waiting for keda-operator (log: $run/keda-operator.log)"
    fi
    sleep 0.5
  done
  log "KEDA $keda_version ready in $((SECONDS - t0)) s"
}

cmd_stop() {
  local pid
  pid=$(pid_of)
  if running; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      running || break
      sleep 0.1
    done
    if running; then
      log "keda-operator did not exit after 10 s, killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped keda-operator"
  fi
  rm -f "$run/keda-operator.pid"
}

cmd_status() {
  if running; then
    printf '%-24s running (pid %s)%s\n' keda-operator "$(pid_of)" "$(ready && echo ', ready')"
  else
    printf '%-24s stopped\n' keda-operator
    return 1
  fi
}

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case "$cmd" in
    build) cmd_build ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
      sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

main "$@"
