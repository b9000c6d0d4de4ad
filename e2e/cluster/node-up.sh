#!/usr/bin/env bash
# Join one real node to the cluster up.sh started: kubelet + containerd + runc
# + the CNI bridge plugin, so step commands run as real containers.
#
#   e2e/cluster/node-up.sh       start (or keep) node $SZAL_NODE_NAME, wait Ready
#
# The recipe and the reasons for each setting are in docs/testing.md ("The real
# node"). In short:
# * containerd and the kubelet run in their own mount namespace (unshare), so
#   every overlay, netns and token mount stays off the host, and the three
#   kernel sysctls the kubelet insists on are faked there with read-only bind
#   mounts instead of being rewritten host-wide;
# * CRI's restrict_oom_score_adj, because root here lacks CAP_SYS_RESOURCE;
#   kubelet failCgroupV1: false, because this host is cgroup v1 (hybrid);
# * pods reach the API server at the `kubernetes` Service IP through one DNAT
#   rule on our bridge (no kube-proxy); pods have no default route;
# * images come from Debian packages, never a registry: pause (built by
#   build.sh), a busybox step image, and the operator image when `make image`
#   has produced dist/szal-image.tar.
# The node is tainted szal.dev/real-node=true:NoSchedule and labelled
# szal.dev/real-node=true: only pods that opt in land there.
#
# Idempotent: a Ready node whose processes are alive is left alone; leftovers
# of a crashed earlier run (processes, bridge, NAT rule, cgroups) are removed
# first by node-down.sh. Settings: env.sh (SZAL_NODE_*, SZAL_KUBELET_*).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

