#!/usr/bin/env bash
# Build the pinned Kubernetes control plane for the e2e tests from the Go
# module proxy, into a cache outside the repo keyed by the versions.
#
#   e2e/cluster/build.sh          build (or reuse) and print the bin dir
#
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and the
# kubelet (for the real node, node-up.sh) come
# from k8s.io/kubernetes, which cannot be `go install`ed because its go.mod
# replaces every k8s.io/* staging module with a local path. We build it from
# a tiny wrapper module that requires it and replaces each of those staging
# modules (read from the downloaded go.mod, never hard-coded) with its
# published v0.X.Y tag. etcd's server module is built the same way (its own
# replaces are ignored when it is a dependency). kwok and helm are plain.
# The pod sandbox's pause program is a 20-line Go file (pause/main.go here),
# so the real node's images never need a registry.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache_root="${SZAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/szal}"
key="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
dest="$cache_root/$key"
bin="$dest/bin"
stamp="$dest/.complete"

log() { echo "[cluster-build] $*" >&2; }

# Every binary the cluster and the real node need; a cache built before one
# of them was added is completed, not rebuilt.
needed=(etcd etcdctl kwok kwokctl kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet helm pause)
complete() {
  [[ -f "$stamp" ]] || return 1
  local b
  for b in "${needed[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}

if complete; then
  log "reusing $bin"
  echo "$bin"
  exit 0
fi

# One build at a time per cache directory: a second caller waits, then reuses.
mkdir -p "$cache_root"
exec 8>"$dest.lock"
flock -w 7200 8 || { log "ERROR: another build holds $dest.lock"; exit 1; }
if complete; then
  log "reusing $bin"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { log "ERROR: the go command is missing (Go 1.26+ is needed to build the control plane)"; exit 1; }
mkdir -p "$bin"
work="$dest/work"
mkdir -p "$work"
export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"

kube_binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)
build_kubernetes() {
  local need=0
  for b in "${kube_binaries[@]}"; do
    [[ -x "$bin/$b" ]] || need=1
  done
  [[ $need == 1 ]] || { log "kubernetes binaries already built"; return; }
  local mod="$work/kubernetes"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  go mod init szal.dev/cluster-build/kubernetes >/dev/null 2>&1
  log "downloading k8s.io/kubernetes@$K8S_VERSION"
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$gomod" ]] || { log "ERROR: could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  local staging="v0.${K8S_VERSION#v1.}"
  go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
  # every `k8s.io/foo => ./staging/src/k8s.io/foo` becomes `=> k8s.io/foo v0.N.M`
  local n=0
  while read -r name; do
    go mod edit -replace "$name=$name@$staging"
    n=$((n + 1))
  done < <(sed -n 's#^[[:space:]]*\(k8s.io/[A-Za-z0-9._/-]*\) => ./staging/.*#\1#p' "$gomod")
  log "replaced $n staging modules with $staging"
  (( n > 10 )) || { log "ERROR: found only $n staging replaces in $gomod"; exit 1; }
  local major minor
  major="${K8S_VERSION#v}"; major="${major%%.*}"
  minor="${K8S_VERSION#v*.}"; minor="${minor%%.*}"
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for b in "${kube_binaries[@]}"; do
    if [[ ! -x "$bin/$b" ]]; then
      log "building $b (this takes a while on a small machine)"
      go build -trimpath -ldflags "$ld" -o "$bin/$b.tmp" "k8s.io/kubernetes/cmd/$b"
      mv "$bin/$b.tmp" "$bin/$b"
    fi
  done
}

build_etcd() {
  [[ -x "$bin/etcd" && -x "$bin/etcdctl" ]] && { log "etcd already built"; return; }
  local mod="$work/etcd"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  go mod init szal.dev/cluster-build/etcd >/dev/null 2>&1
  go mod edit -require "go.etcd.io/etcd/server/v3@$ETCD_VERSION" -require "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION"
  log "building etcd $ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$bin/etcd.tmp" "$bin/etcd"
  go build -trimpath -ldflags "-s -w" -o "$bin/etcdctl.tmp" go.etcd.io/etcd/etcdctl/v3
  mv "$bin/etcdctl.tmp" "$bin/etcdctl"
}

build_plain() {  # name module-package version [extra ldflags]
  local name=$1 pkg=$2 version=$3 ld="-s -w ${4:-}"
  [[ -x "$bin/$name" ]] && { log "$name already built"; return; }
  log "building $name $version"
  GOBIN="$work/gobin" GOFLAGS=-buildvcs=false go install -trimpath -ldflags "$ld" "$pkg@$version"
  mv "$work/gobin/$name" "$bin/$name"
}

# helm's version and the Kubernetes version it assumes offline (helm template,
# lint) are link-time variables, set by its Makefile; without them it reports
# "v3.22" and assumes Kubernetes 1.20. Like the Makefile, take the Kubernetes
# version from helm's own client-go requirement.
helm_ldflags() {
  local gomod client_go major=1 minor
  gomod="$(cd "$work" && GOFLAGS= go mod download -json "helm.sh/helm/v3@$HELM_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  client_go="$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -n 1)"
  [[ -n "$client_go" ]] || { log "ERROR: no k8s.io/client-go requirement in $gomod"; exit 1; }
  minor="$client_go"
  local v=helm.sh/helm/v3/internal/version
  echo "-X $v.version=$HELM_VERSION -X $v.gitTreeState=clean" \
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
}

build_helm() {
  [[ -x "$bin/helm" ]] && { log "helm already built"; return; }
  local ld
  ld="$(helm_ldflags)" || exit 1
  build_plain helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$ld"
}

build_pause() {
  [[ -x "$bin/pause" ]] && { log "pause already built"; return; }
  local mod="$work/pause"
  rm -rf "$mod" && mkdir -p "$mod" && cp "$here/pause/main.go" "$mod/" && cd "$mod"
  go mod init szal.dev/cluster-build/pause >/dev/null 2>&1
  log "building pause"
  go build -trimpath -ldflags "-s -w" -o "$bin/pause.tmp" .
  mv "$bin/pause.tmp" "$bin/pause"
}

start=$(date +%s)
build_pause
build_etcd
build_plain kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
build_plain kwokctl sigs.k8s.io/kwok/cmd/kwokctl "$KWOK_VERSION"
build_kubernetes
build_helm
rm -rf "$work"
touch "$stamp"
log "built in $(( $(date +%s) - start ))s into $bin"
"$bin/kube-apiserver" --version >&2
"$bin/kubectl" version --client >&2 || true
{ "$bin/etcd" --version || true; } | head -n 1 >&2  # not `etcd | head` alone: SIGPIPE + pipefail
"$bin/kwok" --version >&2 || true
"$bin/helm" version --short >&2 || true
echo "$bin"
