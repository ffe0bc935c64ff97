#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for e2e tests, built from source with Go.
#
#   e2e/scripts/control-plane.sh build    build (once, cached by version) kube-apiserver, kube-controller-manager,
#                                         kube-scheduler, kubectl, etcd, kwok and helm
#   e2e/scripts/control-plane.sh start    build if needed, then start etcd, kube-apiserver, kube-controller-manager,
#                                         kube-scheduler and kwok (fake nodes); wait until ready; print the exports
#   e2e/scripts/control-plane.sh stop     stop every process started by `start` (the build cache and data stay)
#   e2e/scripts/control-plane.sh status   show what runs and whether the API server is ready
#   e2e/scripts/control-plane.sh env      print the exports (KUBECONFIG, PATH with kubectl and helm)
#   e2e/scripts/control-plane.sh reset    stop and delete the cluster's data, certificates and logs
#   e2e/scripts/control-plane.sh kubectl ARGS...   run the built kubectl against the cluster
#
# The optional real node (root; see real-node.sh): a kubelet, kube-proxy and containerd beside the kwok nodes.
#   TIKETI_K8S_REAL_NODE=1 e2e/scripts/control-plane.sh start    start it too (`stop` always stops it)
#   e2e/scripts/control-plane.sh build-node | node-start | node-stop
#   e2e/scripts/control-plane.sh node-import TAR...              import image tarballs into the node's containerd
#   e2e/scripts/control-plane.sh forward NAME PORT HOST:PORT     expose a loopback service at the node IP to pods
#   e2e/scripts/control-plane.sh forward-stop|forward-start NAME cut it (every connection) / bring it back
#
# Use it as:  eval "$(e2e/scripts/control-plane.sh start)"
# Progress goes to stderr; only the export lines go to stdout.
# See e2e/README-control-plane.md for ports, times and limits.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

# ---- versions ---------------------------------------------------------------------------------------------------
# Pinned, not "latest": the cache is keyed by these, so CI runs stay reproducible and warm.
# k8s v1.34.10 is the newest 1.34 patch the Go proxy serves *with a checksum-database entry* here (v1.34.11/12 are
# listed but sum.golang.org has no record of them, so `go` refuses them); the Rust side uses k8s-openapi v1_34.
k8s_version=${TIKETI_K8S_VERSION:-v1.34.10}
# kubeadm pairs Kubernetes 1.34 with etcd 3.6.x; 3.6.16 is the newest 3.6 patch on the proxy.
etcd_version=${TIKETI_ETCD_VERSION:-v3.6.16}
# kwok only uses stable core APIs (nodes, pods, leases); v0.8.0 is its newest release and builds with Go 1.26.
kwok_version=${TIKETI_KWOK_VERSION:-v0.8.0}
# Helm 3.19 is the Helm line built against client-go 0.34, i.e. the one that supports Kubernetes 1.34.
helm_version=${TIKETI_HELM_VERSION:-v3.19.5}
# Bump when the build recipe (flags, layout) changes, so old cache entries are not reused.
recipe_rev=1

# ---- locations and ports ----------------------------------------------------------------------------------------
cache=${TIKETI_K8S_CACHE:-$HOME/.cache/tiketi-k8s}
run=${TIKETI_K8S_RUN:-$repo_root/.dev/k8s}
# All below 32768 so they never meet the kernel's ephemeral (client) port range, and away from the usual defaults
# (6443, 2379/2380, 10257, 10259) so a real cluster on the same machine is never touched.
api_port=${TIKETI_K8S_API_PORT:-26443}
etcd_port=${TIKETI_K8S_ETCD_PORT:-22379}
etcd_peer_port=${TIKETI_K8S_ETCD_PEER_PORT:-22380}
kcm_port=${TIKETI_K8S_KCM_PORT:-20257}
sched_port=${TIKETI_K8S_SCHEDULER_PORT:-20259}
kwok_port=${TIKETI_K8S_KWOK_PORT:-20247}
node_count=${TIKETI_K8S_NODES:-2}
start_timeout=${TIKETI_K8S_START_TIMEOUT:-120}
# Cluster-internal ranges. Nothing is routed to them: with kwok there are no real pods or kube-proxy, the
# addresses only appear in object status. Don't send traffic to them.
service_cidr=10.96.0.0/16
pod_cidr=10.244.0.1/16

