#!/usr/bin/env bash
# The tiketi-service and tiketi-operator images, built with Docker from parts on this machine (no registry needed).
#
#   e2e/scripts/images.sh build    release-build both binaries (cargo: a no-op when fresh), lay out each image's root
#                                  filesystem (binary, glibc/libm/libgcc_s, CA certificates, nonroot user) and build
#                                  it with Dockerfile.local FROM scratch; save it as a tarball for `ctr images import`.
#                                  Cached by content: an unchanged binary reuses the image and the tarball.
#                                  Prints the image references (KEY=VALUE lines) on stdout, sizes on stderr.
#   e2e/scripts/images.sh docker   start (if needed) the Docker daemon this script uses and print DOCKER_HOST
#   e2e/scripts/images.sh stop     stop the Docker daemon this script started (images stay in its data root)
#
# The layout is the one of the published Dockerfile.service / Dockerfile.operator (distroless cc-debian12:nonroot):
# only the base differs (the host's Debian bookworm libraries instead of distroless' copy of the same packages).
# Docker: an already running daemon (DOCKER_HOST, or /var/run/docker.sock) is used; else this script starts its own
# dockerd (Debian's docker.io, installed with apt if missing) with its own data root, exec root and socket, and with
# --iptables=false --bridge=none: image builds need no network, and it must not touch the host's firewall.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
cache=${TIKETI_IMAGES_CACHE:-$HOME/.cache/tiketi-images}
docker_root=${TIKETI_DOCKER_ROOT:-/var/lib/tiketi-docker}
docker_exec=${TIKETI_DOCKER_EXEC_ROOT:-/run/tiketi-docker}
own_socket=$docker_exec/docker.sock
target_dir=${CARGO_TARGET_DIR:-$repo_root/target}
# TIKETI_IMAGES_PROFILE=debug: images of the debug binaries (quicker to get while iterating on the harness).
profile=${TIKETI_IMAGES_PROFILE:-release}
version=$(awk -F'"' '/^appVersion:/ { print $2 }' "$repo_root/charts/tiketi/Chart.yaml")

