"""The operator mirrors run history to Postgres (``szal operator --history-dsn``).

Covers: a run with a retried step and a condition-skipped step, run on the
cluster, appears in the Postgres history store with its final phase, one
attempt row per attempt (the failed first attempt included) and its event
log in order; a ttlSecondsAfterFinished deletion happens only after the
history is archived.

Database outages, with a private Postgres server (``Instance``) halted and
started again under a running operator:

* stopped mid-run: the run still reaches Succeeded; its ``szal.dev/history``
  finalizer keeps ``kubectl delete`` from completing while the database is
  away; once it is back the backlog is flushed, the history is complete and
  in order (every attempt, the final run row, the event log) and the delete
  completes;
* away longer than ``--history-finalizer-timeout``: the run shows
  ``HistoryArchived=False`` (reason DatabaseUnavailable) and a Warning
  Event; a deletion then completes after the timeout, with a
  ``HistoryFinalizerReleased`` Warning Event; the rows still reach the
  database when it returns (the operator kept them queued);
* the operator SIGKILLed while the database is away and the run finished
  meanwhile: the restarted operator archives the run again from its status
  (run row, each step's last attempt) and then removes the finalizer.

Not covered: the mirror's retry and coalescing rules (tests/postgres).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.postgres.server import Instance, free_port, shared_dsn

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
from szal.runners.kubernetes.finalizing import FINALIZER

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _failing_first(duration: str) -> dict[str, Any]:
    """``pod:`` options for a step whose first attempt exits 1 (later ones 0)."""
    options = sim(duration)
    options["metadata"]["annotations"]["szal.dev/sim-exit-code-attempt-1"] = "1"
    return options


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
                "pod": _failing_first("200ms"),
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


# --- database outages ---------------------------------------------------------


@pytest.fixture(scope="module")
def private_pg() -> Iterator[Instance]:
    """A Postgres server of this module's own, to halt and start at will."""
    # A short path: the Unix socket path must stay under 108 bytes.
    instance = Instance(Path(f"/tmp/szal-pg-e2e-{secrets.token_hex(3)}"), free_port())
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def _outage_workflow() -> dict[str, Any]:
    """Four steps in sequence, the second failing its first attempt."""
    return {
        "mode": "Sequential",
        "template": {"image": "busybox:1.36", "pod": sim("1s")},
        "steps": [
            {"name": "a", "command": ["true"]},
            {
                "name": "b",
                "command": ["true"],
                "retries": {"limit": 1, "delay": "100ms"},
                "pod": _failing_first("1s"),
            },
            {"name": "c", "command": ["true"]},
            {"name": "d", "command": ["true"]},
        ],
    }


