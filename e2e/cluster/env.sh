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