log() { printf '[images +%ss] %s\n' "$SECONDS" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

docker_ok() { DOCKER_HOST=$1 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

apt_install() {
  [ "$(id -u)" = 0 ] || die "$* missing; install them (apt-get install $*) or run as root"
  log "installing $* (apt)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Sets DOCKER_HOST to a daemon that answers.
ensure_docker() {
  if [ -n "${DOCKER_HOST:-}" ] && docker_ok "$DOCKER_HOST"; then return 0; fi
  if docker_ok unix:///var/run/docker.sock; then
    export DOCKER_HOST=unix:///var/run/docker.sock
    return 0
  fi
  export DOCKER_HOST=unix://$own_socket
  docker_ok "$DOCKER_HOST" && return 0
  command -v dockerd >/dev/null || apt_install docker.io
  command -v docker >/dev/null || apt_install docker.io
  [ "$(id -u)" = 0 ] || die "no Docker daemon answers and starting one needs root"
  mkdir -p "$docker_root" "$docker_exec"
  log "starting dockerd (data root $docker_root, socket $own_socket)"
  setsid dockerd --data-root "$docker_root" --exec-root "$docker_exec" --pidfile "$docker_exec/dockerd.pid" \
    -H "unix://$own_socket" --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    --userland-proxy=false >"$docker_exec/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 120); do
    docker_ok "$DOCKER_HOST" && return 0
    sleep 0.5
  done
  tail -n 20 "$docker_exec/dockerd.log" >&2 || true
  die "dockerd did not answer within 60 s (log: $docker_exec/dockerd.log)"
}

cmd_stop() {
  local pid
  pid=$(cat "$docker_exec/dockerd.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  log "stopped dockerd"
}

# stage_rootfs DIR BINARY: the image's files. Libraries are the binary's own (ldd), so the image matches the host
# build; the binary links only glibc, libm and libgcc_s (rustls + ring: no OpenSSL).
stage_rootfs() {
  local dir=$1 binary=$2 src=$target_dir/$profile/$2 lib
  rm -rf "$dir"
  mkdir -p "$dir/rootfs/usr/local/bin" "$dir/rootfs/etc/ssl/certs" "$dir/rootfs/home/nonroot" "$dir/rootfs/tmp"
  cp "$src" "$dir/rootfs/usr/local/bin/$binary"
  ln -s "$binary" "$dir/rootfs/usr/local/bin/entrypoint"
  for lib in $(ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$dir/rootfs$(dirname "$lib")"
    cp -L "$lib" "$dir/rootfs$lib"
  done
  # /lib64 is a symlink on Debian (merged /usr); keep the dynamic loader where the binary's PT_INTERP says.
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$dir/rootfs/etc/ssl/certs/"
  fi
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$dir/rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/rootfs/etc/group"
  chmod 1777 "$dir/rootfs/tmp"
  chown 65532:65532 "$dir/rootfs/home/nonroot"
  if [ "$binary" = tiketi-service ]; then
    mkdir -p "$dir/rootfs/data/uploads"
    chown 65532:65532 "$dir/rootfs/data/uploads"
  fi
}

# build_image NAME: prints NAME's reference; the tarball is $cache/NAME-TAG.tar.
build_image() {
  local name=$1 src=$target_dir/$profile/$1 hash tag ref ctx
  [ -x "$src" ] || die "$src is missing"
  hash=$( (sha256sum "$src" "$repo_root/Dockerfile.local" | sha256sum) | cut -c1-12)
  tag=$version-local-$hash
  ref=$name:$tag
  if ! docker image inspect "$ref" >/dev/null 2>&1; then
    ctx=$cache/context-$name
    stage_rootfs "$ctx" "$name"
    cp "$repo_root/Dockerfile.local" "$ctx/Dockerfile"
    local args=(--build-arg "BINARY=$name" --build-arg "VERSION=$version")
    [ "$name" = tiketi-service ] && args+=(--build-arg UPLOAD_DIR=/data/uploads)
    log "docker build $ref"
    # The classic builder: this machine has no BuildKit (buildx) and needs none for COPY-only images.
    DOCKER_BUILDKIT=0 docker build -q "${args[@]}" -t "$ref" "$ctx" >"$cache/build-$name.log" 2>&1 ||
      { cat "$cache/build-$name.log" >&2; die "docker build $ref failed"; }
    rm -rf "$ctx"
  fi
  if [ ! -s "$cache/$name-$tag.tar" ]; then
    rm -f "$cache/$name"-*.tar
    docker save "$ref" -o "$cache/$name-$tag.tar.tmp"
    mv "$cache/$name-$tag.tar.tmp" "$cache/$name-$tag.tar"
  fi
  local size
  size=$(docker image inspect -f '{{.Size}}' "$ref")
  log "$ref: $((size / 1024 / 1024)) MiB ($size bytes; binary $(($(stat -c %s "$src") / 1024 / 1024)) MiB)"
  echo "$ref"
}

cmd_build() {
  mkdir -p "$cache"
  command -v docker >/dev/null || apt_install docker.io
  local t0=$SECONDS
  if [ "${TIKETI_IMAGES_SKIP_CARGO:-0}" != 1 ]; then
    log "cargo build --profile $profile (tiketi-service, tiketi-operator)"
    local p=$profile
    [ "$p" = debug ] && p=dev
    (cd "$repo_root" && cargo build -q --profile "$p" -p tiketi-service -p tiketi-operator)
  fi
  ensure_docker
  local service operator
  service=$(build_image tiketi-service)
  operator=$(build_image tiketi-operator)
  log "images ready in $((SECONDS - t0)) s"
  printf 'TIKETI_SERVICE_IMAGE=%s\nTIKETI_SERVICE_IMAGE_TAR=%s\n' "$service" "$cache/${service/:/-}.tar"
  printf 'TIKETI_OPERATOR_IMAGE=%s\nTIKETI_OPERATOR_IMAGE_TAR=%s\n' "$operator" "$cache/${operator/:/-}.tar"
}

case "${1:-}" in
  build) cmd_build ;;
  docker)
    ensure_docker
    echo "DOCKER_HOST=$DOCKER_HOST"
    ;;
  stop) cmd_stop ;;
  *)
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
