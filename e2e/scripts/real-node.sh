# shellcheck shell=bash
# The optional real node of the local control plane: sourced by control-plane.sh (TIKETI_K8S_REAL_NODE=1 start,
# or `control-plane.sh node-start`), not run on its own. Needs root (network namespaces, iptables, cgroups).
#
# What it runs, beside the kwok nodes:
#   - a containerd 1.6 instance of its own (Debian's containerd; own root, state and socket) with the CRI plugin;
#   - the kubelet (v1.34, built like the control plane) registered as node "tiketi-node-0", label
#     tiketi.dev/node=real, taint tiketi.dev/real-node=true:NoSchedule (only pods that tolerate it land there,
#     so the kwok-based tests keep their fake nodes);
#   - kube-proxy in iptables mode (ClusterIP and NodePort Services work from the host and from pods);
#   - socat forwarders from the node address to loopback-only services (the API server; more with `forward`).
# Network: the node address lives on a bridge created here (the kubelet refuses a loopback node IP); pods get
# addresses from the CNI bridge plugin on a second bridge; nothing is routed off this machine.
# `stop` undoes everything: pods' containers, processes, mounts, bridges, iptables rules (kube-proxy --cleanup and
# ours, tagged with a comment), and the sysctls the kubelet and kube-proxy change (saved at start).
# shellcheck disable=SC2154 # run, cache, pki, stack_bin, api_port, k8s_version … come from control-plane.sh

