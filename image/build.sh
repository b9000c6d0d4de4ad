#!/usr/bin/env bash
# `make image`: build the operator image without a container engine or a registry.
#
# The image the Dockerfile describes, made from Debian packages on this machine:
#   1. the project's wheel (pip wheel, from a copy of the sources),
#   2. a bookworm root filesystem from mmdebstrap (variant essential + python3,
#      ca-certificates; docs, man pages, locales, glibc's iconv modules (Python does not
#      use them), pydoc's topics and apt/dpkg caches left out; .pyc files kept, since the
#      root filesystem is read-only at run time and every start would recompile),
#   3. the wheel and its dependencies installed with the host's .venv pip into
#      /usr/local/lib/python3.11/dist-packages (Debian's python3 looks there;
#      host and image are both CPython 3.11 on glibc 2.36, so the same wheels fit),
#      the `szal` launcher's shebang pointed at /usr/bin/python3,
#   4. a user and group szal (65532) in /etc/passwd and /etc/group,
#   5. packed with umoci into a one-layer OCI layout, configured (user, entrypoint,
#      workdir, env, OCI labels) and tarred as dist/szal-image.tar. index.json carries
#      io.containerd.image.name=localhost/szal/szal:<version> so `ctr images import`
#      and `kind load image-archive` name it; skopeo reads it as oci-archive:.
# A content hash of the inputs (pyproject.toml, README.md, LICENSE, operator/, this
# script) is stored beside the archive; when it matches, nothing is rebuilt.
# Needs root (mmdebstrap's root mode, umoci unpack/repack keep ownership).
# Prints the archive's path on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${SZAL_IMAGE_ARCHIVE:-$repo/dist/szal-image.tar}
log() { echo "[image] $*" >&2; }
die() { echo "[image] error: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (mmdebstrap and umoci keep file ownership)"
[[ -x .venv/bin/pip ]] || die ".venv/bin/pip missing: run 'make install' first"

# --with-test-tools: also install what tests/image runs the image with (runc, containerd).
with_test_tools=0
for arg in "$@"; do
  case $arg in
    --with-test-tools) with_test_tools=1 ;;
    *) die "unknown argument $arg (usage: image/build.sh [--with-test-tools])" ;;
  esac
done

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v umoci >/dev/null || need+=(umoci)
if [[ $with_test_tools == 1 ]]; then
  command -v runc >/dev/null || need+=(runc)
  command -v containerd >/dev/null && command -v ctr >/dev/null || need+=(containerd)
