"""Crash safety: the operator SIGKILLed again and again, at random moments.

Three runs (a DAG with a flaky step, a condition and a Job, a Sequential run that
fails and rolls back, a Parallel run under maxParallel) are started; the
operator is killed with SIGKILL at random points - between a pod's creation
and its status write, mid-rollback, anywhere - and started again, many
times. Then it runs undisturbed until every run ends.

Checked: every run ends in its expected phase with the expected step
phases and attempt counts (nothing stuck in Running); every attempt has
exactly one pod and no attempt beyond the recorded ones exists (a step that
"ran twice" would show as an extra attempt: pod names are deterministic, so
a repeated create of the same attempt can only hit AlreadyExists); every
compensation ran exactly once.

The seed is printed; set SZAL_CRASH_SEED to replay a sequence of kills.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import Kubectl
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
    pods_of,
    run,
    sim,
    step_phases,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.e2e

KILLS = 10


def _dag() -> dict[str, Any]:
    return {
        "mode": "Dag",
        "template": {"image": "busybox:1.36", "pod": sim("400ms")},
        "steps": [
            {"name": "a", "command": ["true"], "pod": sim("300ms", message={"go": True})},
            {"name": "b", "command": ["true"], "dependsOn": ["a"]},
            {
                "name": "c",
                "command": ["true"],
                "dependsOn": ["a"],
                "retries": {"limit": 2, "delay": "300ms"},
                "pod": sim("500ms", **{"szal.dev/sim-exit-code-attempt-1": "1"}),
            },
            {
                "name": "d",
                "command": ["true"],
                "dependsOn": ["a"],
                "when": "steps.a.outputs.go == false",
            },
            {"name": "e", "command": ["true"], "dependsOn": ["b", "c"]},
            {"name": "f", "command": ["true"], "dependsOn": ["c", "d"]},
            {"name": "g", "command": ["true"], "dependsOn": ["e", "f"], "pod": sim("700ms")},
            {"name": "j", "command": ["true"], "dependsOn": ["b"], "launcher": "Job"},
            {"name": "h", "command": ["true"], "dependsOn": ["g", "j"]},
        ],
    }


def _rollback() -> dict[str, Any]:
    step = {"command": ["true"], "rollback": {"command": ["undo"]}}
    return {
        "mode": "Sequential",
        "rollbackOnFailure": True,
        "template": {"image": "busybox:1.36", "pod": sim("500ms")},
        "steps": [
            {"name": "one", **step},
            {"name": "two", **step},
            {"name": "three", **step},
            {"name": "four", "command": ["false"], "pod": sim("300ms", exit_code=2)},
            {"name": "five", "command": ["true"]},
        ],
    }


def _parallel() -> dict[str, Any]:
    return {
        "mode": "Parallel",
        "maxParallel": 2,
        "template": {"image": "busybox:1.36", "pod": sim("600ms")},
        "steps": [{"name": f"p{i}", "command": ["true"]} for i in range(6)],
    }


EXPECTED = {
    "dag": (
        "Succeeded",
        {
            "a": ("Succeeded", 1),
            "b": ("Succeeded", 1),
            "c": ("Succeeded", 2),
            "d": ("Skipped", 0),
            "e": ("Succeeded", 1),
            "f": ("Succeeded", 1),
            "g": ("Succeeded", 1),
            "h": ("Succeeded", 1),
            "j": ("Succeeded", 1),
        },
    ),
    "rollback": (
        "RolledBack",
        {
            "one": ("Succeeded", 1),
            "two": ("Succeeded", 1),
            "three": ("Succeeded", 1),
            "four": ("Failed", 1),
            "five": ("Skipped", 0),
        },
    ),
    "parallel": ("Succeeded", {f"p{i}": ("Succeeded", 1) for i in range(6)}),
}


def test_sigkill_at_random_points_loses_nothing_and_runs_nothing_twice(
    kubeconfig: Path, kubectl: Kubectl, namespace: str
) -> None:
    seed = int(os.environ.get("SZAL_CRASH_SEED", time.time_ns() % 1_000_000))
    print(f"crash seed: {seed} (SZAL_CRASH_SEED={seed} replays it)")
    rng = random.Random(seed)
    ensure_crds(kubectl)
    for name, spec in (("dag", _dag()), ("rollback", _rollback()), ("parallel", _parallel())):
        kubectl.apply(workflow(name, spec), namespace)
    op = OperatorProcess(kubeconfig, [namespace])
    try:
        for name in EXPECTED:
            kubectl.apply(run(name, name), namespace)
        for _ in range(KILLS):
            op.start()
            time.sleep(rng.uniform(0.05, 1.5))
            op.kill()
            time.sleep(rng.uniform(0.0, 0.8))
        op.start()
        for name, (phase, steps) in EXPECTED.items():
            status = wait_phase(kubectl, namespace, name, timeout=120)
            assert status["phase"] == phase, (name, status)
            assert step_phases(status) == steps, (name, status)
            attempts = Counter()
            compensations = Counter()
            for pod in pods_of(kubectl, namespace, name):
                labels = pod["metadata"]["labels"]
                if labels.get("szal.dev/rollback") == "true":
                    compensations[labels["szal.dev/step"]] += 1
                else:
                    attempts[(labels["szal.dev/step"], int(labels["szal.dev/attempt"]))] += 1
            expected_attempts = Counter(
                {(step, n): 1 for step, (_, count) in steps.items() for n in range(1, count + 1)}
            )
            assert attempts == expected_attempts, (name, attempts)
            if phase == "RolledBack":
                assert compensations == Counter({"one": 1, "two": 1, "three": 1})
                rollbacks = status["steps"]
                assert all(
                    rollbacks[s]["rollback"]["phase"] == "Succeeded"
                    for s in ("one", "two", "three")
                )
            else:
                assert not compensations
        assert op.starts == KILLS + 1
    except BaseException:
        print(f"--- operator log ({op.log_path}) ---\n{op.log(200)}")
        raise
    finally:
        op.stop()
