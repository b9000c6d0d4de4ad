#!/usr/bin/env bash
# Stop the e2e cluster started by up.sh and remove its directory.
#
#   e2e/cluster/down.sh          stop everything, delete $SZAL_CLUSTER_DIR
#   e2e/cluster/down.sh --keep   stop everything, keep the directory (logs,
#                                certs, etcd data) for a post-mortem;
#                                SZAL_CLUSTER_KEEP=1 does the same
#
# Components are stopped in reverse start order by their pid files (SIGTERM,
# then SIGKILL after a grace period); then any process still running one of
# our binaries with this cluster directory in its arguments is killed too, so
# nothing is left listening. Safe to run when nothing is up.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

keep="${SZAL_CLUSTER_KEEP:-0}"
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
  esac
done

dir="$SZAL_CLUSTER_DIR"
log() { echo "[cluster-down] $*" >&2; }

if [[ "${SZAL_CLUSTER_LOCK_HELD:-0}" != 1 ]]; then
  mkdir -p "$(dirname "$dir")"
  exec 9>"$dir.lock"
  flock -w 900 9 || { log "ERROR: another up.sh/down.sh holds $dir.lock"; exit 1; }
fi

# Is pid running a component of this cluster? (pid files can outlive their
# process, and the pid can be reused by something else.)
ours() {
  local pid=$1 args
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  args="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$args" == *"$dir/"* ]] || return 1
  local exe="${args%% *}"
  local c
  for c in "${SZAL_COMPONENTS[@]}"; do
    [[ "${exe##*/}" == "$c" ]] && return 0
  done
  return 1
}

stop() {  # pid name
  local pid=$1 name=$2 i
  ours "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do  # 10 s grace
    ours "$pid" || { log "stopped $name ($pid)"; return 0; }
    sleep 0.1
  done
  log "$name ($pid) ignored SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    ours "$pid" || return 0
    sleep 0.1
  done
  log "WARNING: $name ($pid) is still running"
}

# The real node first (node-down.sh is a no-op when there is none), while the
# API server can still be told to forget the Node.
bash "$here/node-down.sh" || log "WARNING: node-down.sh failed"

for ((n = ${#SZAL_COMPONENTS[@]} - 1; n >= 0; n--)); do
  name="${SZAL_COMPONENTS[n]}"
  pidfile="$dir/run/$name.pid"
  [[ -f "$pidfile" ]] || continue
  stop "$(cat "$pidfile")" "$name"
  rm -f "$pidfile"
done

# Anything left that a lost pid file would hide.
left=0
for proc in /proc/[0-9]*; do
  pid="${proc#/proc/}"
  if ours "$pid"; then
    left=1
    stop "$pid" "leftover $(tr '\0' ' ' <"$proc/cmdline" | cut -c1-60)"
  fi
done
for proc in /proc/[0-9]*; do
  if ours "${proc#/proc/}"; then
    log "ERROR: process ${proc#/proc/} of the cluster in $dir survived SIGKILL"
    exit 1
  fi
done
((left == 0)) || log "stopped leftover processes"

if [[ "$keep" == 1 ]]; then
  log "kept $dir"
elif [[ -f "$dir/.szal-cluster" ]]; then
  rm -rf "$dir"
  log "removed $dir"
elif [[ -e "$dir" ]]; then
  log "ERROR: $dir is not a cluster directory made by up.sh (no .szal-cluster mark); not removing it"
  exit 1
fi
