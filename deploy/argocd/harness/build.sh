#!/usr/bin/env bash
# Build (or reuse) the Argo CD health-check harness and print its path.
#
#   deploy/argocd/harness/build.sh      -> ~/.cache/szal/argocd-harness-<version>/argocd-health
#
# The harness (main.go here) runs a Lua health check the way Argo CD does, in
# the interpreter Argo CD embeds: github.com/yuin/gopher-lua at the version
# Argo CD pins (go.mod here, checked against argo-cd's go.mod). It is built
# with the Go toolchain from the Go module proxy into a cache outside the
# repo; <version> names the gopher-lua version and a hash of the harness
# sources, so a changed main.go or go.mod builds afresh and a warm cache
# returns at once. go.sum is committed and checked (-mod=readonly). Nothing
# is written into the repo.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "[argocd-harness] $*" >&2; }

lua_version="$(sed -n 's/^[[:space:]]*github.com\/yuin\/gopher-lua \(v[^ ]*\).*/\1/p' "$here/go.mod")"
[[ -n "$lua_version" ]] || { log "ERROR: $here/go.mod does not require github.com/yuin/gopher-lua"; exit 1; }
sources_hash="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)"
cache_root="${SZAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/szal}"
dest="$cache_root/argocd-harness-gopher-lua-${lua_version}-${sources_hash}"
binary="$dest/argocd-health"

if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

mkdir -p "$cache_root"
exec 8>"$dest.lock"
flock -w 600 8 || { log "ERROR: another build holds $dest.lock"; exit 1; }
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

command -v go >/dev/null || { log "ERROR: the go command is missing (Go 1.23+ is needed to build the Argo CD health harness)"; exit 1; }
log "building the harness with gopher-lua $lua_version into $dest"
mkdir -p "$dest"
t0=$(date +%s)
(
  cd "$here"
  CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
    go build -trimpath -o "$binary.tmp" .
)
mv "$binary.tmp" "$binary"
log "built in $(( $(date +%s) - t0 ))s"
echo "$binary"
