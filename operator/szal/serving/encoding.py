"""History records as JSON, the one wire shape of the REST API and the streams.

Called by :mod:`szal.serving.rest` and :mod:`szal.serving.streaming`.
Decisions: names are camelCase as in a Kubernetes object; times are RFC 3339
strings in UTC with microseconds (what ``kubectl`` users read), never epoch
floats; a missing value is ``null``, never an omitted key, so a client can
rely on the shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from szal.history.store import AttemptRecord, EventRecord, RunDetail, RunRecord


def timestamp(value: float | None) -> str | None:
    """Epoch seconds as RFC 3339 in UTC (``2026-12-02T13:21:29.123456Z``)."""
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """RFC 3339 / ISO 8601 (a naive time is UTC) or epoch seconds; ValueError otherwise."""
    try:
        return float(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def run_json(run: RunRecord) -> dict[str, Any]:
    """One run's summary row."""
    return {
        "uid": run.uid,
        "name": run.name,
        "namespace": run.namespace,
        "workflow": run.workflow,
        "workflowVersion": run.workflow_version,
        "specHash": run.spec_hash,
        "params": run.params,
        "phase": run.phase,
        "createdAt": timestamp(run.created_at),
        "startedAt": timestamp(run.started_at),
        "finishedAt": timestamp(run.finished_at),
        "message": run.message,
        "progress": run.progress,
        "interrupted": run.interrupted,
    }


def attempt_json(attempt: AttemptRecord) -> dict[str, Any]:
    """One attempt of a step (or of its compensation)."""
    return {
        "step": attempt.step,
        "attempt": attempt.attempt,
        "rollback": attempt.rollback,
        "phase": attempt.phase,
        "startedAt": timestamp(attempt.started_at),
        "finishedAt": timestamp(attempt.finished_at),
        "exitCode": attempt.exit_code,
        "message": attempt.message,
        "outputs": attempt.outputs,
        "node": attempt.node,
    }


def event_json(event: EventRecord) -> dict[str, Any]:
    """One transition; ``id`` is the history event log's (what streams resume from)."""
    return {
        "id": event.id,
        "step": event.step,
        "attempt": event.attempt,
        "rollback": event.rollback,
        "old": event.old,
        "new": event.new,
        "event": event.event,
        "at": timestamp(event.at),
        "message": event.message,
    }


def detail_json(detail: RunDetail, workflow: dict[str, Any] | None) -> dict[str, Any]:
    """A run with its attempts, its events and the definition it pinned (or null)."""
    return {
        "run": run_json(detail.run),
        "attempts": [attempt_json(a) for a in detail.attempts],
        "events": [event_json(e) for e in detail.events],
        "workflow": workflow,
    }