def _holds_finalizer(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    obj = kubectl.get("workflowrun", name, namespace)
    if obj is not None and FINALIZER in (obj["metadata"].get("finalizers") or []):
        return obj
    return None


def _step_phase(kubectl: Kubectl, namespace: str, name: str, step: str) -> str | None:
    obj = kubectl.get("workflowrun", name, namespace) or {}
    record = ((obj.get("status") or {}).get("steps") or {}).get(step) or {}
    return record.get("phase")


def _history_condition(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "HistoryArchived":
            return dict(cond)
    return None


def _events(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


def _strip_finalizers(kubectl: Kubectl, namespace: str) -> None:
    """Let the namespace go even when a test failed with a run still held."""
    for obj in kubectl.json("get", "workflowruns", "-n", namespace)["items"]:
        if obj["metadata"].get("finalizers"):
            kubectl(
                "patch", "workflowrun", obj["metadata"]["name"], "-n", namespace,
                "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip


def _stays(check: Any, seconds: float) -> None:
    """Assert ``check()`` holds for ``seconds`` (polled): something must NOT happen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), "the condition stopped holding"
        time.sleep(0.2)


EXPECTED_ATTEMPTS = [
    ("a", 1, "Succeeded"),
    ("b", 1, "Failed"),
    ("b", 2, "Succeeded"),
    ("c", 1, "Succeeded"),
    ("d", 1, "Succeeded"),
]
EXPECTED_EVENTS = [
    (None, "Running"),
    ("a", "Running"),
    ("a", "Succeeded"),
    ("b", "Running"),
    ("b", "Waiting"),
    ("b", "Running"),
    ("b", "Succeeded"),
    ("c", "Running"),
    ("c", "Succeeded"),
    ("d", "Running"),
    ("d", "Succeeded"),
    (None, "Succeeded"),
]


def test_postgres_stopped_mid_run_history_complete_after_restart(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, private_pg: Instance
) -> None:
    dsn = private_pg.start()
    ensure_crds(kubectl)
    kubectl.apply(workflow("outage", _outage_workflow()), namespace)
    args = ("--history-dsn", dsn, "--history-finalizer-timeout", "120")
    try:
        with OperatorProcess(kubeconfig, [namespace], *args) as operator:
            kubectl.apply(run("outage", "outage"), namespace)
            obj = wait_for(lambda: _holds_finalizer(kubectl, namespace, "outage"), "finalizer")
            uid = obj["metadata"]["uid"]
            wait_for(
                lambda: _step_phase(kubectl, namespace, "outage", "a") == "Succeeded",
                "step a",
            )
            private_pg.halt()
            halted = time.monotonic()
            status = wait_phase(kubectl, namespace, "outage")
            assert status["phase"] == "Succeeded"  # reconciliation never waits for Postgres
            assert _holds_finalizer(kubectl, namespace, "outage")
            kubectl("delete", "workflowrun", "outage", "-n", namespace, "--wait=false")
            _stays(lambda: _holds_finalizer(kubectl, namespace, "outage"), 3.0)
            held = kubectl.get("workflowrun", "outage", namespace)
            assert held is not None and held["metadata"].get("deletionTimestamp")
            assert _history_condition(held) is None  # the timeout (120 s) is far away

            restarted = time.monotonic()
            private_pg.start()
            wait_for(
                lambda: kubectl.get("workflowrun", "outage", namespace) is None,
                "the delete to complete once Postgres is back",
                timeout=60,
            )
            flush = time.monotonic() - restarted
            print(
                f"Postgres away {restarted - halted:.1f}s; backlog flushed and delete"
                f" completed {flush:.2f}s after it restarted"
            )
            print(f"api writes: {operator.writes()}")
    finally:
        _strip_finalizers(kubectl, namespace)

    detail = asyncio.run(_detail(dsn, uid))
    assert detail is not None
    assert detail.run.phase == "Succeeded" and detail.run.finished_at is not None
    assert detail.run.workflow == "outage"
    attempts = sorted((a.step, a.attempt, a.phase) for a in detail.attempts if not a.rollback)
    assert attempts == EXPECTED_ATTEMPTS
    assert all(a.started_at and a.finished_at for a in detail.attempts)
    assert [(e.step, e.new) for e in detail.events] == EXPECTED_EVENTS
    ids = [e.id or 0 for e in detail.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    times = [e.at for e in detail.events]
    assert times == sorted(times)
    print(f"rows: 1 run, {len(detail.attempts)} attempts, {len(detail.events)} events")


def test_finalizer_released_after_the_timeout_with_a_warning(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, private_pg: Instance
) -> None:
    dsn = private_pg.start()
    ensure_crds(kubectl)
    spec = {
        "mode": "Sequential",
        "template": {"image": "busybox:1.36", "pod": sim("500ms")},
        "steps": [{"name": "a", "command": ["true"]}, {"name": "b", "command": ["true"]}],
    }
    kubectl.apply(workflow("away", spec), namespace)
    timeout = 3.0
    args = ("--history-dsn", dsn, "--history-finalizer-timeout", str(timeout))
    try:
        with OperatorProcess(kubeconfig, [namespace], *args):
            kubectl.apply(run("away", "away"), namespace)
            obj = wait_for(lambda: _holds_finalizer(kubectl, namespace, "away"), "finalizer")
            uid = obj["metadata"]["uid"]
            private_pg.halt()
            assert wait_phase(kubectl, namespace, "away")["phase"] == "Succeeded"

            def warned() -> dict[str, Any] | None:
                cond = _history_condition(kubectl.get("workflowrun", "away", namespace))
                return cond if cond and cond["status"] == "False" else None

            cond = wait_for(warned, "the HistoryArchived=False condition", timeout=30)
            assert cond["reason"] == "DatabaseUnavailable" and cond["message"]
            assert _holds_finalizer(kubectl, namespace, "away")
            wait_for(
                lambda: any(
                    e["reason"] == "HistoryNotArchived" and e["type"] == "Warning"
                    for e in _events(kubectl, namespace, "away")
                ),
                "the HistoryNotArchived Warning Event",
            )

            requested = time.monotonic()
            kubectl("delete", "workflowrun", "away", "-n", namespace, "--wait=false")
            assert _holds_finalizer(kubectl, namespace, "away")
            wait_for(
                lambda: kubectl.get("workflowrun", "away", namespace) is None,
                "the delete to complete after the finalizer timeout",
                timeout=30,
            )
            waited = time.monotonic() - requested
            print(f"delete completed {waited:.2f}s after it was requested (timeout {timeout}s)")
            # deletionTimestamp has whole seconds: the release may come up to 1 s early.
            assert waited >= timeout - 1.0
            released = wait_for(
                lambda: [
                    e
                    for e in _events(kubectl, namespace, "away")
                    if e["reason"] == "HistoryFinalizerReleased"
                ],
                "the HistoryFinalizerReleased Event",
            )
            assert released[0]["type"] == "Warning"

            # The operator still holds the rows: they arrive once Postgres is back.
            private_pg.start()

            def archived() -> RunDetail | None:
                detail = asyncio.run(_detail(dsn, uid))
                return detail if detail and detail.run.phase == "Succeeded" else None

            detail = wait_for(archived, "the queued history after the outage", timeout=60)
    finally:
        _strip_finalizers(kubectl, namespace)
    assert sorted((a.step, a.phase) for a in detail.attempts) == [
        ("a", "Succeeded"),
        ("b", "Succeeded"),
    ]
    assert [(e.step, e.new) for e in detail.events][-1] == (None, "Succeeded")


def test_run_finished_during_outage_and_operator_crash_is_archived_after_restart(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, private_pg: Instance
) -> None:
    dsn = private_pg.start()
    ensure_crds(kubectl)
    kubectl.apply(workflow("crash", _outage_workflow()), namespace)
    args = ("--history-dsn", dsn, "--history-finalizer-timeout", "120")
    operator = OperatorProcess(kubeconfig, [namespace], *args)
    try:
        operator.start()
        kubectl.apply(run("crash", "crash"), namespace)
        obj = wait_for(lambda: _holds_finalizer(kubectl, namespace, "crash"), "finalizer")
        uid = obj["metadata"]["uid"]
        wait_for(lambda: _step_phase(kubectl, namespace, "crash", "a") == "Succeeded", "step a")
        private_pg.halt()
        assert wait_phase(kubectl, namespace, "crash")["phase"] == "Succeeded"
        operator.kill()  # the queued rows die with it
        private_pg.start()
        operator.start()
        wait_for(
            lambda: not _holds_finalizer(kubectl, namespace, "crash"),
            "the finalizer to go once the run is archived again",
            timeout=60,
        )
        assert kubectl.get("workflowrun", "crash", namespace) is not None  # nobody deleted it
    finally:
        operator.stop()
        _strip_finalizers(kubectl, namespace)
    detail = asyncio.run(_detail(dsn, uid))
    assert detail is not None
    assert detail.run.phase == "Succeeded" and detail.run.finished_at is not None
    assert detail.run.workflow == "crash"
    attempts = {(a.step, a.attempt): a.phase for a in detail.attempts}
    # Each step's last attempt comes back from the status; b's failed first
    # attempt was only in the killed operator's memory (unless written before the halt).
    for step, attempt in (("a", 1), ("b", 2), ("c", 1), ("d", 1)):
        assert attempts[(step, attempt)] == "Succeeded"
    assert (None, "Running") in [(e.step, e.new) for e in detail.events]  # before the halt
