"""WorkflowSchedules on the test cluster: a real minute schedule.

Covers: ``szal operator --schedules`` starts a run of a ``* * * * *``
schedule at the next minute (named after the scheduled time, labelled,
annotated and owned by the schedule), the run Succeeds, the status shows
lastScheduleTime and nextScheduleTime one minute later, ``kubectl get
workflowschedules`` prints SCHEDULE, SUSPEND, LAST and NEXT; suspending
removes NEXT; an invalid time zone is named in the status message.

Not covered here: the semantics (tests/schedules, in virtual time).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import Kubectl, poll_until
from e2e.operator_support import OperatorProcess, ensure_crds, sim, wait_phase, workflow

pytestmark = pytest.mark.e2e


def schedule(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowSchedule",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": "tick"}, **spec},
    }


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_minute_schedule_starts_one_run_per_minute(
    kubeconfig: Path, kubectl: Kubectl, namespace: str
) -> None:
    ensure_crds(kubectl)
    spec = {
        "params": [{"name": "who", "default": "nobody"}],
        "template": {"image": "busybox:1.36", "pod": sim("200ms")},
        "steps": [{"name": "a", "command": ["true"]}],
    }
    kubectl.apply(workflow("tick", spec), namespace)
    kubectl.apply(
        schedule(
            "every-minute",
            schedule="* * * * *",
            timeZone="Europe/Budapest",
            concurrencyPolicy="Forbid",
            startingDeadlineSeconds=30,
            params={"who": "cron"},
        ),
        namespace,
    )
    kubectl.apply(schedule("broken", schedule="* * * * *", timeZone="Mars/Olympus"), namespace)
    with OperatorProcess(kubeconfig, [namespace], "--schedules"):

        def first_run() -> dict[str, Any] | None:
            items = kubectl.json(
                "get", "workflowruns", "-n", namespace, "-l", "szal.dev/schedule=every-minute"
            )["items"]
            return items[0] if items else None

        run = poll_until(first_run, timeout=75, what="the schedule's first run", interval=0.5)
        meta = run["metadata"]
        at = _when(meta["annotations"]["szal.dev/scheduled-at"])
        assert at.second == 0 and meta["name"] == f"every-minute-{int(at.timestamp() // 60)}"
        assert meta["ownerReferences"][0]["kind"] == "WorkflowSchedule"
        assert run["spec"]["params"] == {"who": "cron"}
        assert wait_phase(kubectl, namespace, meta["name"])["phase"] == "Succeeded"

        def status() -> dict[str, Any] | None:
            obj = kubectl.get("workflowschedule", "every-minute", namespace) or {}
            st = obj.get("status") or {}
            return st if st.get("lastScheduleTime") and st.get("nextScheduleTime") else None

        st = poll_until(status, timeout=20, what="the schedule's status")
        assert _when(st["lastScheduleTime"]) == at
        assert _when(st["nextScheduleTime"]) == at + dt.timedelta(minutes=1)
        table = kubectl("get", "workflowschedules", "-n", namespace).stdout.splitlines()
        assert table[0].split()[:5] == ["NAME", "SCHEDULE", "SUSPEND", "LAST", "NEXT"]
        row = next(line for line in table if line.startswith("every-minute"))
        assert "* * * * *" in row and "false" in row

        broken = poll_until(
            lambda: (
                (kubectl.get("workflowschedule", "broken", namespace) or {}).get("status") or {}
            ).get("message"),
            timeout=20,
            what="the broken schedule's message",
        )
        assert "spec.timeZone: unknown time zone 'Mars/Olympus'" in broken

        kubectl(
            "patch",
            "workflowschedule",
            "every-minute",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec":{"suspend":true}}',
        )

        def suspended() -> bool:
            obj = kubectl.get("workflowschedule", "every-minute", namespace) or {}
            return "nextScheduleTime" not in (obj.get("status") or {})

        poll_until(suspended, timeout=20, what="NEXT gone while suspended")
