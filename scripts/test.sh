#!/usr/bin/env bash
# `make test`: start what the tests need, run the whole suite, clean up.
#
# 1. Postgres from the machine's Debian packages (tests/postgres/pg.sh).
# 2. The pinned Kubernetes control plane: built from the Go module proxy into
#    a cache outside the repo (reused when warm) and started on loopback with
#    kwok nodes (e2e/cluster/). Set SZAL_E2E_KUBECONFIG to use another cluster
#    (kind, for example) instead; then nothing is built or started.
# 3. The operator image, dist/szal-image.tar (image/build.sh, skipped when up to date),
#    Argo Workflows' controller for e2e/test_versus.py (bench/argo/build.sh, cached),
#    and the web UI tests' headless browser (scripts/browser.sh: Debian's chromium).
# 4. Lint (ruff, mypy strict, import-linter), then pytest over tests/ and e2e/.
# Whatever this script started is stopped on exit, pass or fail. Nothing is
# skipped for a missing dependency: a part that cannot start fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
started_pg=0
started_cluster=0
log() { echo "[make test] $*" >&2; }

cleanup() {
  local rc=$?
  if [[ $started_cluster == 1 ]]; then log "stopping the test cluster"; bash e2e/cluster/down.sh || true; fi
  if [[ $started_pg == 1 ]]; then log "stopping Postgres"; bash tests/postgres/pg.sh stop || true; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "lint: ruff, mypy (strict), import-linter"
$BIN/ruff check operator tests e2e bench
$BIN/ruff format --check operator tests e2e bench
$BIN/mypy
$BIN/lint-imports

# Argo CD health checks run in a small gopher-lua harness (deploy/argocd/);
# the tests build it too when missing, this only makes the cost visible.
log "building (or reusing) the Argo CD health-check harness"
t0=$(date +%s)
bash deploy/argocd/harness/build.sh >/dev/null
log "Argo CD harness ready in $(( $(date +%s) - t0 ))s"

# e2e/test_versus.py runs Argo Workflows' controller (the comparison
# benchmark): built here from its Go module, outside any test's timeout
# (about 6 minutes cold on 2 cores; a warm cache costs nothing).
log "building (or reusing) Argo Workflows' workflow-controller"
t0=$(date +%s)
bash bench/argo/build.sh >/dev/null
log "Argo Workflows controller ready in $(( $(date +%s) - t0 ))s"

# The web UI tests drive Debian's chromium through chromium-driver (apt-get when missing).
log "checking (or installing) the headless browser"
bash scripts/browser.sh >/dev/null

log "starting Postgres"
started_pg=1
SZAL_TEST_PG_DSN="$(bash tests/postgres/pg.sh start)"
export SZAL_TEST_PG_DSN

# The operator image (dist/szal-image.tar), before the e2e tests: the real node imports
# it, tests/image runs it. Skipped in about 0.2 s when its inputs did not change.
log "building (or reusing) the operator image"
t0=$(date +%s)
bash image/build.sh --with-test-tools >/dev/null
log "operator image ready in $(( $(date +%s) - t0 ))s"

if [[ -z "${SZAL_E2E_KUBECONFIG:-}" ]]; then
  log "building (or reusing) the pinned control plane"
  t0=$(date +%s)
  bash e2e/cluster/build.sh >/dev/null
  log "control plane binaries ready in $(( $(date +%s) - t0 ))s"
  started_cluster=1
  bash e2e/cluster/up.sh
  if [[ "${SZAL_REAL_NODE:-1}" == 1 ]]; then
    t0=$(date +%s)
    bash e2e/cluster/node-up.sh
    log "real node ready in $(( $(date +%s) - t0 ))s"
  fi
  SZAL_E2E_KUBECONFIG="${SZAL_CLUSTER_DIR:-/tmp/szal-cluster}/kubeconfig"
  export SZAL_E2E_KUBECONFIG
else
  log "using the cluster named by SZAL_E2E_KUBECONFIG=$SZAL_E2E_KUBECONFIG"
fi

log "running the test suite"
$BIN/pytest -p no:cacheprovider tests e2e "$@"
