# Szál: the two commands are `make demo` and `make test` (see README.md).
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp

.PHONY: demo test install lint image cluster-build cluster-up cluster-down postgres-up postgres-down crds argocd bench bench-versus clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(STAMP)

## demo: install into .venv and run an example workflow locally, with live progress
demo: $(STAMP)
	$(BIN)/szal run --db $(VENV)/demo-history.db examples/dag-diamond.yaml

## test: install, start Postgres and the test cluster, run every test, clean up
test: $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	$(BIN)/ruff check operator tests e2e bench
	$(BIN)/ruff format --check operator tests e2e bench
	$(BIN)/mypy
	$(BIN)/lint-imports

crds: $(STAMP)
	$(BIN)/szal crds --output-dir crds
	$(BIN)/szal crds --output-dir manifests/base/crd --kustomization
	$(BIN)/szal crds --output-dir charts/szal/templates/crds --helm

## argocd: re-render deploy/argocd/argocd-cm.yaml and argo-cd-values.yaml from the Lua health checks
argocd:
	$(PYTHON) deploy/argocd/render.py

## image: the operator image as an OCI archive, dist/szal-image.tar (image/build.sh; no engine needed)
image: $(STAMP)
	bash image/build.sh

cluster-build:
	bash e2e/cluster/build.sh

cluster-up: $(STAMP)
	bash e2e/cluster/up.sh

cluster-down:
	bash e2e/cluster/down.sh

postgres-up:
	bash tests/postgres/pg.sh start

postgres-down:
	bash tests/postgres/pg.sh stop

bench: $(STAMP)
	$(BIN)/python -m bench.engine

# Szál against Argo Workflows and the bare-pod floor on the test cluster
# (docs/benchmarks.md); VERSUS_ARGS=--quick for a small run.
bench-versus: $(STAMP)
	$(BIN)/python -m bench.versus $(VERSUS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
