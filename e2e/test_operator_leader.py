"""Leader election on the test cluster: two operators, the leader SIGKILLed mid-run.

Two ``szal operator --leader-elect`` processes serve the same namespace
(the Lease lives in the test's namespace, so parallel sessions never share
one). The first to start leads (/readyz ``leader``, ``szal_leader`` 1),
the other is a standby (``standby``, 0) and creates nothing. A Sequential
run of several steps starts; after its second pod the leader is SIGKILLed.

Checked: the standby acquires the Lease within lease duration + retry
period of the kill (the leader's last renewal was at most one retry period
before it); the run finishes Succeeded with every step at attempt 1 and
exactly one pod per (step, attempt) - a step run twice by the two replicas
or re-attempted after the takeover would show as a second pod; nothing is
stuck (every pod finished, no reconciler left on the new leader); a
graceful stop of the new leader releases the Lease (holder cleared).
Printed with ``-s``: kill -> Lease acquired, kill -> first new pod.

Not covered: the election's edge cases in virtual time
(``tests/kubernetes/test_electing.py``).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import Kubectl, poll_until
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

STEPS = 8
LEASE = 15.0
RETRY = 2.0


def _lease(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    obj = kubectl.get("lease", "szal-operator", namespace) or {}
    return dict(obj.get("spec") or {})


def test_standby_takes_over_a_run_when_the_leader_is_killed(
    kubeconfig: Path, kubectl: Kubectl, namespace: str
) -> None:
    ensure_crds(kubectl)
    spec = {
        "mode": "Sequential",
        "template": {"image": "busybox:1.36", "pod": sim("1500ms")},
        "steps": [{"name": f"s{i}", "command": ["true"]} for i in range(STEPS)],
    }
    kubectl.apply(workflow("ha", spec), namespace)
    args = ("--leader-elect", "--leader-election-namespace", namespace)
    first = OperatorProcess(kubeconfig, [namespace], *args)
    second = OperatorProcess(kubeconfig, [namespace], *args)
    with first:
        poll_until(lambda: first.readyz() == "leader", timeout=20, what="the first to lead")
        with second:
            assert second.readyz() == "standby"
            assert first.metrics()["szal_leader"] == 1
            assert second.metrics()["szal_leader"] == 0
            assert _lease(kubectl, namespace)["holderIdentity"] == first.identity

            kubectl.apply(run("ha", "ha"), namespace)
            poll_until(
                lambda: len(pods_of(kubectl, namespace, "ha")) >= 2,
                timeout=30,
                what="the second step's pod",
                interval=0.05,
            )
            assert second.writes().get("create pods", 0) == 0, "the standby created pods"
            before = {p["metadata"]["name"] for p in pods_of(kubectl, namespace, "ha")}
            killed = time.monotonic()
            first.kill()

            poll_until(
                lambda: _lease(kubectl, namespace).get("holderIdentity") == second.identity,
                timeout=LEASE + 3 * RETRY,
                what="the standby to acquire the Lease",
                interval=0.05,
            )
            acquired = time.monotonic() - killed
            poll_until(
                lambda: {p["metadata"]["name"] for p in pods_of(kubectl, namespace, "ha")} - before,
                timeout=30,
                what="a pod created by the new leader",
                interval=0.05,
            )
            first_pod = time.monotonic() - killed
            print(
                f"\nfailover: leader killed -> Lease acquired {acquired:.2f}s,"
                f" -> first new pod {first_pod:.2f}s"
            )
            assert acquired <= LEASE + RETRY + 1.0
            assert second.readyz() == "leader"
            assert second.metrics()["szal_leader"] == 1
            assert _lease(kubectl, namespace)["leaseTransitions"] >= 1

            status = wait_phase(kubectl, namespace, "ha", timeout=90)
            assert status["phase"] == "Succeeded", status
            assert step_phases(status) == {f"s{i}": ("Succeeded", 1) for i in range(STEPS)}
            pods = pods_of(kubectl, namespace, "ha")
            per_attempt = Counter(
                (
                    p["metadata"]["labels"]["szal.dev/step"],
                    p["metadata"]["labels"]["szal.dev/attempt"],
                )
                for p in pods
            )
            assert per_attempt == {(f"s{i}", "1"): 1 for i in range(STEPS)}, per_attempt
            assert {p["status"].get("phase") for p in pods} == {"Succeeded"}
            poll_until(
                lambda: second.metrics()["szal_runs_active"] == 0,
                timeout=10,
                what="no reconciler left on the new leader",
            )
        # The new leader stopped cleanly: it gave the Lease up.
        lease = _lease(kubectl, namespace)
        assert not lease.get("holderIdentity") and lease["leaseDurationSeconds"] == 1