node_name=${TIKETI_K8S_NODE_NAME:-tiketi-node-0}
node_ip=${TIKETI_K8S_NODE_IP:-10.213.0.1}
node_bridge=${TIKETI_K8S_NODE_BRIDGE:-tkt-node0}
node_pod_cidr=${TIKETI_K8S_NODE_POD_CIDR:-10.213.1.0/24}
node_pod_gateway=${node_pod_cidr%.0/*}.1
pod_bridge=${TIKETI_K8S_POD_BRIDGE:-tkt-pods0}
kubelet_port=${TIKETI_K8S_KUBELET_PORT:-20250}
kubelet_healthz_port=${TIKETI_K8S_KUBELET_HEALTHZ_PORT:-20248}
proxy_metrics_port=${TIKETI_K8S_PROXY_METRICS_PORT:-20249}
proxy_healthz_port=${TIKETI_K8S_PROXY_HEALTHZ_PORT:-20256}
# Sockets must stay short (108 bytes), and containerd's state and the kubelet's pods hold mounts: keep them out of
# the repository, under /run and /var/lib, one set per run directory name.
node_state=${TIKETI_K8S_NODE_STATE:-/run/tiketi-k8s-node}
node_root=${TIKETI_K8S_NODE_ROOT:-/var/lib/tiketi-k8s-node}
containerd_sock=$node_state/containerd/containerd.sock
pause_image=tiketi.local/pause:3.10
cni_bin=${TIKETI_K8S_CNI_BIN:-/usr/lib/cni}
iptables_tag=tiketi-e2e-node
# The VM-wide sysctls the kubelet (kernel.panic*, vm.overcommit_memory) and our forwarding set; restored at stop.
saved_sysctls=(kernel.panic kernel.panic_on_oops vm.overcommit_memory net.ipv4.ip_forward
  net.ipv4.conf.all.route_localnet net.netfilter.nf_conntrack_max)

node_bin() { echo "$node_dir/bin/$1"; }

node_prereqs() {
  [ "$(id -u)" = 0 ] || die "the real node needs root (bridges, iptables, containerd, cgroups)"
  local missing=() cmd
  for cmd in containerd:containerd runc:runc iptables:iptables socat:socat conntrack:conntrack gcc:gcc; do
    command -v "${cmd%%:*}" >/dev/null || missing+=("${cmd#*:}")
  done
  [ -x "$cni_bin/bridge" ] || missing+=(containernetworking-plugins)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (apt)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

# pause image: a docker-archive tarball made by hand (one layer with /pause), so the node needs no Docker.
pause_tar() {
  local out=$node_dir/pause.tar
  [ -s "$out" ] && { echo "$out"; return 0; }
  local tmp layer_sha config_sha
  tmp=$(mktemp -d)
  mkdir -p "$tmp/root"
  cp "$(node_bin pause)" "$tmp/root/pause"
  tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$tmp/root" -cf "$tmp/layer.tar" pause
  layer_sha=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
  mkdir -p "$tmp/img/$layer_sha"
  mv "$tmp/layer.tar" "$tmp/img/$layer_sha/layer.tar"
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$layer_sha" >"$tmp/config.json"
  config_sha=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)
  mv "$tmp/config.json" "$tmp/img/$config_sha.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$config_sha" "$pause_image" "$layer_sha" \
    >"$tmp/img/manifest.json"
  tar -C "$tmp/img" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
  echo "$out"
}

save_sysctls() {
  local f=$run/node/sysctls.saved s v
  [ -f "$f" ] && return 0 # saved by an earlier start that was not stopped: those are the originals
  : >"$f.tmp"
  for s in "${saved_sysctls[@]}"; do
    v=$(sysctl -n "$s" 2>/dev/null) || continue
    printf '%s=%s\n' "$s" "$v" >>"$f.tmp"
  done
  mv "$f.tmp" "$f"
}

restore_sysctls() {
  local f=$run/node/sysctls.saved line
  [ -f "$f" ] || return 0
  while IFS= read -r line; do
    sysctl -qw "$line" >/dev/null 2>&1 || log "could not restore $line"
  done <"$f"
  rm -f "$f"
  log "restored sysctls"
}

iptables_rules() {
  # FORWARD: a Docker daemon on the host sets the policy to DROP; pods must reach each other and Services.
  printf '%s\n' "FORWARD -i $pod_bridge -j ACCEPT" "FORWARD -o $pod_bridge -j ACCEPT"
}

setup_network() {
  if ! ip link show "$node_bridge" >/dev/null 2>&1; then
    ip link add "$node_bridge" type bridge
  fi
  ip addr replace "$node_ip/24" dev "$node_bridge"
  ip link set "$node_bridge" up
  sysctl -qw net.ipv4.ip_forward=1
  local rule
  while IFS= read -r rule; do
    # shellcheck disable=SC2086 # a rule is words
    iptables -C $rule -m comment --comment "$iptables_tag" 2>/dev/null ||
      iptables -I $rule -m comment --comment "$iptables_tag"
  done < <(iptables_rules)
  mkdir -p "$run/node/cni"
  cat >"$run/node/cni/10-tiketi.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "tiketi",
  "plugins": [
    {"type": "bridge", "bridge": "$pod_bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$node_pod_cidr", "gateway": "$node_pod_gateway"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$node_root/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

teardown_network() {
  local rule
  while IFS= read -r rule; do
    # shellcheck disable=SC2086
    while iptables -D $rule -m comment --comment "$iptables_tag" 2>/dev/null; do :; done
  done < <(iptables_rules)
  local br
  for br in "$pod_bridge" "$node_bridge"; do
    if ip link show "$br" >/dev/null 2>&1; then
      ip link del "$br" && log "deleted bridge $br"
    fi
  done
  rm -rf "$node_root/cni-ipam"
}

write_node_configs() {
  mkdir -p "$run/node" "$node_state" "$node_root"
  [ -f "$pki/kubelet.crt" ] || sign kubelet "/O=system:nodes/CN=system:node:$node_name" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  # The kubelet's serving certificate (logs, exec, port-forward through the API server).
  [ -f "$pki/kubelet-serving.crt" ] || sign kubelet-serving "/CN=$node_name" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$node_ip,DNS:$node_name"
  [ -f "$pki/kube-proxy.crt" ] || sign kube-proxy "/CN=system:kube-proxy" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  write_kubeconfig "$run/node/kubelet.kubeconfig" kubelet
  write_kubeconfig "$run/node/kube-proxy.kubeconfig" kube-proxy
  cat >"$run/node/containerd.toml" <<EOF
version = 2
root = "$node_root/containerd"
state = "$node_state/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$containerd_sock"
[ttrpc]
  address = "$node_state/containerd/containerd.sock.ttrpc"
[debug]
  address = "$node_state/containerd/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$node_root/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  # Without CAP_SYS_RESOURCE (this VM) runc cannot lower a sandbox's oom_score_adj below its parent's.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$run/node/cni"
EOF
  cat >"$run/node/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz_port
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$containerd_sock
cgroupDriver: cgroupfs
# This VM has cgroup v1 and no swap accounting to speak of: accept both.
failCgroupV1: false
failSwapOn: false
registerWithTaints:
- {key: tiketi.dev/real-node, value: "true", effect: NoSchedule}
# The disk is shared with everything else on the machine: never evict pods or GC the imported images (they cannot
# be pulled again: imagePullPolicy Never).
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 60
serializeImagePulls: false
resolvConf: /etc/resolv.conf
nodeStatusUpdateFrequency: 5s
EOF
  cat >"$run/node/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: $node_name
clientConnection: {kubeconfig: $run/node/kube-proxy.kubeconfig}
clusterCIDR: $node_pod_cidr
metricsBindAddress: 127.0.0.1:$proxy_metrics_port
healthzBindAddress: 127.0.0.1:$proxy_healthz_port
nodePortAddresses: ["$node_ip/32"]
# Leave the host's conntrack sysctls as they are.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOF
}

# ctr against our containerd.
node_ctr() { ctr --address "$containerd_sock" --namespace k8s.io "$@"; }

# node_import TAR...: import image tarballs (docker save / OCI) into the node's containerd.
node_import() {
  local tar
  for tar in "$@"; do
    node_ctr images import --no-unpack=false "$tar" >/dev/null 2>&1 || node_ctr images import "$tar" >/dev/null ||
      die "could not import $tar"
    log "imported $(basename "$tar")"
  done
}

node_ready() {
  [ "$(kc get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# forward NAME PORT TARGET: a socat from the node address (reachable from pods) to TARGET (e.g. 127.0.0.1:55432).
# Its arguments are kept, so `forward-stop NAME` / `forward-start NAME` can make an outage and end it (e2e tests of
# PostgreSQL and Redis blips as the pods see them: stopping the forwarder's process group cuts every connection).
node_forward() {
  local name=$1 port=$2 target=$3
  mkdir -p "$run/node"
  printf '%s %s\n' "$port" "$target" >"$run/node/fwd-$name.args"
  launch "fwd-$name" /usr/bin/socat "-" \
    "TCP-LISTEN:$port,bind=$node_ip,reuseaddr,fork" "TCP:$target"
}

node_forward_stop() { stop_one "fwd-$1" /usr/bin/socat; }

node_forward_start() {
  local port target
  read -r port target <"$run/node/fwd-$1.args" || die "no forwarder named $1"
  node_forward "$1" "$port" "$target"
}

cmd_node_start() {
  node_prereqs
  cmd_build_node
  running kube-apiserver kube-apiserver || die "start the control plane first ($0 start)"
  local t0=$SECONDS
  mkdir -p "$run/node"
  save_sysctls
  write_node_configs
  setup_network
  launch containerd /usr/bin/containerd "-" --config "$run/node/containerd.toml"
  wait_for "containerd" containerd /usr/bin/containerd node_ctr version
  node_import "$(pause_tar)"
  # Pods reach the API server at the kubernetes Service (10.96.0.1:443): kube-proxy sends it to the node address,
  # where this forwarder hands it to the loopback-only API server. The Service's endpoints are ours to set
  # (--endpoint-reconciler-type=none).
  node_forward apiserver "$api_port" "127.0.0.1:$api_port"
  kc apply -f - >/dev/null <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes-tiketi-node
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: tiketi-control-plane}
addressType: IPv4
endpoints: [{addresses: ["$node_ip"], conditions: {ready: true}}]
ports: [{name: https, port: $api_port, protocol: TCP}]
EOF
  launch kubelet "$(node_bin kubelet)" "$kubelet_port" \
    --config="$run/node/kubelet.yaml" --kubeconfig="$run/node/kubelet.kubeconfig" \
    --root-dir="$node_root/kubelet" --hostname-override="$node_name" --node-ip="$node_ip" \
    --node-labels="type=real,tiketi.dev/node=real" --v=1
  launch kube-proxy "$(node_bin kube-proxy)" "$proxy_healthz_port" --config="$run/node/kube-proxy.yaml" --v=1
  wait_for "node $node_name Ready" kubelet "$(node_bin kubelet)" node_ready
  log "real node $node_name ready in $((SECONDS - t0)) s (node IP $node_ip, pods $node_pod_cidr)"
}

cmd_node_stop() {
  [ -d "$run/node" ] || return 0
  # The kubelet first, so it does not restart what we kill; then every container of our containerd (the pods'
  # sandboxes and containers), so their shims exit and containerd releases their mounts.
  stop_one kubelet "$(node_bin kubelet)"
  stop_one kube-proxy "$(node_bin kube-proxy)"
  local f id
  for f in "$run"/pids/fwd-*.pid; do
    [ -e "$f" ] || continue
    stop_one "$(basename "$f" .pid)" /usr/bin/socat
  done
  if running containerd /usr/bin/containerd; then
    for id in $(node_ctr tasks list -q 2>/dev/null); do node_ctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    for _ in $(seq 50); do
      [ -z "$(node_ctr tasks list 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"')" ] && break
      sleep 0.2
    done
    for id in $(node_ctr tasks list -q 2>/dev/null); do node_ctr tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(node_ctr containers list -q 2>/dev/null); do node_ctr containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  stop_one containerd /usr/bin/containerd
  # Shims outlive containerd by design; ours are the ones pointed at our socket.
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $containerd_sock" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  unmount_under "$node_root"
  unmount_under "$node_state"
  if [ -x "$(node_bin kube-proxy)" ]; then
    "$(node_bin kube-proxy)" --cleanup >/dev/null 2>&1 || true
  fi
  kubelet_iptables_cleanup
  teardown_network
  remove_pod_cgroups
  restore_sysctls
  rm -rf "$node_state" "$node_root/kubelet/pods"
  rm -rf "${run:?}/node"
  log "real node stopped"
}

unmount_under() {
  local dir=$1 m
  [ -d "$dir" ] || return 0
  # Deepest first.
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
}

# The chains the kubelet itself creates (kube-proxy --cleanup removes kube-proxy's): KUBE-FIREWALL (filter, jumped
# to from INPUT and OUTPUT), and the KUBE-KUBELET-CANARY / KUBE-IPTABLES-HINT markers.
kubelet_iptables_cleanup() {
  local ipt table chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for chain in INPUT OUTPUT; do
      while "$ipt" -t filter -D "$chain" -j KUBE-FIREWALL 2>/dev/null; do :; done
    done
    for table in filter nat mangle; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        if "$ipt" -t "$table" -F "$chain" 2>/dev/null; then "$ipt" -t "$table" -X "$chain" 2>/dev/null || true; fi
      done
    done
  done
}

# The kubelet's pod cgroups (cgroupfs driver: /kubepods in every hierarchy), deepest first.
remove_pod_cgroups() {
  local h
  for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$h" ] || continue
    find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

node_status() {
  local name
  for name in containerd kubelet kube-proxy; do
    local bin
    case "$name" in
      containerd) bin=/usr/bin/containerd ;;
      *) bin=$(node_bin "$name") ;;
    esac
    if running "$name" "$bin"; then
      printf '%-24s running (pid %s)\n' "$name" "$(pid_of "$name")"
    else
      printf '%-24s stopped\n' "$name"
    fi
  done
}
