"""The WorkflowSchedule controller: starts WorkflowRuns when their time comes.

Who calls it: :class:`szal.runners.kubernetes.operator.Operator` registers
it with ``--schedules`` (one hook); kopf delivers WorkflowSchedule events
and the events of runs labelled ``szal.dev/schedule``.

Decisions:

* **The engine decides, this module does.** One asyncio task per schedule
  reads the schedule and its runs, asks :func:`szal.engine.scheduling.decide`
  with the wall clock's ``now``, carries out the decision (cancel for
  Replace, create, delete beyond the history limits), writes the status
  (``lastScheduleTime``, ``nextScheduleTime``, ``active``, ``lastRun``,
  ``missed``, ``message``) only when it changed, then sleeps until the next
  time or until an event about the schedule or one of its runs wakes it.
* **Restarts lose nothing and start nothing twice**: ``lastScheduleTime``
  is in the status; run names are deterministic per scheduled time
  (AlreadyExists means done); a run carries the scheduled time in the
  ``szal.dev/scheduled-at`` annotation, its schedule in the
  ``szal.dev/schedule`` label, and an ownerReference to the schedule (so
  deleting the schedule deletes its runs).
* **Only the leader acts** (with ``--leader-elect``): a standby computes
  nothing and writes nothing.
* An invalid spec (a bad cron expression or time zone) starts nothing;
  the status message names the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import kopf

from szal.engine.scheduling import (
    ScheduledRun,
    ScheduleInvalid,
    ScheduleState,
    check,
    decide,
    run_name,
)
from szal.engine.timestamps import format_timestamp
from szal.runners.kubernetes.client import AlreadyExists, ApiClient, ApiError, NotFound, group_path
from szal.spec import API_VERSION, GROUP, VERSION
from szal.spec.schedules import WorkflowScheduleSpec

logger = logging.getLogger(__name__)

SCHEDULES = "workflowschedules"
RUNS = "workflowruns"
LABEL_SCHEDULE = "szal.dev/schedule"
ANNOTATION_SCHEDULED_AT = "szal.dev/scheduled-at"

Key = tuple[str, str]
Clock = Callable[[], dt.datetime]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parse(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(dt.UTC)


def _stamp(moment: dt.datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment.timestamp())


def _rv(body: dict[str, Any]) -> int:
    text = str((body.get("metadata") or {}).get("resourceVersion") or "0")
    return int(text) if text.isdigit() else 0


class ScheduleController:
    """One task per WorkflowSchedule; see the module docstring."""

    def __init__(
        self,
        client: ApiClient,
        *,
        leading: Callable[[], bool] = lambda: True,
        clock: Clock = _utc_now,
    ) -> None:
        self.client = client
        self.leading = leading
        self.clock = clock
        self.bodies: dict[Key, dict[str, Any]] = {}
        self.wakeups: dict[Key, asyncio.Event] = {}
        self.tasks: dict[Key, asyncio.Task[None]] = {}
        self.created = 0
        """Runs this controller created (a figure for tests and metrics)."""

    def register(self, registry: kopf.OperatorRegistry) -> None:
        @kopf.on.event(GROUP, VERSION, SCHEDULES, id="schedule-event", registry=registry)
        async def schedule_event(event: Any, **_: Any) -> None:
            self.on_schedule(str(event.get("type") or "ADDED"), dict(event.get("object") or {}))

        @kopf.on.event(
            GROUP,
            VERSION,
            RUNS,
            id="scheduled-run-event",
            labels={LABEL_SCHEDULE: kopf.PRESENT},
            registry=registry,
        )
        async def scheduled_run_event(event: Any, **_: Any) -> None:
            meta = (event.get("object") or {}).get("metadata") or {}
            key = (str(meta.get("namespace")), str((meta.get("labels") or {})[LABEL_SCHEDULE]))
            if key in self.wakeups:
                self.wakeups[key].set()

    def on_schedule(self, kind: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if kind == "DELETED":
            task = self.tasks.pop(key, None)
            if task is not None:
                task.cancel()
            self.bodies.pop(key, None)
            self.wakeups.pop(key, None)
            return
        current = self.bodies.get(key)
        if current is None or _rv(body) >= _rv(current):
            self.bodies[key] = body
        self.wakeups.setdefault(key, asyncio.Event()).set()
        if key not in self.tasks or self.tasks[key].done():
            self.tasks[key] = asyncio.create_task(
                self._loop(key), name=f"schedule {key[0]}/{key[1]}"
            )

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()

    async def _loop(self, key: Key) -> None:
        wake = self.wakeups[key]
        while key in self.bodies:
            wake.clear()
            timeout: float | None = None
            try:
                if self.leading():
                    timeout = await self.reconcile(key)
            except ApiError as error:
                logger.warning("schedule %s/%s: %s (retrying)", *key, error)
                timeout = 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)

    async def reconcile(self, key: Key) -> float | None:
        """One pass; returns seconds until the next scheduled time (None: wait for an event)."""
        namespace, name = key
        body = self.bodies[key]
        meta = body.get("metadata") or {}
        status = dict(body.get("status") or {})
        try:
            spec = WorkflowScheduleSpec.model_validate(body.get("spec") or {})
            check(spec)
        except (ValueError, ScheduleInvalid) as error:
            await self._write_status(key, {**status, "message": f"invalid: {error}"})
            return None
        runs = await self.client.list(
            group_path(API_VERSION, namespace, RUNS), label_selector=f"{LABEL_SCHEDULE}={name}"
        )
        state = ScheduleState(
            created_at=_parse(meta.get("creationTimestamp")) or self.clock(),
            last_scheduled=_parse(status.get("lastScheduleTime")),
            runs=tuple(self._scheduled(r) for r in runs),
        )
        now = self.clock()
        decision = decide(spec, state, now)
        for victim in decision.cancel:
            with contextlib.suppress(NotFound):
                await self.client.merge_patch(
                    group_path(API_VERSION, namespace, RUNS, victim),
                    {"spec": {"cancel": True}},
                    resource=RUNS,
                )
        active = list(decision.active)
        if decision.start is not None:
            started = await self._create_run(body, spec, decision.start)
            status["lastRun"] = started
            if started not in active:
                active.append(started)
        for old in decision.delete:
            with contextlib.suppress(NotFound):
                await self.client.delete(
                    group_path(API_VERSION, namespace, RUNS, old), resource=RUNS
                )
        new_status = {
            **status,
            "lastScheduleTime": _stamp(decision.last_scheduled),
            "nextScheduleTime": _stamp(decision.next_time),
            "active": active,
            "missed": int(status.get("missed") or 0) + decision.missed,
            "message": decision.skipped or "",
            "observedGeneration": meta.get("generation"),
        }
        await self._write_status(key, new_status)
        if decision.next_time is None:
            return None
        return max(0.0, (decision.next_time - self.clock()).total_seconds()) + 0.05

    def _scheduled(self, run: dict[str, Any]) -> ScheduledRun:
        meta = run.get("metadata") or {}
        at = _parse((meta.get("annotations") or {}).get(ANNOTATION_SCHEDULED_AT))
        at = at or _parse(meta.get("creationTimestamp")) or self.clock()
        return ScheduledRun(
            str(meta["name"]), at, str((run.get("status") or {}).get("phase") or "Pending")
        )

    async def _create_run(
        self, body: dict[str, Any], spec: WorkflowScheduleSpec, at: dt.datetime
    ) -> str:
        meta = body["metadata"]
        name = run_name(str(meta["name"]), at)
        manifest = {
            "apiVersion": API_VERSION,
            "kind": "WorkflowRun",
            "metadata": {
                "name": name,
                "labels": {LABEL_SCHEDULE: str(meta["name"])},
                "annotations": {ANNOTATION_SCHEDULED_AT: _stamp(at)},
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": "WorkflowSchedule",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": False,
                    }
                ],
            },
            "spec": {
                "workflowRef": {"name": spec.workflow_ref.name},
                "params": dict(spec.params),
            },
        }
        try:
            await self.client.create(
                group_path(API_VERSION, str(meta["namespace"]), RUNS), manifest, resource=RUNS
            )
            self.created += 1
            logger.info("schedule %s/%s started run %s", meta["namespace"], meta["name"], name)
        except AlreadyExists:
            pass  # started before a restart: done
        return name

    async def _write_status(self, key: Key, status: dict[str, Any]) -> None:
        """Merge-patch the status when it changed (a None value removes the field)."""
        body = self.bodies.get(key)
        wanted = {k: v for k, v in status.items() if v is not None}
        if body is None or (body.get("status") or {}) == wanted:
            return
        namespace, name = key
        try:
            updated = await self.client.merge_patch(
                group_path(API_VERSION, namespace, SCHEDULES, name, subresource="status"),
                {"status": status},
                resource=f"{SCHEDULES}/status",
            )
        except NotFound:
            return
        if _rv(updated) >= _rv(self.bodies.get(key) or {}):
            self.bodies[key] = updated
