#!/usr/bin/env bash
# Stop the real node node-up.sh started and remove everything it made on the
# host: processes (by pid file, then by their arguments, so a lost pid file
# hides nothing), containers and shims, cgroups, the DNAT rule, the bridge,
# the /run directories containerd insisted on, and the node's Node object.
#
#   e2e/cluster/node-down.sh     safe to run when nothing is up, and after a
#                                crash of an earlier run
#
# The node's mounts live in its private mount namespace, which disappears with
# its last process; any mount of ours still visible on the host is unmounted.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

dir="$SZAL_CLUSTER_DIR"
node="$dir/node"
sock="$node/containerd/containerd.sock"
log() { echo "[node-down] $*" >&2; }

# Processes of this node: their arguments name the node directory.
ours() {
  local args
  args="$( { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null)" || return 1
  [[ "$args" == *"$node/"* ]]
}
stop() {  # pid name [grace-seconds]
  local pid=$1 name=$2 grace=${3:-10} i
  [[ -n "$pid" ]] && ours "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    ours "$pid" || { log "stopped $name ($pid)"; return 0; }
    sleep 0.1
  done
  log "$name ($pid) ignored SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do ours "$pid" || return 0; sleep 0.1; done
  log "WARNING: $name ($pid) survived SIGKILL"
}
pidfile() { cat "$node/run/$1.pid" 2>/dev/null || true; }

# 1. The kubelet first, so it restarts nothing; then every container.
stop "$(pidfile kubelet)" kubelet
if [[ -S "$sock" ]] && command -v ctr >/dev/null; then
  ctr=(ctr --address "$sock" -n k8s.io)
  tasks="$("${ctr[@]}" tasks ls -q 2>/dev/null || true)"
  for t in $tasks; do "${ctr[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  [[ -z "$tasks" ]] || sleep 1
  for t in $tasks; do "${ctr[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true; done
  for c in $("${ctr[@]}" containers ls -q 2>/dev/null || true); do
    "${ctr[@]}" containers delete "$c" >/dev/null 2>&1 || true
  done
fi
stop "$(pidfile containerd)" containerd

# 2. Anything else of ours: shims (their -address names our socket), a kubelet
# or containerd whose pid file was lost, the namespace's holder shell.
for proc in /proc/[0-9]*; do
  pid="${proc#/proc/}"
  ours "$pid" && stop "$pid" "leftover $(tr '\0' ' ' <"$proc/cmdline" | cut -c1-70)" 3
done

# 3. Container processes left in our cgroups (a shim killed before its
# container), then the cgroups themselves, deepest first.
cgroup="$(cat "$node/run/cgroup" 2>/dev/null || echo "$SZAL_NODE_CGROUP")"
for h in /sys/fs/cgroup/*/; do
  root="${h}$cgroup"
  [[ -d "$root" ]] || continue
  while read -r p; do kill -KILL "$p" 2>/dev/null || true; done \
    < <(find "$root" -name cgroup.procs -exec cat {} + 2>/dev/null)
done
for h in /sys/fs/cgroup/*/; do
  root="${h}$cgroup"
  [[ -d "$root" ]] || continue
  for ((i = 0; i < 50; i++)); do
    find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [[ -d "$root" ]] || break
    sleep 0.1
  done
  [[ -d "$root" ]] && log "WARNING: could not remove cgroup $root"
done

# 4. Network: our DNAT rules (tagged with this cluster directory), the bridge.
if command -v iptables >/dev/null; then
  while read -r rule; do
    [[ -n "$rule" ]] || continue
    eval "iptables -t nat ${rule/-A PREROUTING/-D PREROUTING}" || log "WARNING: could not delete: $rule"
  done < <(iptables -t nat -S PREROUTING 2>/dev/null | grep -F -- "szal-node:$dir\"" || true)
fi
# Only a bridge this cluster directory made (node-up.sh wrote its name): a
# down.sh of another cluster on the same host must not cut this one's node off.
if [[ -f "$node/bridge" ]]; then
  made="$(cat "$node/bridge")"
  if ip link show "$made" >/dev/null 2>&1; then
    ip link del "$made" && log "removed bridge $made"
  fi
  rm -f "$node/bridge"
fi

# 5. Mounts that escaped the namespace (none expected), and host directories
# containerd created.
while read -r mnt; do
  umount -l "$mnt" 2>/dev/null && log "unmounted $mnt"
done < <(awk -v n="$node/" 'index($5, n) == 1 {print $5}' /proc/self/mountinfo | sort -r)
[[ -e "$node/run/made-run-netns" ]] && rmdir /run/netns 2>/dev/null && rm -f "$node/run/made-run-netns"
[[ -e "$node/run/made-run-containerd" ]] && rmdir /run/containerd 2>/dev/null \
  && rm -f "$node/run/made-run-containerd"

# 6. The Node object, when the API server is still up (so a restarted node
# starts clean, and kwok-only runs see no NotReady node).
kubeconfig="$dir/kubeconfig"
if [[ -f "$kubeconfig" ]]; then
  kubectl_bin="$(ls -d "${SZAL_CLUSTER_BIN:-/nonexistent}/kubectl" 2>/dev/null \
    || bash "$here/build.sh" 2>/dev/null | sed 's#$#/kubectl#')"
  "$kubectl_bin" --kubeconfig "$kubeconfig" --request-timeout=5s delete node "$SZAL_NODE_NAME" \
    --ignore-not-found --wait=false >/dev/null 2>&1 || true
fi
rm -f "$node"/run/*.pid
exit 0
