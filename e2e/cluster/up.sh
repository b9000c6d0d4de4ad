#!/usr/bin/env bash
# Start the e2e Kubernetes cluster on 127.0.0.1 and print its kubeconfig path.
#
#   e2e/cluster/up.sh        build (or reuse) the binaries, start, wait, print
#                            $SZAL_CLUSTER_DIR/kubeconfig on stdout
#
# The cluster is a real control plane - etcd, kube-apiserver (Node,RBAC
# authorization, the default admission plugins), kube-controller-manager (all
# default controllers: job, garbage collector, namespace, serviceaccount and
# token, ttl-after-finished, ...) and kube-scheduler - with kwok standing in
# for kubelets: it keeps the fake nodes of kwok/nodes.yaml Ready and plays pod
# lifecycles with kwok's node and pod stages plus our pod-complete stage
# (kwok/pod-complete.yaml: duration, exit code and termination message read
# from the pod's szal.dev/sim-* annotations).
#
# Idempotent: a healthy cluster already running in $SZAL_CLUSTER_DIR is left
# alone; a dead or half-started one is torn down and started afresh. Fails
# with the reason and the tail of the failing component's log. Settings (ports,
# directory, timeout) are in env.sh, each overridable from the environment.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
# shellcheck source=env.sh
source "$here/env.sh"

dir="$SZAL_CLUSTER_DIR"
pki="$dir/pki"
kubeconfig="$dir/kubeconfig"
started=$SECONDS