fi
if (( ${#need[@]} )); then
  log "installing Debian packages: ${need[*]}"
  if ! { apt-get install -y -qq "${need[@]}" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq "${need[@]}" >&2; }; }; then
    die "could not install ${need[*]} with apt-get"
  fi
fi

version=$(.venv/bin/python -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
ref="localhost/szal/szal:$version"
# The project's public address; override with SZAL_IMAGE_SOURCE (e.g. a fork's repository).
source=${SZAL_IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || echo https://szal.dev)}

inputs_hash() {
  { printf '%s\n' pyproject.toml README.md LICENSE image/build.sh
    find operator -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' | LC_ALL=C sort
  } | while read -r f; do printf '%s  %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"; done \
    | sha256sum | cut -d' ' -f1
}
hash=$(inputs_hash)
stamp="$out.inputs-sha256"
if [[ -f $out && -f $stamp && $(cat "$stamp") == "$hash" ]]; then
  log "up to date: $out ($ref)"
  echo "$out"
  exit 0
fi

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "${TMPDIR:-/tmp}/szal-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
t0=$(date +%s)

log "building the wheel"
mkdir -p "$work/src"
cp -r pyproject.toml README.md LICENSE operator "$work/src/"
find "$work/src/operator" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
.venv/bin/pip wheel --quiet --no-deps --wheel-dir "$work/wheel" "$work/src" >&2
wheel=$(ls "$work"/wheel/szal-*.whl)

log "umoci: new layout"
layout="$work/oci"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci unpack --image "$layout:$version" "$work/bundle" >&2
rootfs="$work/bundle/rootfs"

log "mmdebstrap: bookworm root filesystem with python3"
sources=/etc/apt/sources.list.d/debian.sources
[[ -f $sources ]] || sources=/etc/apt/sources.list
[[ -f $sources ]] || die "no Debian sources list found on this machine"
excludes=('/usr/share/doc/*' '/usr/share/man/*' '/usr/share/info/*' '/usr/share/locale/*'
  '/usr/share/lintian/*' '/usr/share/doc-base/*' '/usr/share/bash-completion/*' '/usr/share/zsh/*')
dpkgopts=()
for p in "${excludes[@]}"; do dpkgopts+=(--dpkgopt="path-exclude=$p"); done
dpkgopts+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)} \
# merged /usr by the hook's symlinks, not the usrmerge package (which pulls in perl).
nice -n 10 mmdebstrap --quiet --variant=essential --mode=root \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include=python3,ca-certificates "${dpkgopts[@]}" \
  --customize-hook='rm -rf "$1"/usr/lib/x86_64-linux-gnu/gconv "$1"/usr/lib/python3.11/pydoc_data "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/var/log/* "$1"/var/lib/dpkg/*-old' \
  bookworm "$rootfs" "$sources" >"$work/mmdebstrap.log" 2>&1 \
  || { tail -n 40 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed (its log's end is above)"; }
pyver=$(chroot "$rootfs" /usr/bin/python3 -c 'import sys;print("%d.%d"%sys.version_info[:2])')
[[ $pyver == 3.11 ]] || die "image python is $pyver, expected 3.11 (host wheels are cp311)"

log "installing the wheel and its dependencies"
site="$rootfs/usr/local/lib/python3.11/dist-packages"
.venv/bin/pip install --quiet --no-warn-script-location --only-binary=:all: \
  --target "$site" "$wheel" >&2
mkdir -p "$rootfs/usr/local/bin"
for s in "$site"/bin/*; do
  sed '1s|^#!.*|#!/usr/bin/python3|' "$s" >"$rootfs/usr/local/bin/$(basename "$s")"
  chmod 0755 "$rootfs/usr/local/bin/$(basename "$s")"
done
rm -rf "$site/bin"
echo 'szal:x:65532:65532:szal operator:/tmp:/usr/sbin/nologin' >>"$rootfs/etc/passwd"
echo 'szal:x:65532:' >>"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
chroot "$rootfs" /usr/local/bin/szal --version >/dev/null || die "szal --version fails inside the root filesystem"

log "umoci: repack and configure"
umoci repack --image "$layout:$version" "$work/bundle" >&2
labels=(
  org.opencontainers.image.source="$source"
  org.opencontainers.image.version="$version"
  org.opencontainers.image.licenses=AGPL-3.0-only
  org.opencontainers.image.title=szal
  "org.opencontainers.image.description=Szál workflow engine: the Kubernetes operator"
)
cfg=(--config.user 65532:65532 --config.entrypoint szal --config.entrypoint operator
  --config.workingdir /tmp
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  --config.env HOME=/tmp --config.env PYTHONDONTWRITEBYTECODE=1
  --history.created_by "image/build.sh")
for l in "${labels[@]}"; do cfg+=(--config.label "$l" --manifest.annotation "$l"); done
umoci config --image "$layout:$version" "${cfg[@]}"
umoci gc --layout "$layout"
.venv/bin/python - "$layout/index.json" "$ref" "$version" <<'PY'
import json, sys
path, ref, tag = sys.argv[1:]
index = json.load(open(path))
for m in index["manifests"]:
    a = m.setdefault("annotations", {})
    a["io.containerd.image.name"] = ref
    a["org.opencontainers.image.ref.name"] = tag
json.dump(index, open(path, "w"))
PY
tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$hash" >"$stamp"
log "built $out ($ref) in $(( $(date +%s) - t0 ))s: archive $(du -h "$out" | cut -f1), root filesystem $(du -sh "$rootfs" | cut -f1)"
echo "$out"
