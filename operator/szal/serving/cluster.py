"""Runs on a cluster: live WorkflowRuns from the API server merged with history.

:class:`ClusterSource` is the operator's :class:`~szal.serving.sources.RunSource`
(``szal operator --api-port``). It reads WorkflowRun objects with the
operator's own API client (the same RBAC the operator already has: list and
get workflowruns and workflows, pods and pods/log) and the history store
when there is one (``--history-dsn``).

Decisions:

- **The object is fresher, the store is longer.** A run that exists as an
  object shows its status from the object (phase, progress, each step's
  current attempt); its earlier attempts and its event log come from the
  store. A run whose object is gone (TTL, deleted) comes from the store
  alone. Without a store, only live runs exist and there are no events.
- **Listing with a store pages through the store** (its keyset cursor) and
  overlays the live objects' status on the runs of the page. A live run the
  mirror has not written yet joins the page its creation time falls in: a
  page takes those from its first row (the top, on the first page) down to
  the next page's first row, which one more one-row store query finds. Without a store the live runs
  are sorted and paged here with the same kind of cursor.
- **Logs of a live attempt come from the pod** (``pods/log`` of the pod
  labelled with the run, step and attempt), so a running step's output is
  visible while it runs; when there is no such pod any more (the run
  finished and was cleaned up, or the pod was deleted) they come from the
  store, which holds none for cluster runs (the mirror stores no logs; an
  attempt's ``message`` keeps the termination message): the answer is empty.
- The API server being unreachable or refusing a list makes the live part
  empty (logged), never the whole answer an error, as long as the store
  answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from szal.engine.phases import StepPhase
from szal.engine.state import RunState
from szal.engine.timestamps import parse_timestamp
from szal.history.store import AttemptRecord, RunDetail, RunPage, RunQuery, RunRecord
from szal.runners.kubernetes.client import ApiClient, ApiError, NotFound, core_path, group_path
from szal.runners.kubernetes.pods import (
    LABEL_ATTEMPT,
    LABEL_ROLLBACK,
    LABEL_RUN,
    LABEL_STEP,
    label_value,
)
from szal.serving.sources import HistorySource, StepLog
from szal.spec import API_VERSION

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]


def live_run(body: JsonDict) -> tuple[RunRecord, list[AttemptRecord]]:
    """A WorkflowRun object as a run row and each step's current attempt (and compensation)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    state = RunState.from_status(body.get("status") or None)
    pinned = state.workflow
    created = meta.get("creationTimestamp")
    ref = spec.get("workflowRef") or {}
    uid = str(meta.get("uid", ""))
    run = RunRecord(
        uid=uid,
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        workflow=pinned.name if pinned else str(ref.get("name", "")),
        workflow_version=pinned.version if pinned else 0,
        spec_hash=pinned.spec_hash if pinned else "",
        params=dict(spec.get("params") or {}),
        phase=state.phase.value,
        created_at=parse_timestamp(created) if created else 0.0,
        started_at=state.started_at,
        finished_at=state.finished_at,
        message=state.message,
        progress=state.progress,
    )
    attempts: list[AttemptRecord] = []
    for name, step in state.steps.items():
        if step.attempts > 0:
            running = not step.phase.is_terminal and step.phase is not StepPhase.WAITING
            attempts.append(
                AttemptRecord(
                    run_uid=uid,
                    step=name,
                    attempt=step.attempts,
                    rollback=False,
                    phase=step.phase.value,
                    started_at=step.attempt_started_at if running else step.started_at,
                    finished_at=step.finished_at,
                    exit_code=step.exit_code,
                    message=step.message,
                    outputs=step.outputs,
                )
            )
        rb = step.rollback
        if rb is not None and rb.phase is not StepPhase.PENDING:
            attempts.append(
                AttemptRecord(
                    uid,
                    name,
                    1,
                    True,
                    rb.phase.value,
                    rb.started_at,
                    rb.finished_at,
                    rb.exit_code,
                    rb.message,
                )
            )
    return run, attempts


def _key(run: RunRecord) -> tuple[float, str]:
    return (run.created_at, run.uid)


def _matches(run: RunRecord, query: RunQuery) -> bool:
    return (
        (query.workflow is None or run.workflow == query.workflow)
        and (query.namespace is None or run.namespace == query.namespace)
        and (query.phase is None or run.phase == query.phase)
        and (query.since is None or run.created_at >= query.since)
        and (query.until is None or run.created_at < query.until)
    )


def _merge_attempts(stored: list[AttemptRecord], live: list[AttemptRecord]) -> list[AttemptRecord]:
    fresh = {(a.step, a.attempt, a.rollback): a for a in live}
    merged = [fresh.pop((a.step, a.attempt, a.rollback), a) for a in stored]
    return merged + list(fresh.values())


