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

The decision (:func:`decide`) and the JSON patches are pure functions.
:class:`RunLifecycle`, at the end of this module, does the I/O for one
run's reconciler: it adds the finalizer at the start and, once the run is
finished, keeps or releases it and deletes the run when its
``ttlSecondsAfterFinished`` has passed (the TTL and the finalizer meet
there: a TTL deletion of a held run only sets its ``deletionTimestamp``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from szal.engine.state import RunState
from szal.engine.timestamps import format_timestamp, parse_timestamp
from szal.runners.kubernetes.client import Conflict, Invalid, NotFound
from szal.runners.kubernetes.events import Note, RunRef
from szal.runners.kubernetes.pinning import recover_pinned
from szal.runners.kubernetes.runtime import (
    RUNS,
    Mailbox,
    Runtime,
    patch_run_status,
    run_path,
)

logger = logging.getLogger(__name__)

FINALIZER = "szal.dev/history"
CONDITION = "HistoryArchived"
REASON_UNAVAILABLE = "DatabaseUnavailable"
REASON_ARCHIVED = "Archived"
EVENT_NOT_ARCHIVED = "HistoryNotArchived"
EVENT_RELEASED = "HistoryFinalizerReleased"
_FOREVER = 365 * 24 * 3600.0  # wait_archived's bound when only news should end the wait


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


# --- the I/O: one run's finalizer and TTL ----------------------------------------


class RunLifecycle:
    """A run's history finalizer and TTL deletion, for its reconciler.

    ``holding`` is True while a finished run's finalizer stays on (the
    reconciler keeps running to release it).
    """

    def __init__(self, runtime: Runtime, mailbox: Mailbox, ref: RunRef) -> None:
        self.runtime = runtime
        self.mailbox = mailbox
        self.ref = ref
        self.holding = False
        self._ttl_deleted = False
        self._archive_waiter: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Stop waiting for the archive (the reconciler ends)."""
        if self._archive_waiter is not None:
            self._archive_waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._archive_waiter

    async def after_finish(
        self, body: Mapping[str, Any], state: RunState, now: float
    ) -> float | None:
        """A finished run: release its history finalizer, delete it when its TTL passed.

        Returns when to look again; None with ``holding`` False: nothing left to do.
        """
        self.holding = False
        wakes: list[float] = []
        if has_finalizer(body):
            if self.runtime.history is None:
                # Mirroring was turned off since the run started: nothing to wait for.
                await self.remove_finalizer()
            else:
                hold_wake = await self._hold_for_history(body, state, now)
                if hold_wake is not None:
                    wakes.append(hold_wake)
        ttl = (body.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is not None and deletion_requested_at(body) is None:
            ended = state.finished_at if state.finished_at is not None else now
            due = ended + float(ttl)
            if now < due:
                wakes.append(due)
            elif not self._ttl_deleted:
                # The history finalizer, if on, holds the object until archived.
                with contextlib.suppress(NotFound):
                    await self.runtime.client.delete(
                        run_path(self.ref), resource=RUNS, propagation="Background"
                    )
                self._ttl_deleted = True
                if not self.holding:
                    self.mailbox.deleted = True
        return min(wakes) if wakes else None

    async def _hold_for_history(
        self, body: Mapping[str, Any], state: RunState, now: float
    ) -> float | None:
        """Keep or release the finalizer of a finished run; sets ``holding``."""
        history = self.runtime.history
        assert history is not None
        archived = history.archived(self.ref)
        if not archived:
            if history.pending(self.ref) == 0:
                # Nothing queued for it: a new operator process (the run finished
                # while the previous one could not write), or the mirror forgot it.
                self._recover_history(body, state)
            if self._archive_waiter is None or self._archive_waiter.done():
                self._archive_waiter = asyncio.create_task(
                    self._wake_when_archived(), name=f"szal-archived-{self.ref.name}"
                )
        settings = self.runtime.settings
        hold = decide(
            archived=archived,
            finished_at=state.finished_at,
            deletion_at=deletion_requested_at(body),
            warned=warned(body),
            timeout=settings.history_finalizer_timeout,
            now=now,
        )
        deleting = deletion_requested_at(body) is not None
        if hold.warn:
            reason = history.last_error() or "the history database did not answer"
            message = (
                f"history not archived {settings.history_finalizer_timeout:.0f}s after the run"
                f" finished: {reason}"
            )
            logger.warning("run %s/%s: %s", *self._names(), message)
            await self._set_history_condition(body, "False", REASON_UNAVAILABLE, message, now)
            self.runtime.events.note(self.ref, Note(EVENT_NOT_ARCHIVED, message, now))
        if hold.recovered and not deleting:
            await self._set_history_condition(
                body, "True", REASON_ARCHIVED, "history archived", now
            )
        if not hold.release:
            self.holding = True
            return hold.wake_at
        if hold.timed_out:
            message = (
                f"deleting without archived history: the database stayed away"
                f" {settings.history_finalizer_timeout:.0f}s after the deletion was requested"
                f" ({history.last_error() or 'no answer'}); the operator keeps the rows queued"
            )
            logger.warning("run %s/%s: %s", *self._names(), message)
            self.runtime.events.note(self.ref, Note(EVENT_RELEASED, message, now))
        await self.remove_finalizer()
        return None

    def _recover_history(self, body: Mapping[str, Any], state: RunState) -> None:
        assert self.runtime.history is not None
        try:
            workflow, definition = recover_pinned((body.get("status") or {}).get("pinnedSpec"))
        except Exception as error:  # a damaged pin: archive the run row anyway
            logger.warning("run %s/%s: pinned spec unreadable: %s", *self._names(), error)
            workflow, definition = None, {}
        logger.info("run %s/%s: archiving its history again from its status", *self._names())
        self.runtime.history.recover(self.ref, body, workflow, definition, state)

    def _names(self) -> tuple[str, str]:
        return self.ref.namespace, self.ref.name

    async def _wake_when_archived(self) -> None:
        assert self.runtime.history is not None
        if await self.runtime.history.wait_archived(self.ref, _FOREVER):
            self.mailbox.wake.set()

    async def _set_history_condition(
        self, body: Mapping[str, Any], status: str, reason: str, message: str, now: float
    ) -> None:
        conditions = conditions_with(body, status, reason, message, now)
        answer = await patch_run_status(
            self.runtime.client, self.mailbox, {"conditions": conditions}
        )
        if answer:
            self.mailbox.post_run(answer, significant=False)

    async def add_finalizer(self) -> None:
        await self._patch_finalizers(add_patch, has_finalizer)

    async def remove_finalizer(self) -> None:
        await self._patch_finalizers(remove_patch, lambda b: not has_finalizer(b))

    async def _patch_finalizers(
        self,
        build: Callable[[Mapping[str, Any]], list[dict[str, Any]]],
        done: Callable[[Mapping[str, Any]], bool],
    ) -> None:
        """One JSON patch of ``metadata.finalizers``; re-read and retry if it raced."""
        body: Mapping[str, Any] = self.mailbox.body
        for _ in range(3):
            if done(body):
                return
            try:
                answer = await self.runtime.client.json_patch(
                    run_path(self.ref), build(body), resource=RUNS
                )
            except (Invalid, Conflict):
                body = await self.runtime.client.get(run_path(self.ref))
                self.mailbox.post_run(dict(body), significant=False)
                continue
            if answer:
                self.mailbox.post_run(answer, significant=False)
            return
        raise Conflict(409, "Conflict", "the run's finalizers kept changing")