minor=${k8s_version#v1.}
minor=${minor%%.*}

k8s_dir="$cache/kubernetes-$k8s_version-r$recipe_rev"
etcd_dir="$cache/etcd-$etcd_version-r$recipe_rev"
kwok_dir="$cache/kwok-$kwok_version-r$recipe_rev"
helm_dir="$cache/helm-$helm_version-r$recipe_rev"
node_dir="$cache/kubernetes-node-$k8s_version-r$recipe_rev"
# One directory of symlinks per version set, so PATH needs a single entry.
stack_bin="$cache/stacks/k8s-$k8s_version-etcd-$etcd_version-kwok-$kwok_version-helm-$helm_version-r$recipe_rev/bin"

pki="$run/pki"
kubeconfig="$run/kubeconfig"

launch_env=()

# Seconds since the script started, so slow phases show up in CI logs.
log() { printf '[control-plane +%ss] %s\n' "$SECONDS" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ================================================================================================================
# build
# ================================================================================================================

# The Go settings every build uses. GOTOOLCHAIN=local: never download another toolchain behind our back.
# -mod=mod: the throw-away build modules below are resolved on the fly. CGO off: static binaries, no C toolchain.
go_env() {
  command -v go >/dev/null || die "Go is not installed (needed once to build the control plane; then it is cached)"
  export GOTOOLCHAIN=${TIKETI_GOTOOLCHAIN:-local}
  export GOFLAGS="-mod=mod -buildvcs=false"
  export GOWORK=off
  export CGO_ENABLED=0
}

is_built() { [ -f "$1/.complete" ]; }

# new_build_module DIR: an empty Go module in DIR, used only to pin what we build. It lives in the cache so the
# go.mod/go.sum of the last build can be read when something goes wrong.
new_build_module() {
  rm -rf "$1"
  mkdir -p "$1"
  (cd "$1" && go mod init tiketi.local/build >/dev/null 2>&1)
}

# finish_component DIR TMPBIN: move freshly built binaries into place and mark the entry complete. The stamp is
# written last, so an interrupted build is simply redone next time.
finish_component() {
  local dir=$1 tmpbin=$2
  rm -rf "${dir:?}/bin"
  mkdir -p "$dir"
  mv "$tmpbin" "$dir/bin"
  go version >"$dir/.complete"
}

# Kubernetes cannot be `go install`ed: its go.mod requires every staging module (k8s.io/api, k8s.io/client-go, …)
# at the fake version v0.0.0 and points them at ./staging with replace directives, which only apply inside that
# module. So a local module requires k8s.io/kubernetes and replaces each staging module with its published twin
# (k8s.io/X v0.34.Y for Kubernetes v1.34.Y). The list is read from the downloaded go.mod, so it follows the version.
build_kubernetes() {
  is_built "$k8s_dir" && return 0
  log "building Kubernetes $k8s_version (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl)"
  build_k8s_commands "$k8s_dir" "$cache/src/kubernetes-$k8s_version" \
    kube-apiserver kube-controller-manager kube-scheduler kubectl
}

# build_k8s_commands DIR WORKSPACE CMD...: build k8s.io/kubernetes/cmd/CMD... into DIR/bin.
build_k8s_commands() {
  local dir=$1 ws=$2
  shift 2
  local staging_version="v0.${k8s_version#v1.}"
  new_build_module "$ws"
  (
    cd "$ws"
    local upstream_mod build_date cmd
    upstream_mod=$(go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$k8s_version")
    [ -f "$upstream_mod" ] || die "could not download the go.mod of k8s.io/kubernetes@$k8s_version"
    build_date=$(go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "k8s.io/kubernetes@$k8s_version")
    {
      echo "require k8s.io/kubernetes $k8s_version"
      echo "replace ("
      awk -v v="$staging_version" '$2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s %s\n", $1, $1, v }' "$upstream_mod"
      echo ")"
      echo "tool ("
      printf '\tk8s.io/kubernetes/cmd/%s\n' "$@"
      echo ")"
    } >>go.mod
    grep -q "k8s.io/client-go => k8s.io/client-go $staging_version" go.mod ||
      die "no staging replace directives found in $upstream_mod"
    go mod tidy
    # Without these the binaries call themselves v0.0.0-master and kubectl warns about version skew.
    # kubectl reads client-go's copy, the servers read component-base's.
    local ldflags="-s -w" pkg pkgs=()
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
    done
    for cmd in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
    rm -rf bin.tmp
    go build -trimpath -ldflags "$ldflags" -o bin.tmp/ "${pkgs[@]}"
    if [ "${K8S_WITH_PAUSE:-0}" = 1 ]; then
      # The pause (sandbox) image's binary: Kubernetes' own pause.c, static (no registry here to pull one from).
      local pause_c
      pause_c=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
      [ -f "$pause_c" ] || die "pause.c not found at $pause_c"
      command -v gcc >/dev/null || die "gcc is needed to build the pause binary (apt-get install gcc libc6-dev)"
      gcc -Os -static -DVERSION=v3.10-tiketi -o bin.tmp/pause "$pause_c"
      strip bin.tmp/pause
    fi
    finish_component "$dir" "$ws/bin.tmp"
  )
}

# The node components for the optional real node (TIKETI_K8S_REAL_NODE=1): kubelet, kube-proxy and the pause
# binary. Their own cache entry, so a control-plane-only machine never builds them (about 3 min cold: the
# kubernetes sources are already in the module cache). The kubelet builds without cgo, as the release binaries are.
build_node_components() {
  is_built "$node_dir" && return 0
  log "building Kubernetes $k8s_version node components (kubelet, kube-proxy, pause)"
  K8S_WITH_PAUSE=1 build_k8s_commands "$node_dir" "$cache/src/kubernetes-node-$k8s_version" kubelet kube-proxy
}

# etcd's own server/go.mod also has replace directives (to ../api etc.), so again a local module; it needs no
# replaces of its own because etcd's requirements name real published versions.
build_etcd() {
  is_built "$etcd_dir" && return 0
  log "building etcd $etcd_version"
  local ws="$cache/src/etcd-$etcd_version"
  new_build_module "$ws"
  (
    cd "$ws"
    printf 'require go.etcd.io/etcd/server/v3 %s\ntool go.etcd.io/etcd/server/v3\n' "$etcd_version" >>go.mod
    go mod tidy
    rm -rf bin.tmp
    # The main package is go.etcd.io/etcd/server/v3 (server/main.go); name the output or Go would call it "server".
    go build -trimpath -ldflags "-s -w" -o bin.tmp/etcd go.etcd.io/etcd/server/v3
    finish_component "$etcd_dir" "$ws/bin.tmp"
  )
}

# kwok simulates kubelets. The bare `kwok` binary ships no behaviour of its own: the "stages" that make nodes Ready
# and pods Running/Ready live as YAML in the module (kwokctl embeds the same files). We copy the ones kwokctl uses
# by default (node-fast + heartbeat with leases, pod-fast) next to the binary, from the very same version.
build_kwok() {
  is_built "$kwok_dir" && return 0
  log "building kwok $kwok_version"
  local ws="$cache/src/kwok-$kwok_version"
  new_build_module "$ws"
  (
    cd "$ws"
    printf 'require sigs.k8s.io/kwok %s\ntool sigs.k8s.io/kwok/cmd/kwok\n' "$kwok_version" >>go.mod
    go mod tidy
    rm -rf bin.tmp
    go build -trimpath -ldflags "-s -w" -o bin.tmp/kwok sigs.k8s.io/kwok/cmd/kwok
    local src stage first=1
    src=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
    for stage in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      [ -f "$src/$stage" ] || die "kwok stage $stage not found in $src"
      [ "$first" = 1 ] || echo "---"
      first=0
      cat "$src/$stage"
    done >bin.tmp/kwok-stages.yaml
    finish_component "$kwok_dir" "$ws/bin.tmp"
  )
}

# Helm has no replace directives, but building it in a local module keeps the recipe uniform. Its version and the
# Kubernetes version it assumes for `helm template` (.Capabilities.KubeVersion) are link-time variables.
build_helm() {
  is_built "$helm_dir" && return 0
  log "building helm $helm_version"
  local ws="$cache/src/helm-$helm_version"
  new_build_module "$ws"
  (
    cd "$ws"
    printf 'require helm.sh/helm/v3 %s\ntool helm.sh/helm/v3/cmd/helm\n' "$helm_version" >>go.mod
    go mod tidy
    local client_go helm_k8s_minor ldflags
    client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go) # v0.34.x -> Kubernetes 1.34
    helm_k8s_minor=${client_go#v0.}
    helm_k8s_minor=${helm_k8s_minor%%.*}
    local pkg
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_k8s_minor"
    done
    rm -rf bin.tmp
    go build -trimpath -ldflags "$ldflags" -o bin.tmp/helm helm.sh/helm/v3/cmd/helm
    finish_component "$helm_dir" "$ws/bin.tmp"
  )
}

link_stack() {
  mkdir -p "$stack_bin"
  local f
  for f in "$k8s_dir"/bin/* "$etcd_dir"/bin/* "$kwok_dir"/bin/* "$helm_dir"/bin/*; do
    ln -sfn "$f" "$stack_bin/$(basename "$f")"
  done
}

all_built() { is_built "$k8s_dir" && is_built "$etcd_dir" && is_built "$kwok_dir" && is_built "$helm_dir"; }

cmd_build() {
  mkdir -p "$cache"
  if all_built; then
    link_stack
    log "cached: $stack_bin"
    return 0
  fi
  go_env
  # Two builds at once (two CI steps, two terminals) would trample each other's work directories.
  exec 9>"$cache/.build.lock"
  if command -v flock >/dev/null; then flock 9; fi
  local t0=$SECONDS step
  for step in etcd kwok helm kubernetes; do
    local t1=$SECONDS
    "build_$step"
    log "$step done ($((SECONDS - t1)) s)"
  done
  link_stack
  log "built in $((SECONDS - t0)) s: $stack_bin"
  exec 9>&- # release the lock: processes started later must not inherit it
}

cmd_build_node() {
  mkdir -p "$cache"
  is_built "$node_dir" && return 0
  go_env
  exec 9>"$cache/.build.lock"
  if command -v flock >/dev/null; then flock 9; fi
  local t0=$SECONDS
  build_node_components
  log "node components built in $((SECONDS - t0)) s: $node_dir/bin"
  exec 9>&-
}

# ================================================================================================================
# certificates and kubeconfigs
# ================================================================================================================

# new_ca NAME CN: a self-signed CA.
new_ca() {
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.crt" -days 3650 -sha256 \
    -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}

# sign NAME SUBJECT EXTENSIONS [CA]: a key and a certificate signed by CA (default: the cluster CA "ca").
sign() {
  local name=$1 subject=$2 ext=$3 ca=${4:-ca}
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subject" 2>/dev/null
  printf '%s\n' "$ext" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

# Generated once per run directory and kept across stop/start, so kubeconfigs handed out stay valid. The stamp
# carries a revision: bump it when the set of certificates changes and old run directories get a fresh PKI.
pki_rev=2
ensure_pki() {
  [ -f "$pki/.complete-r$pki_rev" ] && return 0
  # The API server reloads certificate files while running; swapping the PKI under live processes half-works.
  if running etcd etcd || running kube-apiserver kube-apiserver; then
    die "the certificates in $pki are from an older version of this script; run '$0 stop' first"
  fi
  command -v openssl >/dev/null || die "openssl is needed to create the cluster certificates (apt-get install openssl)"
  log "creating certificates in $pki"
  rm -rf "$pki"
  mkdir -p "$pki"
  chmod 700 "$pki"
  new_ca ca tiketi-e2e-ca
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  local server_san="DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  server_san+=",DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:${service_cidr%.0/*}.1"
  sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$server_san"
  # kwok serves the fake kubelet API (logs, exec …) on loopback; the API server dials it over TLS.
  sign kwok-serving "/CN=kwok" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
  # Client identities. system:masters bypasses RBAC: only for the admin and kwok (which impersonates and patches
  # any node or pod). The controller manager and scheduler get the users their bootstrap RBAC roles are bound to,
  # so RBAC is really exercised for them as on a real cluster.
  sign admin "/O=system:masters/CN=tiketi-e2e-admin" "$client"
  sign kwok "/O=system:masters/CN=kwok-controller" "$client"
  sign controller-manager "/CN=system:kube-controller-manager" "$client"
  sign scheduler "/CN=system:kube-scheduler" "$client"
  sign apiserver-kubelet-client "/O=kube-apiserver-kubelet-client/CN=kube-apiserver-kubelet-client" "$client"
  # ServiceAccount token signing key pair.
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  # Front proxy (aggregation layer) CA and the client cert the API server uses towards aggregated APIs. Without
  # it aggregated APIs (e.g. metrics-server) can't authenticate requests, and every component logs, forever,
  # "missing content for CA bundle requestheader-client-ca-file".
  new_ca front-proxy-ca tiketi-e2e-front-proxy-ca
  sign front-proxy-client "/CN=front-proxy-client" "$client" front-proxy-ca
  touch "$pki/.complete-r$pki_rev"
}

# write_kubeconfig FILE CERTNAME: credentials embedded, so the file can be copied anywhere (e.g. into a test pod).
write_kubeconfig() {
  local file=$1 name=$2
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tiketi-e2e
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$name.crt")
    client-key-data: $(base64 -w0 <"$pki/$name.key")
contexts:
- name: tiketi-e2e
  context:
    cluster: tiketi-e2e
    user: $name
current-context: tiketi-e2e
EOF
  chmod 600 "$file.tmp"
  mv "$file.tmp" "$file"
}

# ================================================================================================================
# processes
# ================================================================================================================

pid_of() { cat "$run/pids/$1.pid" 2>/dev/null || true; }

# bin_path BINARY: a name from the stack, or an absolute path (the real node's host binaries: containerd, socat).
bin_path() {
  case "$1" in
    /*) echo "$1" ;;
    *) echo "$stack_bin/$1" ;;
  esac
}

# alive PID: the process exists and is not a zombie. Our daemons are reparented to PID 1 once `start` returns;
# in some sandboxes PID 1 reaps late, and a zombie still answers `kill -0`.
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# running NAME: the recorded pid is alive and is still our binary (guards against a recycled pid).
running() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$(bin_path "$2")"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# launch NAME BINARY PORT ARGS...: start BINARY from the stack in its own session (setsid), logging to
# logs/NAME.log, with the variables in the array launch_env added to its environment. PORT must be free.
# Its own session, so a Ctrl-C in the caller's terminal or the end of a CI step does not take the control plane
# down with it; `stop` signals that whole process group. The pid is written by the process itself just before
# exec, so it is right even if setsid had to fork.
launch() {
  local name=$1 binary=$2 port=$3
  shift 3
  if running "$name" "$binary"; then
    log "$name already running (pid $(pid_of "$name"))"
    return 0
  fi
  if [ "$port" != - ] && port_in_use "$port"; then
    die "port $port (for $name) is taken by another process; pick other ports with the TIKETI_K8S_*_PORT variables"
  fi
  local logfile="$run/logs/$name.log" pidfile="$run/pids/$name.pid"
  [ -f "$logfile" ] && mv -f "$logfile" "$logfile.1"
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
  setsid env "${launch_env[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$(bin_path "$binary")" "$@" \
    >"$logfile" 2>&1 </dev/null &
  local i
  for i in $(seq 50); do
    [ -s "$pidfile" ] && break
    sleep 0.1
  done
  log "started $name (pid $(pid_of "$name"), log $logfile)"
}

# wait_for WHAT NAME BINARY COMMAND...: retry COMMAND until it succeeds; fail early if the process died.
wait_for() {
  local what=$1 name=$2 binary=$3
  shift 3
  local deadline=$((SECONDS + start_timeout))
  until "$@" >/dev/null 2>&1; do
    if ! running "$name" "$binary"; then
      tail -n 30 "$run/logs/$name.log" >&2 || true
      die "$name exited while waiting for $what (log: $run/logs/$name.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$run/logs/$name.log" >&2 || true
      die "timed out after ${start_timeout}s waiting for $what (log: $run/logs/$name.log)"
    fi
    sleep 0.5
  done
}

kc() { "$stack_bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

start_etcd() {
  # --unsafe-no-fsync: a throw-away test cluster; skipping fsync makes every API write much faster on CI disks.
  launch etcd etcd "$etcd_port" \
    --name=tiketi-e2e --data-dir="$run/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="tiketi-e2e=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync=true --log-level=warn
  wait_for "etcd on port $etcd_port" etcd etcd port_in_use "$etcd_port"
}

start_apiserver() {
  # --endpoint-reconciler-type=none: the "kubernetes" Service would get the endpoint 127.0.0.1, which Endpoints
  # validation rejects (loopback), and the reconciler would log that error forever. No pod here needs that Service.
  launch kube-apiserver kube-apiserver "$api_port" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" --proxy-client-key-file="$pki/front-proxy-client.key" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range="$service_cidr" \
    --endpoint-reconciler-type=none \
    --allow-privileged=true --profiling=false
  wait_for "the API server (/readyz)" kube-apiserver kube-apiserver kc get --raw=/readyz
  log "API server ready"
}

start_controller_manager() {
  # --use-service-account-credentials: every controller acts as its own ServiceAccount, as in kubeadm clusters.
  # --root-ca-file: publishes kube-root-ca.crt into each namespace; --cluster-signing-*: CSRs get signed.
  launch kube-controller-manager kube-controller-manager "$kcm_port" \
    --kubeconfig="$run/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$run/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$run/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" --cert-dir="$run/serving/controller-manager" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --service-cluster-ip-range="$service_cidr" --profiling=false
}

start_scheduler() {
  launch kube-scheduler kube-scheduler "$sched_port" \
    --kubeconfig="$run/scheduler.kubeconfig" \
    --authentication-kubeconfig="$run/scheduler.kubeconfig" \
    --authorization-kubeconfig="$run/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$sched_port" --cert-dir="$run/serving/scheduler" \
    --leader-elect=false --profiling=false
}

# kwok holds each node's Lease under a random per-process identity and only takes over a Lease held by someone
# else once it expires (40 s after the last renewal); it also first tries to *create* the Lease and backs off for
# 10 s when it already exists. Pods on a node stay Pending until kwok holds that node's Lease. After a stop the
# old holder is dead, so delete its Leases just before kwok starts; kwok recreates them within a second.
release_node_leases() {
  running kwok kwok && return 0
  local i leases=()
  for ((i = 0; i < node_count; i++)); do leases+=("kwok-node-$i"); done
  kc -n kube-node-lease delete lease "${leases[@]}" --ignore-not-found >/dev/null 2>&1 || true
}

start_kwok() {
  release_node_leases
  # HOME is pointed into the run dir because kwok always loads ~/.kwok/kwok.yaml if it exists; a developer's own
  # kwok config must not change the test cluster. Only nodes annotated kwok.x-k8s.io/node=fake are managed.
  # Nodes report 127.0.0.1 and kwok's port, so anything the API server proxies to a "kubelet" stays on loopback.
  launch_env=(HOME="$run/kwok-home")
  launch kwok kwok "$kwok_port" \
    --kubeconfig="$run/kwok.kubeconfig" --config="$stack_bin/kwok-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 --node-port="$kwok_port" --cidr="$pod_cidr" --node-lease-duration-seconds=40 \
    --server-address="127.0.0.1:$kwok_port" \
    --tls-cert-file="$pki/kwok-serving.crt" --tls-private-key-file="$pki/kwok-serving.key"
  launch_env=()
}

# Node objects for kwok to drive. No taint: the operator under test creates ordinary Deployments, and nothing
# will actually run on these nodes anyway.
apply_nodes() {
  local i
  for ((i = 0; i < node_count; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/agent: ""
EOF
  done | kc apply -f - >/dev/null
}

nodes_ready() {
  local ready
  ready=$(kc get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{range .status.conditions[?(@.type=="Ready")]}{.status}{"\n"}{end}{end}' |
    grep -c '^True$' || true)
  [ "$ready" -ge "$node_count" ]
}

# The processes being up and /readyz saying ok is not enough: on a warm start the controller manager and the
# scheduler need a few seconds to sync their caches, and a test that starts right away would wait on them. So
# `start` returns only after a throw-away Deployment went the whole way (Deployment -> ReplicaSet -> Pod ->
# scheduled -> Ready via kwok). Each start uses a new namespace, deleted in the background afterwards.
probe_ns=
create_probe() {
  probe_ns=tiketi-cp-probe-$(date +%s)-$$
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $probe_ns
  labels: {tiketi.dev/control-plane-probe: "true"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: probe, namespace: $probe_ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: probe}}
  template:
    metadata: {labels: {app: probe}}
    spec:
      containers: [{name: probe, image: registry.k8s.io/pause:3.9}]
EOF
}
probe_ready() { [ "$(kc -n "$probe_ns" get deploy probe -o jsonpath='{.status.readyReplicas}')" = 1 ]; }

print_env() {
  printf 'export KUBECONFIG=%q\n' "$kubeconfig"
  # shellcheck disable=SC2016 # $PATH is meant to be expanded by the shell that evals this
  printf 'export PATH=%q:"$PATH"\n' "$stack_bin"
  if [ -f "$run/node/kubelet.yaml" ]; then
    printf 'export TIKETI_K8S_NODE_NAME=%q TIKETI_K8S_NODE_IP=%q TIKETI_K8S_NODE_POD_GATEWAY=%q E2E_KUBELET_ROOT=%q\n' \
      "$node_name" "$node_ip" "$node_pod_gateway" "$node_root"
  fi
}

cmd_start() {
  cmd_build
  mkdir -p "$run/pids" "$run/logs" "$run/serving" "$run/kwok-home"
  ensure_pki
  # Rewritten each time (same content while the PKI is unchanged), so they always match the certificates.
  write_kubeconfig "$kubeconfig" admin
  write_kubeconfig "$run/controller-manager.kubeconfig" controller-manager
  write_kubeconfig "$run/scheduler.kubeconfig" scheduler
  write_kubeconfig "$run/kwok.kubeconfig" kwok
  local t0=$SECONDS
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  start_kwok
  apply_nodes
  wait_for "$node_count Ready kwok nodes" kwok kwok nodes_ready
  log "$node_count nodes ready"
  # Pods can only be created once the controller manager has made the namespace's "default" ServiceAccount.
  wait_for "the default ServiceAccount" kube-controller-manager kube-controller-manager \
    kc get serviceaccount default --namespace default
  create_probe
  wait_for "a probe Deployment to become ready" kube-controller-manager kube-controller-manager probe_ready
  kc delete namespace "$probe_ns" --wait=false >/dev/null
  log "ready in $((SECONDS - t0)) s: https://127.0.0.1:$api_port ($k8s_version, $node_count kwok nodes)"
  if [ "${TIKETI_K8S_REAL_NODE:-0}" = 1 ]; then cmd_node_start; fi
  print_env
}

# stop_one NAME BINARY: SIGTERM the process group, give it time to shut down cleanly, then SIGKILL.
stop_one() {
  local name=$1 binary=$2 pid i
  pid=$(pid_of "$name")
  if [ -n "$pid" ] && running "$name" "$binary"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name did not exit after 10 s, killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name"
  fi
  rm -f "$run/pids/$name.pid"
}

cmd_stop() {
  # Reverse start order: the API server last-but-one, so the others don't spin on connection errors.
  cmd_node_stop
  stop_one kwok kwok
  stop_one kube-scheduler kube-scheduler
  stop_one kube-controller-manager kube-controller-manager
  stop_one kube-apiserver kube-apiserver
  stop_one etcd etcd
}

cmd_status() {
  local name binary rc=0
  for name in etcd:etcd kube-apiserver:kube-apiserver kube-controller-manager:kube-controller-manager \
    kube-scheduler:kube-scheduler kwok:kwok; do
    binary=${name#*:}
    name=${name%%:*}
    if running "$name" "$binary"; then
      printf '%-24s running (pid %s)\n' "$name" "$(pid_of "$name")"
    else
      printf '%-24s stopped\n' "$name"
      rc=1
    fi
  done
  [ -d "$run/node" ] && node_status
  if [ -x "$stack_bin/kubectl" ] && [ -f "$kubeconfig" ] && kc get --raw=/readyz >/dev/null 2>&1; then
    printf '%-24s ready at https://127.0.0.1:%s\n' "api" "$api_port"
    kc get nodes -l type=kwok 2>/dev/null || true
  else
    printf '%-24s not ready\n' "api"
    rc=1
  fi
  return "$rc"
}

cmd_reset() {
  cmd_stop
  # Only ever delete the run directory this script owns (guard against an empty or odd TIKETI_K8S_RUN).
  case "$run" in
    "" | / | "$HOME" | "$repo_root") die "refusing to delete run directory '$run'" ;;
  esac
  rm -rf "$run"
  log "deleted $run"
}

# shellcheck source=e2e/scripts/real-node.sh
. "$script_dir/real-node.sh"

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case "$cmd" in
    build) cmd_build ;;
    build-node) cmd_build_node ;;
    node-start) cmd_node_start ;;
    node-stop) cmd_node_stop ;;
    node-import) node_import "$@" ;;
    forward) node_forward "$@" ;;
    forward-stop) node_forward_stop "$@" ;;
    forward-start) node_forward_start "$@" ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) print_env ;;
    reset) cmd_reset ;;
    kubectl) kc "$@" ;;
    *)
      sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
}

main "$@"