dir="$SZAL_CLUSTER_DIR"
node="$dir/node"
kubeconfig="$dir/kubeconfig"
node_ip="$SZAL_NODE_NET.1"
started=$SECONDS
log() { echo "[node-up] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -f "$kubeconfig" && -f "$dir/pki/ca.key" ]] || die "no cluster in $dir: run e2e/cluster/up.sh first"
[[ $EUID == 0 ]] || die "the real node needs root (mount namespaces, bridge, cgroups)"
bin="${SZAL_CLUSTER_BIN:-$("$here/build.sh")}" || die "building the binaries failed"
[[ -x "$bin/kubelet" && -x "$bin/pause" ]] || die "$bin holds no kubelet/pause: rerun e2e/cluster/build.sh"
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

node_ready() {
  [[ "$(kubectl get node "$SZAL_NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}
alive() { local p; p="$(cat "$node/run/$1.pid" 2>/dev/null)" && [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }
if alive kubelet && alive containerd && node_ready; then
  log "already up: node $SZAL_NODE_NAME"
  exit 0
fi
bash "$here/node-down.sh"

# --- packages -------------------------------------------------------------------
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || need+=(containernetworking-plugins)
[[ -x /bin/busybox ]] && /bin/busybox --list >/dev/null 2>&1 || need+=(busybox-static)
command -v umoci >/dev/null || need+=(umoci)
command -v iptables >/dev/null || need+=(iptables)
command -v unshare >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
  log "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" >"$dir/logs/node-apt.log" 2>&1 \
    || { apt-get update >>"$dir/logs/node-apt.log" 2>&1 \
         && apt-get install -y --no-install-recommends "${need[@]}" >>"$dir/logs/node-apt.log" 2>&1; } \
    || die "apt-get install ${need[*]} failed: $(tail -n 5 "$dir/logs/node-apt.log")"
fi
ctr_bin="$(command -v ctr)" || die "containerd's ctr command is missing"

mkdir -p "$node"/{pki,run,logs,images,fake-sysctl,containerd,cni/net.d,cni/ipam,kubelet/root,kubelet/pod-logs}

# --- images -------------------------------------------------------------------
# Single-layer OCI layouts packed with umoci; containerd's importer takes the
# name from the io.containerd.image.name annotation. Names live under
# localhost/ so nothing is ever resolved against a public registry.
mkimage() {  # name ref setup-function umoci-config-args...
  local name=$1 ref=$2 setup=$3 work="$node/images/build"
  shift 3
  rm -rf "$work" && mkdir -p "$work"
  (
    cd "$work"
    umoci init --layout img
    umoci new --image img:latest
    umoci unpack --image img:latest bundle
    "$setup" bundle/rootfs
    umoci repack --image img:latest bundle
    umoci config --image img:latest "$@"
    umoci gc --layout img
    python3 - img/index.json "$ref" <<'PY'
import json, sys
path, ref = sys.argv[1], sys.argv[2]
index = json.load(open(path))
for manifest in index["manifests"]:
    notes = manifest.setdefault("annotations", {})
    notes["io.containerd.image.name"] = ref
    notes["org.opencontainers.image.ref.name"] = ref.rsplit(":", 1)[1]
json.dump(index, open(path, "w"))
PY
    tar -C img -cf "$node/images/$name.tar" .
  ) >>"$dir/logs/node-images.log" 2>&1 || die "building image $ref failed: $(tail -n 5 "$dir/logs/node-images.log")"
  rm -rf "$work"
}
busybox_root() {
  local r=$1 a
  mkdir -p "$r"/{bin,etc,tmp,root,proc,sys,dev,var}
  chmod 1777 "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -sf busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$r/etc/group"
}
pause_root() { cp "$bin/pause" "$1/pause"; }
log "building images (pause, busybox)"
mkimage pause "$SZAL_NODE_PAUSE_IMAGE" pause_root --config.entrypoint /pause --config.user 65535:65535
mkimage busybox "$SZAL_NODE_STEP_IMAGE" busybox_root --config.cmd sh --config.env PATH=/bin
images=(pause busybox)
operator_archive="${SZAL_OPERATOR_IMAGE_ARCHIVE:-$repo/dist/szal-image.tar}"
if [[ -f "$operator_archive" ]]; then
  cp "$operator_archive" "$node/images/szal.tar"
  images+=(szal)
else
  log "no operator image at $operator_archive (make image builds it); not importing it"
fi

# --- node client certificate and kubeconfig -----------------------------------------
log "signing the kubelet's client certificate"
pki="$node/pki"
cp "$dir/pki/ca.crt" "$pki/ca.crt"
py="${SZAL_PYTHON:-$repo/.venv/bin/python}"
[[ -x "$py" ]] || py=python3
"$py" "$here/pki.py" sign --out "$pki" --ca "$dir/pki" kubelet \
  "/O=system:nodes/CN=system:node:$SZAL_NODE_NAME" client 30 >>"$dir/logs/pki.log" 2>&1 \
  || die "signing the kubelet certificate failed: $(tail -n 5 "$dir/logs/pki.log")"
cat >"$node/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: szal-e2e
  cluster: {server: "https://127.0.0.1:$SZAL_APISERVER_PORT", certificate-authority: $pki/ca.crt}
users:
- name: kubelet
  user: {client-certificate: $pki/kubelet.crt, client-key: $pki/kubelet.key}
contexts:
- name: szal-e2e
  context: {cluster: szal-e2e, user: kubelet}
current-context: szal-e2e
EOF

# --- configuration ----------------------------------------------------------------
sock="$node/containerd/containerd.sock"
cat >"$node/containerd/config.toml" <<EOF
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
oom_score = 0
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SZAL_NODE_PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni/net.d"
    max_conf_num = 1
EOF
cat >"$node/cni/net.d/10-szal.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "szal-real",
  "plugins": [{
    "type": "bridge", "bridge": "$SZAL_NODE_BRIDGE",
    "isGateway": false, "ipMasq": false, "hairpinMode": false,
    "ipam": {
      "type": "host-local", "dataDir": "$node/cni/ipam",
      "ranges": [[{"subnet": "$SZAL_NODE_NET.0/24", "rangeStart": "$SZAL_NODE_NET.10",
                   "rangeEnd": "$SZAL_NODE_NET.250", "gateway": "$node_ip"}]],
      "routes": [{"dst": "10.96.0.0/16"}]
    }
  }]
}
EOF
cat >"$node/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$SZAL_NODE_CGROUP
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://$sock
address: $node_ip
port: $SZAL_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $SZAL_KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
failSwapOn: false
podLogsDir: $node/kubelet/pod-logs
staticPodPath: ""
registerNode: true
registerWithTaints:
- {key: szal.dev/real-node, value: "true", effect: NoSchedule}
maxPods: 30
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 10s
resolvConf: /etc/resolv.conf
EOF
echo 1 >"$node/fake-sysctl/overcommit_memory"
echo 0 >"$node/fake-sysctl/panic_on_oom"
echo 10 >"$node/fake-sysctl/panic"
echo 1 >"$node/fake-sysctl/panic_on_oops"

# --- host side: bridge, NAT to the API server, cgroups -----------------------------
log "bridge $SZAL_NODE_BRIDGE ($node_ip/24), DNAT 10.96.0.1:443 -> 127.0.0.1:$SZAL_APISERVER_PORT"
ip link add "$SZAL_NODE_BRIDGE" type bridge
# The bridge's name is global: only the cluster directory that made it removes it.
echo "$SZAL_NODE_BRIDGE" >"$node/bridge"
ip addr add "$node_ip/24" dev "$SZAL_NODE_BRIDGE"
ip link set "$SZAL_NODE_BRIDGE" up
echo 1 >"/proc/sys/net/ipv4/conf/$SZAL_NODE_BRIDGE/route_localnet"
iptables -t nat -A PREROUTING -i "$SZAL_NODE_BRIDGE" -d 10.96.0.1/32 -p tcp --dport 443 \
  -j DNAT --to-destination "127.0.0.1:$SZAL_APISERVER_PORT" -m comment --comment "szal-node:$dir"
echo "$SZAL_NODE_BRIDGE $SZAL_APISERVER_PORT" >"$node/run/network"
for h in /sys/fs/cgroup/*/; do
  [[ -e "${h}cgroup.procs" ]] && mkdir -p "${h}$SZAL_NODE_CGROUP"
done
if [[ -d /sys/fs/cgroup/cpuset/$SZAL_NODE_CGROUP ]]; then
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$SZAL_NODE_CGROUP/cpuset.cpus"
  cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$SZAL_NODE_CGROUP/cpuset.mems"
fi
echo "$SZAL_NODE_CGROUP" >"$node/run/cgroup"
# containerd 1.6 insists on /run/netns (not configurable); it gets a tmpfs in
# the node's namespace, but the mount point must exist on the host.
if [[ ! -d /run/netns ]]; then
  mkdir -p /run/netns
  touch "$node/run/made-run-netns"
fi
if [[ ! -d /run/containerd ]]; then
  mkdir -p /run/containerd
  touch "$node/run/made-run-containerd"
fi

# --- containerd and the kubelet in their own mount namespace ---------------------------
cat >"$node/run/inner.sh" <<EOF
set -e
mount --bind -o ro "$node/fake-sysctl/overcommit_memory" /proc/sys/vm/overcommit_memory
mount --bind -o ro "$node/fake-sysctl/panic_on_oom" /proc/sys/vm/panic_on_oom
mount --bind -o ro "$node/fake-sysctl/panic" /proc/sys/kernel/panic
mount --bind -o ro "$node/fake-sysctl/panic_on_oops" /proc/sys/kernel/panic_on_oops
mount -t tmpfs -o mode=0711 tmpfs /run/containerd
mount -t tmpfs -o mode=0755 tmpfs /run/netns
containerd --config "$node/containerd/config.toml" >"$node/logs/containerd.log" 2>&1 </dev/null &
echo \$! >"$node/run/containerd.pid"
for i in \$(seq 150); do "$ctr_bin" --address "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
for img in ${images[*]}; do
  "$ctr_bin" --address "$sock" -n k8s.io images import "$node/images/\$img.tar" \
    >>"$node/logs/images-import.log" 2>&1
done
"$bin/kubelet" --config="$node/kubelet/config.yaml" --kubeconfig="$node/kubelet.kubeconfig" \
  --root-dir="$node/kubelet/root" --hostname-override="$SZAL_NODE_NAME" --node-ip="$node_ip" \
  --node-labels=szal.dev/real-node=true -v=2 >"$node/logs/kubelet.log" 2>&1 </dev/null &
echo \$! >"$node/run/kubelet.pid"
wait
EOF
log "starting containerd and the kubelet in a private mount namespace"
setsid unshare --mount --propagation slave bash "$node/run/inner.sh" \
  >"$node/logs/inner.log" 2>&1 </dev/null 9>&- &
echo $! >"$node/run/namespace.pid"

deadline=$((SECONDS + SZAL_CLUSTER_TIMEOUT))
until node_ready; do
  if ! kill -0 "$(cat "$node/run/namespace.pid")" 2>/dev/null; then
    log "the node's processes exited; last lines of their logs:"
    tail -n 20 "$node/logs/inner.log" "$node/logs/containerd.log" "$node/logs/kubelet.log" >&2 2>/dev/null || true
    die "node $SZAL_NODE_NAME did not start"
  fi
  if ((SECONDS > deadline)); then
    tail -n 30 "$node/logs/kubelet.log" >&2 2>/dev/null || true
    die "node $SZAL_NODE_NAME not Ready within ${SZAL_CLUSTER_TIMEOUT}s (logs in $node/logs)"
  fi
  sleep 0.2
done
log "node $SZAL_NODE_NAME Ready in $((SECONDS - started))s (images: ${images[*]})"
