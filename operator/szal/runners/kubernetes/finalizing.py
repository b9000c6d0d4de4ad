"""The history finalizer: a finished run is not deleted before its history is stored.

With history mirroring on (``szal operator --history-dsn``), the reconciler
puts :data:`FINALIZER` on every run it starts, in one JSON patch before its
first pod exists, and removes it in one JSON patch once the run is finished
**and** the mirror has committed everything recorded for it. Two extra
writes per run, none per step. Without ``--history-dsn`` no finalizer is
ever added. Whoever deletes the run meanwhile - its
``ttlSecondsAfterFinished``, or ``kubectl delete`` - only sets its
``deletionTimestamp``; the object stays until the finalizer goes.

The wait is bounded (``--history-finalizer-timeout``, :func:`decide`):

* ``timeout`` after the run finished without being archived, the run gets
  the condition ``HistoryArchived=False`` (reason ``DatabaseUnavailable``,
  the mirror's last error as message) and a Warning Event. The finalizer
  stays: history first, as long as nobody wants the object gone.
* ``timeout`` after a deletion was requested (the ``deletionTimestamp``,
  so the bound survives operator restarts), the finalizer is released
  anyway, with a Warning Event ``HistoryNotArchived``: deletion is never
  blocked forever (Argo's and Kubernetes' expectation). The mirror keeps
  the run's rows queued and still writes them once the database is back,
  as long as this operator process lives.
* Archived after the warning: the condition turns ``True`` (reason
  ``Archived``) and the finalizer is removed.

A run deleted while it is still running is cancelled first (its steps
stopped, phase Cancelled), so its history ends with a terminal row.

This module is pure: the decision and the JSON patches; the reconciler
does the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from szal.engine.timestamps import format_timestamp, parse_timestamp

FINALIZER = "szal.dev/history"
CONDITION = "HistoryArchived"
REASON_UNAVAILABLE = "DatabaseUnavailable"
REASON_ARCHIVED = "Archived"
EVENT_NOT_ARCHIVED = "HistoryNotArchived"
EVENT_RELEASED = "HistoryFinalizerReleased"


@dataclass(frozen=True, slots=True)
class Hold:
    """What to do about a finished run's finalizer now."""

    release: bool = False
    """Remove the finalizer now."""
    timed_out: bool = False
    """Released without the history being archived (post a Warning Event)."""
    warn: bool = False
    """Set ``HistoryArchived=False`` and post a Warning Event now."""
    recovered: bool = False
    """Set ``HistoryArchived=True``: a warning was shown, the history is in."""
    wake_at: float | None = None
    """When to decide again at the latest (None: only when news arrives)."""


def decide(
    *,
    archived: bool,
    finished_at: float | None,
    deletion_at: float | None,
    warned: bool,
    timeout: float,
    now: float,
) -> Hold:
    """The finalizer's fate for a finished run that still carries it."""
    if archived:
        return Hold(release=True, recovered=warned)
    if deletion_at is not None and now >= deletion_at + timeout:
        return Hold(release=True, timed_out=True)
    warn_at = (finished_at if finished_at is not None else now) + timeout
    warn = not warned and now >= warn_at
    deadlines = []
    if not warned and not warn:
        deadlines.append(warn_at)
    if deletion_at is not None:
        deadlines.append(deletion_at + timeout)
    return Hold(warn=warn, wake_at=min(deadlines) if deadlines else None)


# --- reading the object -------------------------------------------------------


def finalizers(body: Mapping[str, Any]) -> list[str]:
    return list((body.get("metadata") or {}).get("finalizers") or [])


def has_finalizer(body: Mapping[str, Any]) -> bool:
    return FINALIZER in finalizers(body)


def deletion_requested_at(body: Mapping[str, Any]) -> float | None:
    stamp = (body.get("metadata") or {}).get("deletionTimestamp")
    return parse_timestamp(stamp) if stamp else None


def warned(body: Mapping[str, Any]) -> bool:
    """Does the run show ``HistoryArchived=False``?"""
    return any(
        c.get("type") == CONDITION and c.get("status") == "False"
        for c in (body.get("status") or {}).get("conditions") or []
    )


# --- writing it -----------------------------------------------------------------


def add_patch(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON patch appending the finalizer, guarded against concurrent list edits."""
    current = finalizers(body)
    if current:
        return [
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]
    rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
    ]


def remove_patch(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON patch removing the finalizer at its index (tested, so a shifted list fails)."""
    index = finalizers(body).index(FINALIZER)
    path = f"/metadata/finalizers/{index}"
    return [{"op": "test", "path": path, "value": FINALIZER}, {"op": "remove", "path": path}]


def conditions_with(
    body: Mapping[str, Any], status: str, reason: str, message: str, now: float
) -> list[dict[str, Any]]:
    """The run's conditions with ``HistoryArchived`` set (a merge patch replaces lists)."""
    kept: Sequence[Mapping[str, Any]] = [
        c for c in (body.get("status") or {}).get("conditions") or [] if c.get("type") != CONDITION
    ]
    return [
        *(dict(c) for c in kept),
        {
            "type": CONDITION,
            "status": status,
            "reason": reason,
            "message": message[:1024],
            "lastTransitionTime": format_timestamp(now),
        },
    ]
