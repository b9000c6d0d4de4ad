"""bench.versus against the real test cluster: its manifests are accepted and
one tiny session of each engine completes with figures.

Covers: Argo's CRDs (from the pinned module, installed here like the
benchmark does) accept every Argo Workflow the benchmark generates, the
API server accepts the floor's pods and Szál's Workflow and WorkflowRun
(server-side dry-run: the pod schema and Szál's CRD schema are real
checks; Argo's minimal CRDs check little, which is why the sessions
below run them for real); then a three-step chain, a six-step DAG and a
burst of three runs go through Szál, Argo tuned and the floor, each
finishing every run, with a hop and a wall time per workload.

Needs Go and the module proxy the first time (bench/argo/build.sh builds
the controller into ~/.cache/szal, about 6 minutes cold).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bench import versus
from bench import versus_workloads as w

from e2e.conftest import Kubectl
from e2e.operator_support import ensure_crds
from szal.runners.kubernetes.client import ApiClient, load_credentials

REPO = Path(__file__).resolve().parent.parent
TINY = w.Sizes(chain=3, dag=6, max_parallel=3, burst=3)


def _dry_run(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> None:
    kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(obj))


@pytest.fixture(scope="module")
def argo_crds(kubectl: Kubectl) -> None:
    crds = subprocess.run(
        ["bash", str(REPO / "bench/argo/build.sh"), "--crds-only"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    versus.install_argo_crds(kubectl, Path(crds))
    ensure_crds(kubectl)


def test_every_generated_manifest_is_accepted(
    kubectl: Kubectl, namespace: str, argo_crds: None
) -> None:
    chain = w.chain_steps(40)
    dag, _ = w.dag_steps(200, 50)
    for wf in (
        w.argo_workflow("chain", chain, 1.0, dag=False),
        w.argo_workflow("dag", dag, 2.0, dag=True, max_parallel=50),
        w.argo_workflow("b000", [w.Step("only")], 1.0, dag=False),
        w.szal_workflow("chain", chain, 1.0, dag=False),
        w.szal_workflow("dag", dag, 2.0, dag=True, max_parallel=50),
        w.floor_pod("dag", "d007", 2.0),
    ):
        _dry_run(kubectl, namespace, wf)
    kubectl.apply(w.szal_workflow("one", [w.Step("only")], 1.0, dag=False), namespace)
    _dry_run(kubectl, namespace, w.szal_run("b000", "one"))


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("engine", ["szal", "argo_tuned", "floor"])
def test_a_tiny_session_of_each_engine_completes(
    kubectl: Kubectl, argo_crds: None, engine: str
) -> None:
    ns = f"versus-e2e-{secrets.token_hex(3)}"
    kubectl("create", "namespace", ns)
    try:
        result = asyncio.run(_session(kubectl, ns, engine))
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert result["chain"]["phase"] == "Succeeded" and result["dag"]["phase"] == "Succeeded"
    assert result["chain"]["hop_ms"]["n"] == 2
    assert result["dag"]["wall_s"] >= result["dag"]["ideal_schedule_s"]
    assert result["burst"]["failed"] == [] and result["burst"]["runs_per_min"] > 0
    assert result["chain"]["versions"]["pods"] >= 3 * 4  # created, bound, running, done
    if engine != "floor":
        assert result["cpu_s"] > 0 and result["peak_rss_mib"] > 10


async def _session(kubectl: Kubectl, ns: str, key: str) -> dict[str, Any]:
    await versus._default_sa(kubectl, ns)
    client = ApiClient(load_credentials(kubectl.kubeconfig))
    try:
        engine: versus.Engine
        if key == "szal":
            engine = versus.Szal(kubectl, client, ns)
        elif key == "floor":
            engine = versus.Floor(kubectl, client, ns)
        else:
            binary, _ = versus.build_argo()
            engine = versus.Argo(kubectl, client, ns, binary=binary, tuned=True)
        return await versus.session(engine, TINY)
    finally:
        await client.close()
        await asyncio.sleep(0.25)  # aiohttp: let the TLS transports close
