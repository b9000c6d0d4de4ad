#!/usr/bin/env bash
# Build Argo Workflows' workflow-controller at a pinned version from the Go
# module proxy into the cache outside the repo that e2e/cluster/build.sh uses,
# for the side-by-side benchmark (python -m bench.versus, docs/benchmarks.md).
#
#   bench/argo/build.sh           build (or reuse) and print the bin dir
#   bench/argo/build.sh --crds    also print the directory of Argo's CRDs
#   bench/argo/build.sh --crds-only   download the module, print only the CRDs' directory
#
# Argo's go.mod has no replace directives, so `go install module@version`
# builds it as published. The CRDs come from the same downloaded module
# (manifests/base/crds/minimal: the controller needs only the kinds, not the
# full OpenAPI schemas), so controller and CRDs always match. Nothing here is
# committed: the binary and the module cache stay under ~/.cache.
set -euo pipefail
ARGO_MODULE="${ARGO_MODULE:-github.com/argoproj/argo-workflows/v4}"
# The newest v4 release the module proxy served when the benchmark was written.
ARGO_VERSION="${ARGO_VERSION:-v4.0.5}"

cache_root="${SZAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/szal}"
dest="$cache_root/argo-workflows-$ARGO_VERSION"
bin="$dest/bin"
log() { echo "[argo-build] $*" >&2; }

module_dir() {
  (cd "$dest" && GOFLAGS=-mod=mod go mod download -json "$ARGO_MODULE@$ARGO_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
}

print_result() {
  echo "$bin"
  if [[ "${1:-}" == --crds* ]]; then
    local dir
    dir="$(module_dir)"
    [[ -d "$dir/manifests/base/crds/minimal" ]] || { log "ERROR: no CRDs in $dir"; exit 1; }
    echo "$dir/manifests/base/crds/minimal"
  fi
}

mkdir -p "$dest"
if [[ "${1:-}" == "--crds-only" ]]; then
  print_result --crds | tail -n 1
  exit 0
fi
if [[ -x "$bin/workflow-controller" ]]; then
  log "reusing $bin"
  print_result "$@"
  exit 0
fi
exec 8>"$dest.lock"
flock -w 7200 8 || { log "ERROR: another build holds $dest.lock"; exit 1; }
if [[ ! -x "$bin/workflow-controller" ]]; then
  command -v go >/dev/null || { log "ERROR: the go command is missing"; exit 1; }
  start=$(date +%s)
  mkdir -p "$bin" "$dest/gobin"
  log "building $ARGO_MODULE/cmd/workflow-controller@$ARGO_VERSION (about 8 minutes cold)"
  (cd "$dest" && CGO_ENABLED=0 GOBIN="$dest/gobin" GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "-s -w -X github.com/argoproj/argo-workflows/v4.version=$ARGO_VERSION" \
    "$ARGO_MODULE/cmd/workflow-controller@$ARGO_VERSION")
  mv "$dest/gobin/workflow-controller" "$bin/workflow-controller"
  log "built in $(( $(date +%s) - start ))s into $bin"
fi
print_result "$@"
