# Settings shared by up.sh and down.sh (sourced, not run). Every value can be
# overridden from the environment; everything listens on 127.0.0.1 only.
# shellcheck shell=bash

# Where the running cluster lives: certs, etcd data, logs, pid files and the
# admin kubeconfig ($SZAL_CLUSTER_DIR/kubeconfig).
SZAL_CLUSTER_DIR="${SZAL_CLUSTER_DIR:-/tmp/szal-cluster}"
# Ports on 127.0.0.1.
SZAL_ETCD_PORT="${SZAL_ETCD_PORT:-12379}"
SZAL_ETCD_PEER_PORT="${SZAL_ETCD_PEER_PORT:-12380}"
SZAL_APISERVER_PORT="${SZAL_APISERVER_PORT:-6443}"
SZAL_CONTROLLER_MANAGER_PORT="${SZAL_CONTROLLER_MANAGER_PORT:-10257}"
SZAL_SCHEDULER_PORT="${SZAL_SCHEDULER_PORT:-10259}"
SZAL_KWOK_PORT="${SZAL_KWOK_PORT:-10247}"
# Seconds to wait for each component to become healthy before giving up.
SZAL_CLUSTER_TIMEOUT="${SZAL_CLUSTER_TIMEOUT:-120}"

# Components in start order; down.sh stops them in reverse.
SZAL_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

# The real node (node-up.sh / node-down.sh): a kubelet with containerd and
# runc beside the kwok nodes. Two test runs on one machine need different
# values for all of these.
SZAL_NODE_NAME="${SZAL_NODE_NAME:-szal-real-0}"
SZAL_NODE_BRIDGE="${SZAL_NODE_BRIDGE:-szalbr0}"
# The node's /24: the bridge (and the node IP) is .1, pods get .10-.250.
# Not inside kwok's fake pod range (10.244.0.0/16, up.sh).
SZAL_NODE_NET="${SZAL_NODE_NET:-10.245.0}"
SZAL_KUBELET_PORT="${SZAL_KUBELET_PORT:-40250}"
SZAL_KUBELET_HEALTHZ_PORT="${SZAL_KUBELET_HEALTHZ_PORT:-40248}"
# The kubelet's cgroup subtree, made in every hierarchy under /sys/fs/cgroup.
SZAL_NODE_CGROUP="${SZAL_NODE_CGROUP:-szal-real}"
# 0: make test starts no real node (the e2e tests that need it then fail,
# saying so).
SZAL_REAL_NODE="${SZAL_REAL_NODE:-1}"
# Images the real node gets from Debian packages (no registry); step pods of
# the real-node tests use the busybox one with imagePullPolicy: Never.
SZAL_NODE_PAUSE_IMAGE="${SZAL_NODE_PAUSE_IMAGE:-localhost/szal/pause:1}"
SZAL_NODE_STEP_IMAGE="${SZAL_NODE_STEP_IMAGE:-localhost/szal/busybox:1.35}"
