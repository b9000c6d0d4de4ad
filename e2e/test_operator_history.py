"""The operator mirrors run history to Postgres (``szal operator --history-dsn``).

Covers: a run with a retried step and a condition-skipped step, run on the
cluster, appears in the Postgres history store with its final phase, one
attempt row per attempt (the failed first attempt included) and its event
log in order; a ttlSecondsAfterFinished deletion happens only after the
history is archived.

Not covered: database outages (the mirror's own tests use a private
server they halt and restart).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tests.postgres.server import shared_dsn

from e2e.conftest import Kubectl
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
    run,
    sim,
    wait_for,
    wait_phase,
    workflow,
)
from szal.history.postgres import PostgresStore
from szal.history.store import RunDetail

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


async def _detail(dsn: str, uid: str) -> RunDetail | None:
    store = PostgresStore(dsn)
    try:
        await store.migrate()
        return await store.get_run(uid)
    finally:
        await store.close()


def test_history_is_mirrored_to_postgres(
    kubeconfig: Path, kubectl: Kubectl, namespace: str
) -> None:
    dsn = shared_dsn()
    ensure_crds(kubectl)
    spec = {
        "mode": "Dag",
        "template": {"image": "busybox:1.36", "pod": sim("200ms")},
        "steps": [
            {
                "name": "a",
                "command": ["true"],
                "retries": {"limit": 1, "delay": "100ms"},
                "pod": sim("200ms", **{"szal.dev/sim-exit-code-attempt-1": "1"}),
            },
            {"name": "b", "command": ["true"], "dependsOn": ["a"], "when": "params.go == 'no'"},
            {"name": "c", "command": ["true"], "dependsOn": ["b"]},
        ],
        "params": [{"name": "go", "default": "yes"}],
    }
    kubectl.apply(workflow("hist", spec), namespace)
    with OperatorProcess(kubeconfig, [namespace], "--history-dsn", dsn):
        kubectl.apply(run("hist", "hist", ttlSecondsAfterFinished=1), namespace)
        obj = wait_for(lambda: kubectl.get("workflowrun", "hist", namespace), "the run")
        uid = obj["metadata"]["uid"]
        status = wait_phase(kubectl, namespace, "hist")
        assert status["phase"] == "Succeeded"
        finished = time.monotonic()
        wait_for(
            lambda: kubectl.get("workflowrun", "hist", namespace) is None,
            "the TTL deletion",
            timeout=30,
        )
        assert time.monotonic() - finished < 20

    detail = asyncio.run(_detail(dsn, uid))
    assert detail is not None
    assert detail.run.phase == "Succeeded" and detail.run.workflow == "hist"
    assert detail.run.params == {"go": "yes"}
    attempts = sorted((a.step, a.attempt, a.phase) for a in detail.attempts if not a.rollback)
    assert attempts == [("a", 1, "Failed"), ("a", 2, "Succeeded"), ("c", 1, "Succeeded")]
    events = [(e.step, e.new) for e in detail.events]
    assert events[0] == (None, "Running") and events[-1] == (None, "Succeeded")
    assert ("b", "Skipped") in events