@dataclass
class ClusterSource:
    """A :class:`~szal.serving.sources.RunSource` over the cluster and the history store."""

    client: ApiClient
    namespaces: tuple[str, ...]
    """The operator's namespaces; empty: every namespace (``--all-namespaces``)."""
    history: HistorySource | None = None

    async def _live(self, namespace: str | None) -> list[tuple[RunRecord, list[AttemptRecord]]]:
        if namespace is not None:
            paths = [group_path(API_VERSION, namespace, "workflowruns")]
        elif not self.namespaces:
            paths = [f"/apis/{API_VERSION}/workflowruns"]
        else:
            paths = [group_path(API_VERSION, ns, "workflowruns") for ns in self.namespaces]
        found: list[tuple[RunRecord, list[AttemptRecord]]] = []
        for path in paths:
            try:
                found.extend(live_run(body) for body in await self.client.list(path))
            except ApiError as error:
                logger.warning("listing %s failed: %s", path, error)
        return found

    async def list_runs(self, query: RunQuery) -> RunPage:
        live = {
            run.uid: run for run, _ in await self._live(query.namespace) if _matches(run, query)
        }
        if self.history is None:
            return self._page(sorted(live.values(), key=_key, reverse=True), query)
        page = await self.history.list_runs(query)
        runs = [live.pop(run.uid, run) for run in page.runs]
        if page.runs:
            # This page takes the unmirrored runs from its first row (or the top)
            # down to, not including, the next page's first row (or the bottom).
            upper = _key(page.runs[0]) if query.after else None
            lower = None
            if page.next_cursor and live:
                peek = await self.history.list_runs(replace(query, limit=1, after=page.next_cursor))
                lower = _key(peek.runs[0]) if peek.runs else None
            runs.extend(
                run
                for run in live.values()
                if (upper is None or _key(run) <= upper) and (lower is None or _key(run) > lower)
            )
        elif query.after is None:
            runs.extend(live.values())
        runs.sort(key=_key, reverse=True)
        return RunPage(runs, page.next_cursor)

    @staticmethod
    def _page(runs: list[RunRecord], query: RunQuery) -> RunPage:
        if query.after:
            created, _, uid = query.after.partition("|")
            bound = (float(created), uid)  # ValueError: the REST layer answers 400
            runs = [r for r in runs if _key(r) < bound]
        limit = max(1, query.limit)
        chosen = runs[:limit]
        cursor = f"{chosen[-1].created_at!r}|{chosen[-1].uid}" if len(runs) > limit else None
        return RunPage(chosen, cursor)

    async def _object(self, namespace: str, name: str) -> JsonDict | None:
        try:
            return await self.client.get(group_path(API_VERSION, namespace, "workflowruns", name))
        except NotFound:
            return None
        except ApiError as error:
            logger.warning("reading workflowrun %s/%s failed: %s", namespace, name, error)
            return None

    async def get_run(self, namespace: str, ref: str) -> RunDetail | None:
        body = await self._object(namespace, ref)
        if body is None:
            return await self.history.get_run(namespace, ref) if self.history else None
        run, attempts = live_run(body)
        stored = await self.history.get_run(namespace, run.uid) if self.history else None
        if stored is None:
            return RunDetail(run, attempts, [])
        return RunDetail(run, _merge_attempts(stored.attempts, attempts), stored.events)

    async def get_workflow(self, run: RunRecord) -> dict[str, Any] | None:
        if self.history is not None and (stored := await self.history.get_workflow(run)):
            return stored
        body = await self._object(run.namespace, run.name)
        if body is not None and isinstance((body.get("spec") or {}).get("workflow"), dict):
            inline: dict[str, Any] = body["spec"]["workflow"]
            return inline
        try:
            workflow = await self.client.get(
                group_path(API_VERSION, run.namespace, "workflows", run.workflow)
            )
        except ApiError:
            return None
        spec: dict[str, Any] | None = workflow.get("spec")
        return spec

    async def get_log(
        self, run: RunRecord, step: str, attempt: int | None, rollback: bool
    ) -> StepLog:
        number = attempt
        if number is None:
            detail = await self.get_run(run.namespace, run.uid)
            numbers = [a.attempt for a in detail.attempts if a.step == step] if detail else []
            number = max(numbers, default=1) if not rollback else 1
        selector = ",".join(
            [
                f"{LABEL_RUN}={label_value(run.name)}",
                f"{LABEL_STEP}={step}",
                f"{LABEL_ATTEMPT}={number}",
                *([f"{LABEL_ROLLBACK}=true"] if rollback else []),
            ]
        )
        try:
            pods = await self.client.list(core_path(run.namespace, "pods"), label_selector=selector)
            for pod in pods:
                if (pod.get("metadata") or {}).get("labels", {}).get(
                    LABEL_ROLLBACK
                ) and not rollback:
                    continue
                name = pod["metadata"]["name"]
                text = await self.client.get_text(core_path(run.namespace, "pods", name) + "/log")
                return StepLog(text, "pod")
        except ApiError as error:
            logger.info(
                "logs of %s/%s step %s from the pod: %s", run.namespace, run.name, step, error
            )
        if self.history is not None:
            return await self.history.get_log(run, step, attempt, rollback)
        return StepLog("", "history")