log() { echo "[cluster-up] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Serialise up/down runs on the same directory (two test sessions at once).
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock -w 900 9 || die "another up.sh/down.sh holds $dir.lock"
export SZAL_CLUSTER_LOCK_HELD=1

pid_of() { cat "$dir/run/$1.pid" 2>/dev/null || true; }
alive() {  # running, and not a zombie nobody has reaped yet
  local pid state
  pid="$(pid_of "$1")"
  [[ -n "$pid" ]] || return 1
  state="$(ps -o stat= -p "$pid" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z* ]]
}
log_tail() {
  local f="$dir/logs/$1.log"
  if [[ -s "$f" ]]; then
    echo "----- last 40 lines of $f -----" >&2
    tail -n 40 "$f" >&2
    echo "-----" >&2
  fi
}
fail() {  # component reason
  log "ERROR: $1: $2"
  log_tail "$1"
  log "the cluster is left as it is for inspection; clean up with e2e/cluster/down.sh"
  exit 1
}
apiserver_ready() {
  curl -sf --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$SZAL_APISERVER_PORT/readyz" 2>/dev/null | grep -qx ok
}
healthy() {
  [[ -f "$kubeconfig" ]] || return 1
  local c
  for c in "${SZAL_COMPONENTS[@]}"; do alive "$c" || return 1; done
  apiserver_ready
}

if healthy; then
  log "already up: $kubeconfig"
  echo "$kubeconfig"
  exit 0
fi
if [[ -e "$dir" ]]; then
  log "found a stopped or unhealthy cluster in $dir; tearing it down first"
  "$here/down.sh" || die "could not tear down the old cluster in $dir"
fi

for tool in curl flock setsid; do
  command -v "$tool" >/dev/null || die "the $tool command is missing"
done
# Certificates are made by pki.py with the cryptography library and szal's TLS
# helpers: the project's virtualenv has both (make install), or name a Python
# that has them in SZAL_PYTHON.
py="${SZAL_PYTHON:-$here/../../.venv/bin/python}"
[[ -x "$py" ]] || py=python3
"$py" -c 'import szal.runners.kubernetes.tls' 2>/dev/null \
  || die "$py cannot import szal and cryptography (run make install, or set SZAL_PYTHON)"
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for var in SZAL_ETCD_PORT SZAL_ETCD_PEER_PORT SZAL_APISERVER_PORT SZAL_CONTROLLER_MANAGER_PORT \
           SZAL_SCHEDULER_PORT SZAL_KWOK_PORT; do
  port_free "${!var}" || die "port ${!var} on 127.0.0.1 ($var) is already in use: $(ss -ltnpH "sport = :${!var}" 2>/dev/null)"
done

if [[ -n "${SZAL_CLUSTER_BIN:-}" ]]; then
  bin="$SZAL_CLUSTER_BIN"  # binaries built elsewhere, at the versions.env versions
else
  bin="$("$here/build.sh")" || die "building the control plane failed (see the messages above)"
fi
[[ -x "$bin/kube-apiserver" && -x "$bin/kwok" ]] || die "build.sh printed '$bin', which holds no binaries"

mkdir -p "$dir"/{pki,logs,run}
mkdir -m 700 "$dir/etcd"
touch "$dir/.szal-cluster"  # down.sh removes only directories carrying this mark

# --- certificates -----------------------------------------------------------
log "making certificates in $pki"
mkcert() { "$py" "$here/pki.py" "$@" 2>>"$dir/logs/pki.log" || die "pki.py $1 failed: $(tail -n 5 "$dir/logs/pki.log")"; }
mkcert ca --out "$pki"
mkcert sign --out "$pki" --ca "$pki" apiserver "/CN=kube-apiserver" server 365 \
  IP:127.0.0.1 IP:10.96.0.1 DNS:localhost DNS:kubernetes DNS:kubernetes.default \
  DNS:kubernetes.default.svc DNS:kubernetes.default.svc.cluster.local
mkcert sign --out "$pki" --ca "$pki" admin "/O=system:masters/CN=szal-admin" client 365
# The apiserver's client certificate towards kubelets (logs, exec on the real
# node, node-up.sh); kwok nodes never see it.
mkcert sign --out "$pki" --ca "$pki" apiserver-kubelet-client \
  "/O=system:masters/CN=kube-apiserver-kubelet-client" client 365
# The aggregation layer's client: with it the apiserver publishes a request-header
# CA, which the controller manager and scheduler expect to find.
mkcert sign --out "$pki" --ca "$pki" front-proxy-client "/CN=front-proxy-client" client 365
mkcert keypair --out "$pki" sa

b64() { base64 -w0 <"$1"; }
umask 077
cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: szal-e2e
  cluster:
    server: https://127.0.0.1:$SZAL_APISERVER_PORT
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: szal-admin
  user:
    client-certificate-data: $(b64 "$pki/admin.crt")
    client-key-data: $(b64 "$pki/admin.key")
contexts:
- name: szal-e2e
  context:
    cluster: szal-e2e
    user: szal-admin
    namespace: default
current-context: szal-e2e
EOF
umask 022

# --- helpers for the components ---------------------------------------------
start() {  # name command...
  local name=$1
  shift
  log "starting $name"
  # setsid: a Ctrl-C aimed at the caller (make, pytest) must not kill the
  # cluster halfway; down.sh stops it by pid.
  setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$dir/run/$name.pid"
}
wait_until() {  # component description command...
  local name=$1 what=$2
  shift 2
  local deadline=$((SECONDS + SZAL_CLUSTER_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || fail "$name" "exited while waiting for $what"
    ((SECONDS < deadline)) || fail "$name" "$what not within ${SZAL_CLUSTER_TIMEOUT}s"
    sleep 0.2
  done
}
https_ok() { curl -skf --max-time 5 "https://127.0.0.1:$1/healthz" | grep -qx ok; }
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

# --- etcd -------------------------------------------------------------------
# No fsync: the data is thrown away with the cluster, and fsync latency is the
# main cost of every write on a small VM.
start etcd "$bin/etcd" --name szal-e2e --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$SZAL_ETCD_PORT" \
  --advertise-client-urls "http://127.0.0.1:$SZAL_ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$SZAL_ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$SZAL_ETCD_PEER_PORT" \
  --initial-cluster "szal-e2e=http://127.0.0.1:$SZAL_ETCD_PEER_PORT" \
  --initial-cluster-state new --unsafe-no-fsync --log-level warn
etcd_ok() { curl -sf --max-time 5 "http://127.0.0.1:$SZAL_ETCD_PORT/health" | grep -q '"health":"true"'; }
wait_until etcd "etcd /health" etcd_ok

# --- kube-apiserver ---------------------------------------------------------
# --endpoint-reconciler-type=none: the `kubernetes` Service's Endpoints may not
# hold a loopback address; pods on the real node reach 10.96.0.1:443 through
# node-up.sh's DNAT rule instead of kube-proxy.
# --kubelet-preferred-address-types: the real node's name does not resolve, so
# logs/exec go to its InternalIP.
# --enable-aggregator-routing: the API server calls webhook Services at their
# endpoints (a pod IP on the real node's bridge) rather than at the ClusterIP,
# which needs kube-proxy; so the chart's in-cluster webhook works here.
sa_issuer="https://kubernetes.default.svc.cluster.local"
start kube-apiserver "$bin/kube-apiserver" \
  --advertise-address=127.0.0.1 --bind-address=127.0.0.1 --secure-port="$SZAL_APISERVER_PORT" \
  --etcd-servers="http://127.0.0.1:$SZAL_ETCD_PORT" \
  --cert-dir="$pki" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --requestheader-client-ca-file="$pki/ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$pki/front-proxy-client.crt" \
  --proxy-client-key-file="$pki/front-proxy-client.key" \
  --service-account-issuer="$sa_issuer" \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction \
  --service-cluster-ip-range=10.96.0.0/16 \
  --endpoint-reconciler-type=none \
  --allow-privileged=true \
  --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP,Hostname \
  --enable-aggregator-routing=true \
  --profiling=false
wait_until kube-apiserver "kube-apiserver /readyz" apiserver_ready

# --- kube-controller-manager and kube-scheduler -----------------------------
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig="$kubeconfig" \
  --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$SZAL_CONTROLLER_MANAGER_PORT" \
  --cert-dir="$dir/run/kube-controller-manager" \
  --leader-elect=false \
  --controllers='*' \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --kube-api-qps=100 --kube-api-burst=200 \
  --profiling=false

cat >"$dir/kube-scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $kubeconfig
  qps: 100
  burst: 200
leaderElection:
  leaderElect: false
EOF
start kube-scheduler "$bin/kube-scheduler" \
  --config="$dir/kube-scheduler.yaml" \
  --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$SZAL_SCHEDULER_PORT" \
  --cert-dir="$dir/run/kube-scheduler" \
  --profiling=false

# --- kwok ---------------------------------------------------------------------
# kwok runs only the stages it is given, so the file holds its default node
# stages (initialise, heartbeat with leases) and pod stages (ready, delete),
# read from the kwok module at the pinned version, plus our pod-complete and
# pod-deadline (a stopped step's pod: kwok/pod-deadline.yaml).
kwok_src="$(cd "$dir" && GOFLAGS= go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" || true
[[ -d "$kwok_src/kustomize/stage" ]] || die "could not find sigs.k8s.io/kwok@$KWOK_VERSION in the Go module cache"
# (No KwokConfiguration document: one given without every option leaves the
# unset ones at zero instead of kwok's defaults, and kwok refuses to start.)
{
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-delete.yaml; do
    cat "$kwok_src/kustomize/stage/$f"
    echo "---"
  done
  cat "$here/kwok/pod-complete.yaml"
  echo "---"
  cat "$here/kwok/pod-deadline.yaml"
} >"$dir/kwok.yaml"
start kwok "$bin/kwok" \
  --config="$dir/kwok.yaml" \
  --kubeconfig="$kubeconfig" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds=40 \
  --cidr=10.244.0.0/16 --node-ip=10.89.0.1 \
  --server-address="127.0.0.1:$SZAL_KWOK_PORT"

wait_until kube-controller-manager "kube-controller-manager /healthz" https_ok "$SZAL_CONTROLLER_MANAGER_PORT"
wait_until kube-scheduler "kube-scheduler /healthz" https_ok "$SZAL_SCHEDULER_PORT"
kwok_ok() { curl -sf --max-time 5 "http://127.0.0.1:$SZAL_KWOK_PORT/healthz" >/dev/null; }
wait_until kwok "kwok /healthz" kwok_ok

# --- nodes and the default ServiceAccount -------------------------------------
kubectl apply -f "$here/kwok/nodes.yaml" >"$dir/logs/nodes.log" 2>&1 \
  || fail nodes "kubectl apply -f kwok/nodes.yaml failed"
nodes_ready() {
  local want got
  want="$(kubectl get nodes -l type=kwok -o name | wc -l)"
  got="$(kubectl get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -cx True)"
  ((want > 0 && got == want))
}
wait_until kwok "the fake nodes to be Ready" nodes_ready
wait_until kube-controller-manager "the default ServiceAccount in namespace default" \
  kubectl get serviceaccount default -n default

log "cluster up in $((SECONDS - started))s: $(kubectl get nodes -o name | wc -l) nodes, kubeconfig $kubeconfig"
echo "$kubeconfig"
